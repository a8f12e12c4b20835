import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DispatcherService, JobState, type Job } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { redisMissing, startRedis, type RedisProcess } from "../helpers/redis-server.js";
import { startReplicas, type Replicas } from "../helpers/replicas.js";

const missing = redisMissing();
if (missing !== undefined) console.warn(`skipping: ${missing}`);

const JOBS = 1_000;
const terminal = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED]);

/**
 * GetJob of every id, 100 at a time, as a client polls; UNAVAILABLE (a Redis round trip over
 * cluster.redis_timeout on this loaded machine) is retried, as gRPC clients retry it.
 */
async function getAll(ids: string[], via: (i: number) => Client<typeof DispatcherService>): Promise<Job[]> {
  const out: Job[] = [];
  for (let i = 0; i < ids.length; i += 100) {
    out.push(...(await Promise.all(ids.slice(i, i + 100).map(async (jobId, k) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await via(i + k).getJob({ jobId });
        } catch (e) {
          if (attempt >= 5 || ConnectError.from(e).code !== Code.Unavailable) throw e;
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
    }))));
  }
  return out;
}

describe.skipIf(missing !== undefined)("background jobs durable in Redis across 3 replicas, one SIGKILLed mid-run", () => {
  let redis: RedisProcess;
  let replicas: Replicas;
  let clients: Client<typeof DispatcherService>[];

  beforeAll(async () => {
    redis = await startRedis();
    replicas = await startReplicas({
      count: 3,
      redisUrl: redis.url,
      // A claim not renewed for 2 s (a dead replica's) is taken over by a live one.
      extra: { jobs: { claim_timeout: "2s", max_running: 16, max_queued: JOBS } },
      // 200 ms per job, 16 at once per replica: 1,000 jobs take a few seconds, so the kill lands mid-run.
      backends: [{ name: "work", kind: "echo", workers: 2, max_concurrency: 8, queue_capacity: 64, options: { delay_ms: 200 } }],
    });
    clients = replicas.ports.map((p) => createClient(DispatcherService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${p}` })));
  }, 120_000);

  afterAll(async () => {
    await replicas?.stop();
    await redis?.stop();
  });

  it("every accepted job reaches one terminal state, readable from any surviving replica", async () => {
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, JOBS - i) }, (_, k) =>
        clients[(i + k) % 3]!.enqueue({ request: { backend: "work", payload: { case: "binary", value: new TextEncoder().encode(`job-${i + k}`) } } }, { timeoutMs: 10_000 })));
      ids.push(...batch.map((b) => b.jobId));
    }
    expect(new Set(ids).size).toBe(JOBS);
    // Kill replica 0 while it runs jobs: its claims lapse and the others take them over.
    const survivors = clients.slice(1);
    const inflight = async () => {
      const ac = new AbortController();
      for await (const m of clients[0]!.workerMetrics({}, { signal: ac.signal })) {
        ac.abort();
        return m.workers.reduce((n, w) => n + w.inflight, 0);
      }
      return 0;
    };
    let running = 0;
    for (let i = 0; i < 400 && (running = await inflight()) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(running).toBeGreaterThan(0);
    await replicas.kill(0, "SIGKILL");

    const end = Date.now() + 60_000;
    let jobs = await getAll(ids, (i) => survivors[i % 2]!);
    while (jobs.some((j) => !terminal.has(j.state)) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 250));
      jobs = await getAll(ids, (i) => survivors[i % 2]!);
    }
    const byState = new Map<string, number>();
    for (const j of jobs) byState.set(JobState[j.state], (byState.get(JobState[j.state]) ?? 0) + 1);
    const rerun = jobs.filter((j) => j.attempts > 1);
    console.log(`${JOBS} jobs: ${[...byState].map(([s, n]) => `${n} ${s}`).join(", ")}; ${rerun.length} run again after the kill`);
    // The kill caught replica 0 running jobs: another replica took them over.
    expect(rerun.length).toBeGreaterThan(0);
    expect(byState.get("SUCCEEDED")).toBe(JOBS);
    // Each result is the job's own answer, readable from the other survivor too.
    for (const [i, j] of jobs.entries()) {
      expect(j.result?.payload.case).toBe("binary");
      expect(new TextDecoder().decode(j.result!.payload.value as Uint8Array)).toBe(`job-${i}`);
    }
    const other = await getAll(ids, (i) => survivors[(i + 1) % 2]!);
    expect(other.map((j) => j.state)).toEqual(jobs.map((j) => j.state));
    // Exactly one terminal event per job, re-run ones included (and a sample of the others).
    for (const j of [...rerun, ...jobs.filter((x) => x.attempts === 1).slice(0, 50)]) {
      const states: string[] = [];
      for await (const e of survivors[0]!.watchJob({ jobId: j.jobId })) if (e.event.case === "state") states.push(JobState[e.event.value]);
      expect(states.filter((s) => terminal.has(JobState[s as keyof typeof JobState]))).toEqual(["SUCCEEDED"]);
    }
  }, 120_000);
});
