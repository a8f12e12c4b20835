import { createDispatcher, DispatchError, type SchedulingOptions } from "../../src/core/index.js";
import { fmt, percentile, table, writeResult, type BenchContext } from "../lib/report.js";
import { exponential, mulberry32 } from "../lib/random.js";
import { createSimulator } from "../lib/sim.js";

const WORKERS = 2;
const SLOTS = 4;
const QUEUE = 64;
const MEAN_SERVICE_MS = 10;
/** Jobs per ms the pool completes. */
const CAPACITY = (WORKERS * SLOTS) / MEAN_SERVICE_MS;

interface Stream {
  name: string;
  tenant?: string;
  priority?: number;
  /** Arrival rate as a multiple of the pool's capacity. */
  load: number;
  deadlineMs?: number;
}

interface StreamStats {
  submitted: number;
  completed: number;
  rejected: number;
  /** Answered within their deadline (all completed ones when there is none). */
  good: number;
  waitP99Ms: number;
}

interface MixResult {
  streams: Record<string, StreamStats>;
  durationMs: number;
  startedPastDeadline: number;
}

/** FIFO: one tier, no tenants, no deadline-aware admission, no displacement: the baseline of every figure. */
const FIFO: SchedulingOptions = { deadlineAware: false, displace: false };

/**
 * Runs Poisson streams into one backend (2 workers × 4 slots, queues of 64,
 * exponential service times of mean 10 ms) in simulated time, seeded; the
 * same arrivals and sizes for the fair queue and for FIFO.
 */
async function mix(streams: Stream[], scheduling: SchedulingOptions, fifo: boolean, durationMs: number, seed: number): Promise<MixResult> {
  const sim = createSimulator();
  let startedPastDeadline = 0;
  const d = createDispatcher({
    clock: sim.clock,
    random: mulberry32(seed),
    observer: {
      jobStarted(job) {
        if (sim.now() >= (job as unknown as { deadline: number }).deadline) startedPastDeadline++;
      },
    },
    backends: [{
      name: "sim",
      workers: WORKERS,
      maxConcurrency: SLOTS,
      queueCapacity: QUEUE,
      timeoutMs: 0,
      scheduling,
      handler: (payload) => new Promise((resolve) => sim.at(sim.now() + (payload.json as number), () => resolve(payload))),
    }],
  });
  const stats: Record<string, StreamStats> = {};
  const waits: Record<string, number[]> = {};
  // Each stream's arrivals from its own seeded sequence: adding a stream does not move the others' arrivals.
  streams.forEach((s, k) => {
    const st: StreamStats = (stats[s.name] = { submitted: 0, completed: 0, rejected: 0, good: 0, waitP99Ms: 0 });
    const w: number[] = (waits[s.name] = []);
    const arrivals = mulberry32(seed + 100 + k);
    const sizes = mulberry32(seed + 200 + k);
    const gap = 1 / (CAPACITY * s.load);
    const next = (t: number) => {
      if (t > durationMs) return;
      sim.at(t, () => {
        const arrived = sim.now();
        st.submitted++;
        d.submit({
          backend: "sim",
          tenant: fifo ? undefined : s.tenant,
          priority: fifo ? undefined : s.priority,
          timeoutMs: s.deadlineMs,
          payload: { json: exponential(sizes, MEAN_SERVICE_MS) },
        }).then(
          (r) => {
            st.completed++;
            w.push(r.queueWaitMs);
            if (s.deadlineMs === undefined || sim.now() - arrived <= s.deadlineMs) st.good++;
          },
          (e: unknown) => {
            if (!(e instanceof DispatchError)) throw e;
            st.rejected++;
          },
        );
        next(arrived + exponential(arrivals, gap));
      });
    };
    next(exponential(arrivals, gap));
  });
  await sim.runAll();
  await d.close();
  for (const s of streams) stats[s.name]!.waitP99Ms = percentile(waits[s.name]!, 0.99);
  return { streams: stats, durationMs, startedPastDeadline };
}

function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  return (sum * sum) / (xs.length * xs.reduce((a, b) => a + b * b, 0));
}

/**
 * Priorities and tenant fairness (DESIGN.md §10), each figure against FIFO
 * measured in the same run on the same arrivals.
 */
