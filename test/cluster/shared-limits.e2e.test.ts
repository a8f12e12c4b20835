import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { maxInWindow } from "../helpers/windows.js";
import { DispatcherService } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { redisMissing, startRedis, type RedisProcess } from "../helpers/redis-server.js";
import { startReplicas, type Replicas } from "../helpers/replicas.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

const missing = redisMissing();
if (missing !== undefined) console.warn(`skipping: ${missing}`);

const L = 100;
const WINDOW_MS = 1_000;


describe.skipIf(missing !== undefined)("requests_per_minute shared by 3 replicas through Redis, against a counting upstream", () => {
  let redis: RedisProcess;
  let replicas: Replicas;
  let upstream: ChildProcess;
  let upstreamUrl: string;
  let clients: Client<typeof DispatcherService>[];
  let slow: TestUpstream;
  let concurrent = 0;
  let mostConcurrent = 0;

  beforeAll(async () => {
    redis = await startRedis();
    // The upstream counts arrivals and enforces L per window itself, answering 429 past it, as a provider does.
    upstream = spawn(process.execPath, [join(import.meta.dirname, "counting-upstream.mjs"), String(L), String(WINDOW_MS)], { stdio: ["ignore", "pipe", "inherit"] });
    const port = await new Promise<string>((resolve) => createInterface({ input: upstream.stdout! }).once("line", resolve));
    upstreamUrl = `http://127.0.0.1:${port}`;
    // An upstream that takes 30 ms per call and counts how many it holds at once.
    slow = await startUpstream((_req, res) => {
      mostConcurrent = Math.max(mostConcurrent, ++concurrent);
      setTimeout(() => {
        concurrent--;
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      }, 30);
    });
    replicas = await startReplicas({
      count: 3,
      redisUrl: redis.url,
      backends: [{
        name: "api", kind: "http", endpoints: [{ url: upstreamUrl, name: "key1" }],
        max_concurrency: 32, queue_capacity: 1_000,
        limits: { requests_per_minute: L, window: `${WINDOW_MS}ms` },
      }, {
        // Each replica would run 8 at once; the cluster-wide lease limit says 4 in all.
        name: "slow", kind: "http", endpoints: [{ url: slow.url }], max_concurrency: 8, queue_capacity: 1_000,
        limits: { max_concurrency: 4 },
      }],
    });
    clients = replicas.ports.map((p) => createClient(DispatcherService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${p}` })));
  }, 120_000);

  afterAll(async () => {
    await replicas?.stop();
    upstream?.kill();
    await slow?.close();
    await redis?.stop();
  });

  it("under 3× the limit the upstream sees at most the limit in every sliding window, and every call is answered", async () => {
    const calls: Promise<string>[] = [];
    const start = performance.now();
    // 3 L per second for 2 s, spread over the replicas.
    for (let i = 0; i < 6 * L; i++) {
      const due = start + (i * 1_000) / (3 * L);
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      calls.push(clients[i % 3]!.submit({ backend: "api" }, { timeoutMs: 30_000 }).then(() => "ok", (e: Error) => e.message));
    }
    const outcomes = await Promise.all(calls);
    const { arrivals, refused: refusedByUpstream } = (await (await fetch(`${upstreamUrl}/stats`)).json()) as { arrivals: number[]; refused: number };
    const failed = outcomes.filter((o) => o !== "ok");
    expect(failed).toEqual([]);
    const most = maxInWindow(arrivals, WINDOW_MS);
    console.log(`upstream: ${arrivals.length} arrivals, at most ${most} in any ${WINDOW_MS} ms window (limit ${L}), ${refusedByUpstream} refused (429) by the upstream`);
    expect(arrivals.length).toBe(6 * L);
    // The bound: ≤ 1.01 L in every window as the upstream sees it (arrival times carry a few ms of jitter).
    expect(most).toBeLessThanOrEqual(Math.floor(1.01 * L));
    // Charges count until a window after each call's end: the upstream, enforcing L itself, refused none.
    expect(refusedByUpstream).toBe(0);
    // Waiting in queue, not calling the upstream to earn a 429: six windows' worth took about six windows.
    expect(performance.now() - start).toBeGreaterThanOrEqual(5 * WINDOW_MS);
  }, 60_000);

  it("a cluster-wide max_concurrency holds across the replicas: the upstream never holds more", async () => {
    const outcomes = await Promise.all(Array.from({ length: 150 }, (_, i) =>
      clients[i % 3]!.submit({ backend: "slow" }, { timeoutMs: 30_000 }).then(() => "ok", (e: Error) => e.message)));
    expect(outcomes.filter((o) => o !== "ok")).toEqual([]);
    console.log(`slow upstream: at most ${mostConcurrent} calls at once (cluster-wide limit 4, 3 replicas × 8 slots)`);
    expect(mostConcurrent).toBeLessThanOrEqual(4);
    expect(mostConcurrent).toBe(4);
  }, 60_000);

  it("WorkerMetrics shows each limit's budget and the Redis health", async () => {
    const ac = new AbortController();
    let first;
    // The store refreshes its view about once a second: read until the leases of the last test show as freed.
    for await (const m of clients[0]!.workerMetrics({ backends: ["api", "slow"], interval: { seconds: 0n, nanos: 100_000_000 } }, { signal: ac.signal, timeoutMs: 10_000 })) {
      first = m;
      if (m.workers.find((w) => w.backend === "slow")?.limits[0]?.concurrencyLeft === 4n) break;
    }
    ac.abort();
    const api = first!.workers.find((w) => w.backend === "api")!;
    expect(api.limits.map((l) => l.key)).toEqual(["backend:api"]);
    expect(api.limits[0]!.requestsLeft).toBeLessThanOrEqual(BigInt(L));
    expect(api.limits[0]!.tokensLeft).toBeUndefined();
    const slowW = first!.workers.find((w) => w.backend === "slow")!;
    expect(slowW.limits.map((l) => l.key)).toEqual(["backend:slow"]);
    expect(slowW.limits[0]!.concurrencyLeft).toBe(4n);
    expect(first!.cluster?.redisUp).toBe(true);
    expect(first!.cluster?.replicas).toBe(3);
    expect(Number(first!.cluster?.redisRttP99?.nanos ?? 0) + Number(first!.cluster?.redisRttP99?.seconds ?? 0n) * 1e9).toBeGreaterThan(0);
  });
});
