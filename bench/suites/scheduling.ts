import { createDispatcher, DispatchError } from "../../src/core/index.js";
import { fmt, percentile, table, writeResult, type BenchContext } from "../lib/report.js";
import { exponential, mulberry32 } from "../lib/random.js";
import { createSimulator } from "../lib/sim.js";

const WORKERS = 4;
const SLOTS = 4; // maxConcurrency per worker
const SLOW_WORKER = "sim/3";
const SLOWDOWN = 5;
const MEAN_SERVICE_MS = 10;
const UTILISATION = 0.7;
const HOT_SHARE = 0.3;
const SPILL_LOAD_FACTOR = 1.25;

interface Scenario {
  name: string;
  policy: string;
  hot: boolean;
  spillLoadFactor?: number;
}

interface Outcome {
  scenario: string;
  policy: string;
  jobs: number;
  completed: number;
  rejected: number;
  p50Ms: number;
  p99Ms: number;
  hot?: { jobs: number; hits: number; spills: number; p50Ms: number; p99Ms: number };
  perWorker: Record<string, number>;
}

/**
 * Scheduling quality in simulated time, deterministic (seeded): 4 workers of
 * 4 slots, one 5× slower; Poisson arrivals at 70 % of the pool's capacity;
 * exponential service times. The same arrivals and job sizes for every
 * policy. Latency = completion − arrival (queue wait + run).
 */
export async function schedulingSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const jobs = ctx.mode === "full" ? 100_000 : ctx.mode === "quick" ? 20_000 : 2_000;
  const scenarios: Scenario[] = [
    ...["least-loaded", "power-of-two", "round-robin", "random"].map((policy) => ({ name: "heterogeneous", policy, hot: false })),
    { name: "hot session, strict affinity", policy: "least-loaded", hot: true },
    { name: `hot session, spill at ${SPILL_LOAD_FACTOR}× load bound`, policy: "least-loaded", hot: true, spillLoadFactor: SPILL_LOAD_FACTOR },
  ];
  const outcomes: Outcome[] = [];
  for (const s of scenarios) {
    const o = await simulate(s, jobs, 20240601);
    outcomes.push(o);
    ctx.log(`scheduling ${s.name} / ${s.policy}: p50 ${fmt(o.p50Ms, 1)} ms, p99 ${fmt(o.p99Ms, 1)} ms, rejected ${o.rejected}`);
  }
  const byPolicy = (p: string) => outcomes.find((o) => o.scenario === "heterogeneous" && o.policy === p)!;
  const llOverRr = byPolicy("least-loaded").p99Ms / byPolicy("round-robin").p99Ms;
  const capacity = (WORKERS - 1 + 1 / SLOWDOWN) * SLOTS / MEAN_SERVICE_MS;
  ctx.log(`\nScheduling quality (simulated time, seeded): ${WORKERS} workers × ${SLOTS} slots, one ${SLOWDOWN}× slower, mean service ${MEAN_SERVICE_MS} ms, Poisson arrivals at ${UTILISATION * 100} % of capacity (${fmt(capacity * UTILISATION * 1000)} jobs/s), ${fmt(jobs)} jobs, queues of 64`);
  ctx.log(table(
    ["scenario", "policy", "p50 ms", "p99 ms", "rejected", "share of jobs on the slow worker", "hot: affinity hits", "hot p99 ms"],
    outcomes.map((o) => [
      o.scenario, o.policy, fmt(o.p50Ms, 1), fmt(o.p99Ms, 1), fmt(o.rejected),
      `${fmt((100 * (o.perWorker[SLOW_WORKER] ?? 0)) / o.completed, 1)} %`,
      o.hot ? `${fmt((100 * o.hot.hits) / o.hot.jobs, 1)} %` : "", o.hot ? fmt(o.hot.p99Ms, 1) : "",
    ]),
  ));
  ctx.log(table(["figure", "value", "target"], [["least-loaded p99 / round-robin p99", fmt(llOverRr, 3), "≤ 0.5"]]));
  const data = {
    workers: WORKERS, slotsPerWorker: SLOTS, slowdown: SLOWDOWN, meanServiceMs: MEAN_SERVICE_MS, utilisation: UTILISATION,
    hotShare: HOT_SHARE, spillLoadFactor: SPILL_LOAD_FACTOR, jobs, outcomes, leastLoadedP99OverRoundRobinP99: llOverRr,
  };
  ctx.log(`wrote ${writeResult(ctx, "scheduling", data)}`);
  return data;
}

async function simulate(s: Scenario, jobs: number, seed: number): Promise<Outcome> {
  const sim = createSimulator();
  const arrivals = mulberry32(seed);
  const sizes = mulberry32(seed + 1);
  const hotness = mulberry32(seed + 2);
  const d = createDispatcher({
    clock: sim.clock,
    random: mulberry32(seed + 3),
    backends: [{
      name: "sim",
      workers: WORKERS,
      maxConcurrency: SLOTS,
      queueCapacity: 64,
      policy: s.policy,
      affinity: { ttlMs: 600_000, spillLoadFactor: s.spillLoadFactor },
      handler: (payload, ctx) =>
        new Promise((resolve) => {
          const size = payload.json as number;
          sim.at(sim.now() + (ctx.workerId === SLOW_WORKER ? size * SLOWDOWN : size), () => resolve(payload));
        }),
    }],
  });
  const capacityPerMs = ((WORKERS - 1 + 1 / SLOWDOWN) * SLOTS) / MEAN_SERVICE_MS;
  const meanGap = 1 / (capacityPerMs * UTILISATION);
  const latencies: number[] = [];
  const hotLatencies: number[] = [];
  const perWorker: Record<string, number> = {};
  let rejected = 0;
  let hotJobs = 0;
  let hits = 0;
  let spills = 0;
  let t = 0;
  for (let i = 0; i < jobs; i++) {
    t += exponential(arrivals, meanGap);
    const size = exponential(sizes, MEAN_SERVICE_MS);
    const hot = s.hot && hotness() < HOT_SHARE;
    await sim.runUntil(t);
    const arrived = sim.now();
    if (hot) hotJobs++;
    d.submit({ backend: "sim", sessionId: hot ? "hot" : undefined, payload: { json: size } }).then(
      (r) => {
        const latency = sim.now() - arrived;
        latencies.push(latency);
        perWorker[r.workerId] = (perWorker[r.workerId] ?? 0) + 1;
        if (hot) {
          hotLatencies.push(latency);
          if (r.affinity === "hit") hits++;
          if (r.affinity === "spill") spills++;
        }
      },
      (e: unknown) => {
        if (e instanceof DispatchError && e.code === "resource_exhausted") rejected++;
        else throw e;
      },
    );
  }
  await sim.runAll();
  await d.close();
  return {
    scenario: s.name,
    policy: s.policy,
    jobs,
    completed: latencies.length,
    rejected,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    hot: s.hot ? { jobs: hotJobs, hits, spills, p50Ms: percentile(hotLatencies, 0.5), p99Ms: percentile(hotLatencies, 0.99) } : undefined,
    perWorker,
  };
}
