import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { JobState, type JobEvent } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";
import { redisMissing, startRedis, type RedisProcess } from "../helpers/redis-server.js";

const json = (v: unknown) => ({ case: "json" as const, value: { kind: { case: "stringValue" as const, value: JSON.stringify(v) } } });

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`not reached in ${ms} ms: ${JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? String(x) : x))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  return p.then(() => undefined, (e: unknown) => ConnectError.from(e).code);
}

const redisGone = redisMissing();
if (redisGone !== undefined) console.warn(`skipping the Redis half: ${redisGone}`);

describe.each([
  { store: "in process", redis: false },
  { store: "Redis", redis: true },
])("background jobs ($store): Enqueue, GetJob, WatchJob, CancelJob", ({ redis: useRedis }) => {
  let app: App;
  let redis: RedisProcess | undefined;
  beforeAll(async () => {
    if (useRedis) {
      if (redisGone !== undefined) return;
      redis = await startRedis();
    }
    app = await startTestApp({
      ...(redis === undefined ? {} : { cluster: { redis_url: redis.url } }),
      jobs: { max_queued: 3, max_result_bytes: 2_000 },
      backends: [
        { name: "echo", kind: "echo", max_concurrency: 8 },
        { name: "slow", kind: "echo", options: { delay_ms: 1_500 }, max_concurrency: 1, queue_capacity: 1 },
        { name: "tokens", kind: "echo", options: { stream_chunks: 5, chunk_delay_ms: 30 } },
        { name: "held", kind: "echo", options: { delay_ms: 2_000 }, max_concurrency: 1 },
      ],
    });
  });
  afterAll(async () => {
    await app?.close();
    await redis?.stop();
  });
  beforeEach((t) => {
    if (useRedis && redisGone !== undefined) t.skip();
  });

  for (const protocol of ["grpc", "connect"] as const) {
    it(`runs an enqueued job and keeps its result (${protocol})`, async () => {
      const c = connectClient(app.server.port, protocol);
      const { jobId, created } = await c.enqueue({ request: { backend: "echo", payload: json({ hi: 1 }) } });
      expect(created).toBe(true);
      const job = await until(() => c.getJob({ jobId }), (j) => j.state === JobState.SUCCEEDED);
      expect(job.result?.payload.case).toBe("json");
      expect(job.result?.workerId).toBe("echo/0");
      expect(job.attempts).toBe(1);
      expect(job.createdAt).toBeDefined();
      expect(job.finishedAt).toBeDefined();
    });
  }

  it("dedupes concurrent repeats of an idempotency key into one job", async () => {
    const c = connectClient(app.server.port, "grpc");
    const answers = await Promise.all(Array.from({ length: 20 }, () => c.enqueue({ request: { backend: "echo" }, idempotencyKey: "order-42" })));
    expect(new Set(answers.map((a) => a.jobId)).size).toBe(1);
    expect(answers.filter((a) => a.created)).toHaveLength(1);
  });

  it("streams a job's chunks and states to a watcher, and resumes without gap or duplicate", async () => {
    const c = connectClient(app.server.port, "grpc");
    const { jobId } = await c.enqueue({ request: { backend: "tokens", payload: json("abcdefghij") } });
    const all: JobEvent[] = [];
    for await (const e of c.watchJob({ jobId })) all.push(e);
    const kinds = all.map((e) => (e.event.case === "state" ? JobState[e.event.value] : e.event.case));
    expect(kinds[0]).toBe("QUEUED");
    expect(kinds[1]).toBe("RUNNING");
    expect(kinds.at(-1)).toBe("SUCCEEDED");
    expect(kinds.filter((k) => k === "chunk")).toHaveLength(5);
    expect(all.at(-1)!.job?.state).toBe(JobState.SUCCEEDED);
    // Resume from each point: the rest, exactly.
    for (let i = 0; i < all.length; i++) {
      const rest: string[] = [];
      for await (const e of c.watchJob({ jobId, afterEventId: all[i]!.eventId })) rest.push(e.eventId);
      expect(rest).toEqual(all.slice(i + 1).map((e) => e.eventId));
    }
  });

  it("cancels a queued job at once and a running one by stopping it", async () => {
    const c = connectClient(app.server.port, "grpc");
    // slow runs one at a time (1.5 s) with a queue of one: the third waits in the job store. A running job
    // hears its cancel at once in process, within a second (its runner's next renewal) with Redis.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await c.enqueue({ request: { backend: "slow" } })).jobId);
    await until(() => c.getJob({ jobId: ids[0]! }), (j) => j.state === JobState.RUNNING);
    const queued = await c.cancelJob({ jobId: ids[2]! });
    expect([JobState.CANCELLED]).toContain(queued.state);
    const running = await c.cancelJob({ jobId: ids[0]! });
    expect(running.state).toBe(JobState.RUNNING);
    const ended = await until(() => c.getJob({ jobId: ids[0]! }), (j) => j.state !== JobState.RUNNING, 5_000);
    expect(ended.state).toBe(JobState.CANCELLED);
    expect(ended.error?.code).toBe(Code.Canceled);
    // Cancelling an ended job changes nothing.
    expect((await c.cancelJob({ jobId: ids[2]! })).state).toBe(JobState.CANCELLED);
    await until(() => c.getJob({ jobId: ids[1]! }), (j) => j.state === JobState.SUCCEEDED, 10_000);
  });

  it("bounds what a client controls: queued jobs per backend, result size, timeouts, ids and keys", async () => {
    const c = connectClient(app.server.port, "grpc");
    // slow holds one running and one queued in the dispatcher; the store takes 3 more, then refuses.
    const codes: (Code | undefined)[] = [];
    for (let i = 0; i < 8; i++) codes.push(await codeOf(c.enqueue({ request: { backend: "slow" } })));
    expect(codes).toContain(Code.ResourceExhausted);
    const big = await c.enqueue({ request: { backend: "echo", payload: json("x".repeat(5_000)) } });
    const failed = await until(() => c.getJob({ jobId: big.jobId }), (j) => j.state !== JobState.QUEUED && j.state !== JobState.RUNNING);
    expect(failed.state).toBe(JobState.FAILED);
    expect(failed.error?.code).toBe(Code.ResourceExhausted);
    expect(failed.error?.message).toMatch(/max_result_bytes/);
    // One job holds "held" for 2 s: the next, with a 50 ms timeout, expires in the dispatcher's queue.
    await c.enqueue({ request: { backend: "held" } });
    const short = await c.enqueue({ request: { backend: "held" }, timeout: { seconds: 0n, nanos: 50_000_000 } });
    const expired = await until(() => c.getJob({ jobId: short.jobId }), (j) => j.state === JobState.EXPIRED, 10_000);
    expect(expired.error?.code).toBe(Code.DeadlineExceeded);
    expect(await codeOf(c.getJob({ jobId: "nope" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(c.getJob({ jobId: "00000000-0000-4000-8000-000000000000" }))).toBe(Code.NotFound);
    expect(await codeOf(c.enqueue({ request: { backend: "nope" } }))).toBe(Code.NotFound);
    expect(await codeOf(c.enqueue({}))).toBe(Code.InvalidArgument);
    expect(await codeOf(c.enqueue({ request: { backend: "echo" }, idempotencyKey: "k".repeat(129) }))).toBe(Code.InvalidArgument);
    expect(await codeOf(c.enqueue({ request: { backend: "echo" }, timeout: { seconds: 10n ** 9n, nanos: 0 } }))).toBe(Code.InvalidArgument);
    expect(await codeOf((async () => { for await (const _ of c.watchJob({ jobId: big.jobId, afterEventId: "x" })) void _; })())).toBe(Code.InvalidArgument);
  }, 30_000);

  it("WorkerMetrics counts background jobs by backend and state", async () => {
    const c = connectClient(app.server.port, "grpc");
    const ac = new AbortController();
    let succeeded = 0n;
    let cancelled = 0n;
    for await (const m of c.workerMetrics({ interval: { seconds: 0n, nanos: 100_000_000 } }, { signal: ac.signal, timeoutMs: 10_000 })) {
      succeeded = m.jobs.find((j) => j.backend === "echo" && j.state === JobState.SUCCEEDED)?.count ?? 0n;
      cancelled = m.jobs.find((j) => j.backend === "slow" && j.state === JobState.CANCELLED)?.count ?? 0n;
      if (succeeded >= 3n && cancelled >= 2n) break;
    }
    ac.abort();
    // Two runs of the first test, one deduped job; a cancelled queued job and a cancelled running one.
    expect(succeeded).toBeGreaterThanOrEqual(3n);
    expect(cancelled).toBe(2n);
  });
});
