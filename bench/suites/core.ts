import PQueue from "p-queue";
import { createDispatcher, type Dispatcher, type SubmitOptions } from "../../src/core/index.js";
import { fmt, median, ratio, rounds, table, writeResult, type BenchContext } from "../lib/report.js";
import { mulberry32 } from "../lib/random.js";

const CONCURRENCY = 64;
const LONG_TTL_MS = 3_600_000;

/**
 * The core in process: submit → result with a no-op handler, 64 submits
 * outstanding (each completion submits the next), against p-queue at the
 * same concurrency. Pins are created first (N distinct sessions, submitted
 * once); measured submits then hit sessions drawn at random over the whole
 * table, from a precomputed array so id generation is not measured.
 */
export async function coreSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const jobs = ctx.mode === "full" ? 1_000_000 : ctx.mode === "quick" ? 100_000 : 20_000;
  const bigPins = ctx.mode === "full" ? 1_000_000 : ctx.mode === "quick" ? 100_000 : 10_000;
  const n = rounds(ctx, 5);

  // Heap per pin first, on a quiet heap: the keys alone, then the table holding them.
  const heap = await measureHeapPerPin(bigPins);

  interface Variant {
    key: string;
    label: string;
    run: () => Promise<number>;
  }
  const noop = async () => undefined;
  const variants: Variant[] = [{ key: "p-queue", label: "p-queue (baseline)", run: () => drivePQueue(jobs, noop) }];
  const plain = makeDispatcher(1);
  variants.push({ key: "none", label: "no session", run: () => driveCore(plain, jobs, [undefined]) });
  const one = makeDispatcher(1);
  variants.push({ key: "1", label: "1 session", run: () => driveCore(one, jobs, ["s-0"]) });
  const sizes = [1_000, 100_000, bigPins].filter((v, i, a) => a.indexOf(v) === i);
  for (const size of sizes) {
    const keys = sessionKeys(size);
    const d = makeDispatcher(size);
    await populate(d, keys);
    const rand = mulberry32(size);
    const hits = Array.from({ length: Math.min(jobs, 1 << 20) }, () => keys[Math.floor(rand() * size)]!);
    variants.push({ key: String(size), label: `${fmt(size)} live pins`, run: () => driveCore(d, jobs, hits) });
  }

  for (const v of variants) await v.run(); // warm-up: JIT
  const results = new Map<string, number[]>(variants.map((v) => [v.key, []]));
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < variants.length; k++) {
      const v = variants[(k + r) % variants.length]!;
      const rate = await v.run();
      results.get(v.key)!.push(rate);
      ctx.log(`core round ${r + 1}/${n} ${v.key}: ${fmt(rate)} jobs/s`);
    }
  }
  const perRound = (x: string, y: string) => median(results.get(x)!.map((v, i) => v / results.get(y)![i]!));
  const rows = variants.map((v) => {
    const rate = median(results.get(v.key)!);
    return { key: v.key, label: v.label, jobsPerSecond: rate, vsPQueue: perRound(v.key, "p-queue"), vsOnePin: v.key === "p-queue" ? undefined : perRound(v.key, "1"), rounds: results.get(v.key) };
  });
  const big = String(bigPins);
  const summary = {
    "core/p-queue": perRound("none", "p-queue"),
    "bigPins/1pin": perRound(big, "1"),
    bigPinsJobsPerSecond: median(results.get(big)!),
    heapBytesPerPin: heap?.perPin,
    keyBytes: heap?.perKey,
  };
  ctx.log(`\nCore in process: no-op handler, ${CONCURRENCY} outstanding, 4 workers × maxConcurrency 16, ${fmt(jobs)} jobs per round, ${n} interleaved rounds (medians)`);
  ctx.log(table(
    ["configuration", "jobs/s", "× p-queue", "× 1 session"],
    rows.map((r) => [r.label, fmt(r.jobsPerSecond), fmt(r.vsPQueue, 2), r.vsOnePin === undefined ? "" : fmt(r.vsOnePin, 3)]),
  ));
  ctx.log(table(
    ["figure", "value", "target"],
    [
      ["core (no session) / p-queue", fmt(summary["core/p-queue"], 2), "≥ 1.0"],
      [`${fmt(bigPins)} pins / 1 session`, fmt(summary["bigPins/1pin"], 3), "≥ 0.5"],
      [`jobs/s at ${fmt(bigPins)} pins`, fmt(summary.bigPinsJobsPerSecond), "≥ 1,000,000"],
      [`heap per pin beyond the key, at ${fmt(bigPins)}`, heap ? `${fmt(heap.perPin, 1)} B (key: ${fmt(heap.perKey, 1)} B)` : "n/a (run node with --expose-gc)", "≤ 200 B"],
    ],
  ));
  const data = { concurrency: CONCURRENCY, jobsPerRound: jobs, rounds: n, variants: rows, summary, heap };
  ctx.log(`wrote ${writeResult(ctx, "core", data)}`);
  return data;
}

function makeDispatcher(pins: number): Dispatcher {
  return createDispatcher({
    backends: [{
      name: "noop",
      handler: (payload) => payload,
      workers: 4,
      maxConcurrency: 16,
      queueCapacity: 64,
      affinity: { ttlMs: LONG_TTL_MS, maxPins: Math.max(pins, 1) },
    }],
  });
}

function sessionKeys(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `session-${i.toString(36).padStart(8, "0")}`);
}

async function populate(d: Dispatcher, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 64) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(keys.length, i + 64); j++) batch.push(d.submit({ backend: "noop", sessionId: keys[j]! }));
    await Promise.all(batch);
  }
}

/** Closed loop of `CONCURRENCY` chains; returns jobs per second. */
function driveCore(d: Dispatcher, total: number, sessions: readonly (string | undefined)[]): Promise<number> {
  const reqs: SubmitOptions[] = sessions.map((sessionId) => ({ backend: "noop", sessionId, payload: { json: null } }));
  return closedLoop(total, (i) => d.submit(reqs[i % reqs.length]!));
}

function drivePQueue(total: number, fn: () => Promise<unknown>): Promise<number> {
  const q = new PQueue({ concurrency: CONCURRENCY });
  return closedLoop(total, () => q.add(fn));
}

function closedLoop(total: number, submit: (i: number) => Promise<unknown>): Promise<number> {
  return new Promise((resolve, reject) => {
    let issued = 0;
    let done = 0;
    const started = performance.now();
    const next = (): void => {
      if (issued < total) submit(issued++).then(onDone, reject);
    };
    const onDone = (): void => {
      if (++done === total) resolve(total / ((performance.now() - started) / 1000));
      else next();
    };
    for (let k = 0; k < CONCURRENCY; k++) next();
  });
}

/**
 * heapUsed after gc: the keys alone, then a dispatcher pinning all of them.
 * Per pin: the table's growth (pins share the key strings already counted).
 */
async function measureHeapPerPin(n: number): Promise<{ pins: number; perKey: number; perPin: number } | undefined> {
  if (typeof gc !== "function") return undefined;
  const used = () => {
    gc!();
    gc!();
    return process.memoryUsage().heapUsed;
  };
  const h0 = used();
  const keys = sessionKeys(n);
  const h1 = used();
  const d = makeDispatcher(n);
  await populate(d, keys);
  const h2 = used();
  const sessions = d.snapshot().reduce((a, w) => a + w.sessions, 0);
  if (sessions !== n || keys.length !== n) throw new Error(`expected ${n} pins, found ${sessions}`);
  return { pins: n, perKey: (h1 - h0) / n, perPin: (h2 - h1) / n };
}
