import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { DispatcherService, EnqueueRequestSchema, JobState, SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { grpcFrame } from "../lib/grpc-load.js";
import { h2loadAvailable, runH2load } from "../lib/h2load.js";
import { clusterMissing, startCluster } from "../lib/cluster.js";
import { fmt, percentile, rounds, table, writeResult, type BenchContext } from "../lib/report.js";

/**
 * Background jobs through 3 replicas sharing Redis on loopback: the time from
 * Enqueue to its answer (the job durable in Redis), against a Submit of the
 * same no-op job to the same replica in the same rounds; then jobs per second
 * from Enqueue to SUCCEEDED with every replica running them.
 * Targets (issue 14): Enqueue → ack ≤ 2 ms p99.
 */
export async function jobsSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const missing = clusterMissing();
  if (missing !== undefined) {
    ctx.log(`jobs: ${missing}; suite skipped`);
    return { unavailable: missing };
  }
  const cluster = await startCluster(3, [{ name: "echo", kind: "echo", workers: 4, max_concurrency: 16, queue_capacity: 256 }]);
  try {
    const clients = cluster.replicaPorts.map((p) => createClient(DispatcherService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${p}` })));
    const calls = ctx.mode === "full" ? 2_000 : ctx.mode === "quick" ? 500 : 50;
    const n = rounds(ctx, 5);
    const lat: Record<"enqueue" | "submit", number[]> = { enqueue: [], submit: [] };
    for (let r = 0; r < n; r++) {
      for (const key of r % 2 === 0 ? (["enqueue", "submit"] as const) : (["submit", "enqueue"] as const)) {
        for (let i = 0; i < calls; i++) {
          const t0 = performance.now();
          if (key === "enqueue") await clients[0]!.enqueue({ request: { backend: "echo" } });
          else await clients[0]!.submit({ backend: "echo" });
          lat[key].push(performance.now() - t0);
        }
      }
    }
    // The same calls from h2load (DESIGN.md §8: a load generator not written in Node), one at a time.
    const h2: Record<string, { p50Us?: number; p99Us?: number; rps: number }> = {};
    if (await h2loadAvailable()) {
      const bodies = {
        enqueue: { path: "/dispatcher.v1.DispatcherService/Enqueue", body: grpcFrame(toBinary(EnqueueRequestSchema, create(EnqueueRequestSchema, { request: { backend: "echo" } }))) },
        submit: { path: "/dispatcher.v1.DispatcherService/Submit", body: grpcFrame(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo" }))) },
      };
      const seconds = ctx.mode === "full" ? 5 : ctx.mode === "quick" ? 2 : 1;
      for (const [key, b] of Object.entries(bodies)) {
        const r = await runH2load({ port: cluster.replicaPorts[0]!, path: b.path, body: b.body, seconds, connections: 1, streams: 1, latencies: true });
        h2[key] = r;
      }
    }
    // Throughput: a burst enqueued across the replicas, timed until the last job succeeded (counts are shared in Redis).
    const jobs = ctx.mode === "full" ? 3_000 : ctx.mode === "quick" ? 1_000 : 100;
    const before = await succeeded(clients[0]!);
    const t0 = performance.now();
    for (let i = 0; i < jobs; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, jobs - i) }, (_, k) => clients[(i + k) % 3]!.enqueue({ request: { backend: "echo" } })));
    }
    let done = 0;
    while (done < jobs && performance.now() - t0 < 120_000) {
      await new Promise((res) => setTimeout(res, 100));
      done = (await succeeded(clients[0]!)) - before;
    }
    const seconds = (performance.now() - t0) / 1000;
    const row = (k: "enqueue" | "submit", what: string) => [what, fmt(percentile(lat[k], 0.5), 2), fmt(percentile(lat[k], 0.99), 2), fmt(percentile(lat[k], 0.999), 2)];
    ctx.log(`\nBackground jobs: 3 replicas sharing Redis on loopback; ${n} rounds × ${fmt(calls)} sequential calls to one replica (grpc, connect-node client)`);
    ctx.log(table(["call", "p50 ms", "p99 ms", "p99.9 ms"], [row("enqueue", "Enqueue → answer (job durable in Redis)"), row("submit", "Submit, echo (baseline round trip)")]));
    if (h2["enqueue"] !== undefined) {
      ctx.log(table(["call, from h2load (1 connection, 1 stream)", "calls/s", "p50 ms", "p99 ms"], Object.entries(h2).map(([k, r]) => [
        k === "enqueue" ? "Enqueue → answer" : "Submit, echo", fmt(r.rps), fmt((r.p50Us ?? NaN) / 1000, 2), fmt((r.p99Us ?? NaN) / 1000, 2),
      ])));
    }
    ctx.log(table(["figure", "value", "target"], [
      ["Enqueue → ack p99 (ms), connect-node client", fmt(percentile(lat.enqueue, 0.99), 2), "≤ 2"],
      ["Enqueue → ack p99 (ms), h2load", fmt((h2["enqueue"]?.p99Us ?? NaN) / 1000, 2), "≤ 2"],
      [`jobs/s, ${fmt(jobs)} enqueued across 3 replicas until all succeeded`, fmt(done / seconds), ""],
    ]));
    const data = { h2load: h2, calls, rounds: n, enqueueP50Ms: percentile(lat.enqueue, 0.5), enqueueP99Ms: percentile(lat.enqueue, 0.99), submitP99Ms: percentile(lat.submit, 0.99), jobs, done, seconds, jobsPerSecond: done / seconds };
    ctx.log(`wrote ${writeResult(ctx, "jobs", data)}`);
    return data;
  } finally {
    await cluster.stop();
  }
}

/** Jobs of backend "echo" that succeeded, as WorkerMetrics counts them (the count is shared through Redis). */
async function succeeded(client: ReturnType<typeof createClient<typeof DispatcherService>>): Promise<number> {
  const ac = new AbortController();
  for await (const m of client.workerMetrics({}, { signal: ac.signal })) {
    ac.abort();
    return Number(m.jobs.find((j) => j.backend === "echo" && j.state === JobState.SUCCEEDED)?.count ?? 0n);
  }
  return 0;
}