export async function fairnessSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const duration = ctx.mode === "full" ? 60_000 : ctx.mode === "quick" ? 10_000 : 1_000;
  const seed = 20261123;
  const fair: SchedulingOptions = { tenantQueueShare: 0.5, tenantWeights: { w2: 2, w4: 4 } };
  const rows: string[][] = [];
  const data: Record<string, unknown> = { duration, workers: WORKERS, slots: SLOTS, queue: QUEUE, meanServiceMs: MEAN_SERVICE_MS };

  // 1. A flooding tenant: the quiet tenant's p99 queue wait with the other at its share (what the quiet one
  // leaves: 90 % of capacity) and at 100× that.
  const quiet = { name: "quiet", tenant: "quiet", load: 0.1 };
  const atShare = [quiet, { name: "other", tenant: "other", load: 0.9 }];
  const flood = [quiet, { name: "other", tenant: "other", load: 90 }];
  const floodDuration = Math.max(500, duration / 10);
  const flood1 = {
    fairShare: await mix(atShare, fair, false, floodDuration, seed),
    fairFlood: await mix(flood, fair, false, floodDuration, seed),
    fifoShare: await mix(atShare, FIFO, true, floodDuration, seed),
    fifoFlood: await mix(flood, FIFO, true, floodDuration, seed),
  };
  const q = (r: MixResult) => r.streams["quiet"]!;
  const fairRise = q(flood1.fairFlood).waitP99Ms / q(flood1.fairShare).waitP99Ms - 1;
  const fifoRise = q(flood1.fifoFlood).waitP99Ms / q(flood1.fifoShare).waitP99Ms - 1;
  rows.push(["quiet tenant p99 wait rise, other tenant at 100× its share", `${fmt(fairRise * 100, 1)} % (${fmt(q(flood1.fairShare).waitP99Ms, 2)} → ${fmt(q(flood1.fairFlood).waitP99Ms, 2)} ms; quiet rejected ${q(flood1.fairFlood).rejected})`, `FIFO: ${fmt(fifoRise * 100, 1)} % (${fmt(q(flood1.fifoShare).waitP99Ms, 2)} → ${fmt(q(flood1.fifoFlood).waitP99Ms, 2)} ms; quiet rejected ${q(flood1.fifoFlood).rejected} of ${q(flood1.fifoFlood).submitted})`, "≤ 20 %"]);
  data["flood"] = { fairRise, fifoRise, runs: flood1 };

  // 2. Equal tenants under saturation: Jain's index of their throughput.
  const equal = ["a", "b", "c", "d"].map((t) => ({ name: t, tenant: t, load: 0.5 }));
  const eqFair = await mix(equal, fair, false, duration, seed);
  const eqFifo = await mix(equal, FIFO, true, duration, seed);
  const jFair = jain(equal.map((s) => eqFair.streams[s.name]!.completed));
  const jFifo = jain(equal.map((s) => eqFifo.streams[s.name]!.completed));
  rows.push(["Jain's index, 4 equal tenants at 2× capacity", fmt(jFair, 4), `FIFO: ${fmt(jFifo, 4)}`, "≥ 0.99"]);

  // 3. Weights 1:2:4, each tenant alone enough to saturate: throughput shares against the weights.
  const weighted = [{ name: "w1", tenant: "w1", load: 1 }, { name: "w2", tenant: "w2", load: 1 }, { name: "w4", tenant: "w4", load: 1 }];
  const wFair = await mix(weighted, fair, false, duration, seed);
  const total = weighted.reduce((n, s) => n + wFair.streams[s.name]!.completed, 0);
  const errs = weighted.map((s, i) => Math.abs(wFair.streams[s.name]!.completed / total / ([1, 2, 4][i]! / 7) - 1));
  const worst = Math.max(...errs);
  rows.push(["weights 1:2:4, largest error of a tenant's share", `${fmt(worst * 100, 2)} %`, `shares ${weighted.map((s) => fmt((100 * wFair.streams[s.name]!.completed) / total, 1)).join(" / ")} %`, "≤ 5 %"]);
  data["fairness"] = { jainFair: jFair, jainFifo: jFifo, weightShareErrors: errs };

  // 4. Tier 0 at 30 % of capacity while tier 2 runs at 1× and at 10× capacity.
  const t0 = { name: "t0", priority: 0, load: 0.3 };
  const tierBase = await mix([t0, { name: "t2", priority: 2, load: 1 }], fair, false, duration, seed);
  const tierOver = await mix([t0, { name: "t2", priority: 2, load: 10 }], fair, false, duration, seed);
  const fifoOver = await mix([t0, { name: "t2", priority: 2, load: 10 }], FIFO, true, duration, seed);
  const tierRise = tierOver.streams["t0"]!.waitP99Ms / tierBase.streams["t0"]!.waitP99Ms - 1;
  rows.push(["tier-0 p99 wait rise, tier 2 from 1× to 10× capacity", `${fmt(tierRise * 100, 1)} % (${fmt(tierBase.streams["t0"]!.waitP99Ms, 2)} → ${fmt(tierOver.streams["t0"]!.waitP99Ms, 2)} ms)`, `FIFO at 10×: tier-0 p99 ${fmt(fifoOver.streams["t0"]!.waitP99Ms, 1)} ms, ${fmt(fifoOver.streams["t0"]!.rejected)} of ${fmt(fifoOver.streams["t0"]!.submitted)} rejected`, "≤ 10 %"]);
  data["tiers"] = { rise: tierRise, base: tierBase, over: tierOver, fifoOver };

  // 5. 3× overload, every call with a 100 ms deadline: goodput = answers within the deadline ÷ what the pool can do.
  const overload = [{ name: "x", load: 3, deadlineMs: 100 }];
  const gFair = await mix(overload, fair, false, duration, seed);
  const gFifo = await mix(overload, FIFO, true, duration, seed);
  const goodput = (r: MixResult) => r.streams["x"]!.good / (CAPACITY * r.durationMs);
  rows.push(["goodput at 3× overload, 100 ms deadlines", fmt(goodput(gFair), 3), `FIFO: ${fmt(goodput(gFifo), 3)}`, "≥ 0.9"]);
  rows.push(["jobs started past their deadline", fmt(gFair.startedPastDeadline + gFifo.startedPastDeadline), "fair + FIFO", "0"]);
  data["deadlines"] = { goodputFair: goodput(gFair), goodputFifo: goodput(gFifo), startedPastDeadline: gFair.startedPastDeadline + gFifo.startedPastDeadline };

  ctx.log(`\nPriorities and fairness (simulated time, seeded): ${WORKERS} workers × ${SLOTS} slots, queues of ${QUEUE}, mean service ${MEAN_SERVICE_MS} ms, ${fmt(duration)} ms of arrivals per run; fair = tenant share 0.5, deadline-aware admission, displacement`);
  ctx.log(table(["figure", "fair queue", "baseline (same arrivals)", "target"], rows));
  ctx.log(`wrote ${writeResult(ctx, "fairness", data)}`);
  return data;
}
