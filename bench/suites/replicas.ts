import { create, toBinary } from "@bufbuild/protobuf";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { clusterMissing, startCluster } from "../lib/cluster.js";
import { grpcFrame } from "../lib/grpc-load.js";
import { h2loadAvailable, runH2load } from "../lib/h2load.js";
import { fmt, median, ratio, rounds, table, writeResult, type BenchContext } from "../lib/report.js";

const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";
const GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"];

interface Spec {
  key: string;
  label: string;
  /** Through HAProxy, or straight to replica r0. */
  via: "proxy" | "direct";
  /** A dispatcher-session header on every call (h2load sends the same headers on every request). */
  session: boolean;
}

const specs: Spec[] = [
  { key: "direct", label: "1 replica, called directly", via: "direct", session: false },
  { key: "proxy", label: "HAProxy → 3 replicas, no session (round robin)", via: "proxy", session: false },
  { key: "proxy-session", label: "HAProxy → 3 replicas, one session header (hashed; bounded load spills)", via: "proxy", session: true },
];

interface Run {
  rps: number;
  p50Us: number | undefined;
  p99Us: number | undefined;
  failed: number;
}

/**
 * 3 replicas behind HAProxy against 1 replica called directly: h2load with a
 * real gRPC Submit body (as the edge suite), calls/s and p99 from h2load's
 * per-request log, interleaved rounds in rotating order. The replicas share
 * Redis (pins written through) and run as `npm start` runs them. On one
 * machine the replicas, HAProxy and h2load share its cores: this measures
 * what the proxy hop costs a call, not how far replicas scale on separate hosts.
 */
export async function replicasSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const missing = (await h2loadAvailable()) ? clusterMissing() : "h2load not installed (apt-get install nghttp2-client)";
  if (missing !== undefined) {
    ctx.log(`replicas: ${missing}: skipped`);
    const data = { skipped: missing };
    writeResult(ctx, "replicas", data);
    return data;
  }
  const seconds = ctx.mode === "full" ? 5 : ctx.mode === "quick" ? 2 : 1;
  const n = rounds(ctx, 5);
  const connections = 2;
  const streams = 32;
  const body = grpcFrame(
    toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: new Uint8Array(32).fill(7) } })),
  );
  const cluster = await startCluster(3, [{ name: "echo", kind: "echo", workers: 4, max_concurrency: 64, queue_capacity: 1024 }]);
  try {
    const once = async (s: Spec, secs: number): Promise<Run> => {
      const r = await runH2load({
        port: s.via === "proxy" ? cluster.proxyPort : cluster.replicaPorts[0]!,
        path: SUBMIT,
        body,
        seconds: secs,
        connections,
        streams,
        headers: s.session ? [...GRPC_HEADERS, "dispatcher-session: bench-user"] : GRPC_HEADERS,
        latencies: true,
      });
      return { rps: r.rps, p50Us: r.p50Us, p99Us: r.p99Us, failed: r.failed };
    };
    for (const s of specs) await once(s, 1); // warm-up: JIT, connections
    const results = new Map<string, Run[]>(specs.map((s) => [s.key, []]));
    for (let r = 0; r < n; r++) {
      for (let k = 0; k < specs.length; k++) {
        const s = specs[(k + r) % specs.length]!;
        const res = await once(s, seconds);
        results.get(s.key)!.push(res);
        ctx.log(`replicas round ${r + 1}/${n} ${s.key}: ${fmt(res.rps)} calls/s, p99 ${fmt((res.p99Us ?? NaN) / 1000, 2)} ms`);
      }
    }
    const summary = specs.map((s) => {
      const rs = results.get(s.key)!;
      return {
        key: s.key,
        label: s.label,
        rps: median(rs.map((x) => x.rps)),
        p50Ms: median(rs.map((x) => (x.p50Us ?? NaN) / 1000)),
        p99Ms: median(rs.map((x) => (x.p99Us ?? NaN) / 1000)),
        failed: rs.reduce((a, x) => a + x.failed, 0),
        rounds: rs,
      };
    });
    const perRound = (x: string, y: string) => median(results.get(x)!.map((res, i) => ratio(res.rps, results.get(y)![i]!.rps)!));
    const ratios = { "proxy/direct": perRound("proxy", "direct"), "proxy-session/direct": perRound("proxy-session", "direct") };
    ctx.log(`\nReplicas: h2load, ${connections} connections × ${streams} streams, unary Submit (32-byte binary payload), ${n} interleaved rounds of ${seconds} s (medians)`);
    ctx.log(table(
      ["target", "calls/s", "p50 ms", "p99 ms", "failed"],
      summary.map((s) => [s.label, fmt(s.rps), fmt(s.p50Ms, 2), fmt(s.p99Ms, 2), fmt(s.failed)]),
    ));
    ctx.log(table(
      ["ratio (median of per-round ratios)", "value"],
      [
        ["3 replicas behind HAProxy / 1 direct", fmt(ratios["proxy/direct"], 2)],
        ["one session through HAProxy / 1 direct", fmt(ratios["proxy-session/direct"], 2)],
      ],
    ));
    const data = { connections, streams, secondsPerRound: seconds, rounds: n, targets: summary, ratios };
    ctx.log(`wrote ${writeResult(ctx, "replicas", data)}`);
    return data;
  } finally {
    await cluster.stop();
  }
}
