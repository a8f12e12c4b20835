import { execFileSync } from "node:child_process";
import { create, toBinary } from "@bufbuild/protobuf";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startTarget, TargetUnavailable, type Target } from "../lib/child.js";
import { grpcFrame } from "../lib/grpc-load.js";
import { h2loadAvailable, runH2load } from "../lib/h2load.js";
import { fmt, median, ratio, rounds, table, writeResult, type BenchContext } from "../lib/report.js";

const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";
const PAYLOAD = new Uint8Array(32).fill(7);

interface Spec {
  key: string;
  label: string;
  file: string;
  args: string[];
  /** "grpc": binary gRPC body; "json": Connect protocol, JSON. */
  load: "grpc" | "json";
}

const specs: Spec[] = [
  { key: "b", label: "bare grpc-js", file: "grpcjs-bare", args: [], load: "grpc" },
  { key: "a", label: "bare connect-node", file: "connect-bare", args: [], load: "grpc" },
  { key: "c", label: "dispatcher (edge, fast path)", file: "dispatcher", args: [], load: "grpc" },
  { key: "t", label: "dispatcher (edge), traced", file: "dispatcher", args: ["--traced"], load: "grpc" },
  { key: "u", label: "dispatcher (edge, connect handler only)", file: "dispatcher", args: ["--front", "universal"], load: "grpc" },
  { key: "p", label: "dispatcher (compat front end, before the edge)", file: "dispatcher", args: ["--front", "compat"], load: "grpc" },
  { key: "cj", label: "dispatcher (edge), Connect JSON", file: "dispatcher", args: [], load: "json" },
  { key: "pj", label: "dispatcher (compat), Connect JSON", file: "dispatcher", args: ["--front", "compat"], load: "json" },
];

interface Run {
  rps: number;
  /** Server CPU (user + system, all threads) per answered call, µs. */
  cpuUs: number;
  failed: number;
}

/**
 * h2load (not written in Node) against each target in its own process, with
 * each server's CPU per call (process.cpuUsage of the target: every thread,
 * GC included). Rounds interleave the targets and rotate their order. Each
 * runtime in turn: this Node, and Node 24 when BENCH_NODE24 names its
 * binary. h2load counts HTTP 200 as success: for gRPC that includes error
 * statuses, so every target here answers every call OK (echo, no limits hit).
 */
export async function edgeSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  if (!(await h2loadAvailable())) {
    ctx.log("edge: h2load not installed (apt-get install nghttp2-client): skipped");
    const data = { skipped: "h2load not installed" };
    writeResult(ctx, "edge", data);
    return data;
  }
  const seconds = ctx.mode === "full" ? 5 : ctx.mode === "quick" ? 2 : 1;
  const n = rounds(ctx, 5);
  const connections = 2;
  const streams = 32;
  const runtimes: { name: string; execPath: string | undefined }[] = [{ name: `Node ${process.version}`, execPath: undefined }];
  const node24 = process.env["BENCH_NODE24"];
  if (node24) runtimes.push({ name: `Node ${execFileSync(node24, ["--version"]).toString().trim()}`, execPath: node24 });

  const grpcBody = grpcFrame(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: PAYLOAD } })));
  const jsonBody = Buffer.from(JSON.stringify({ backend: "echo", json: { prompt: "hello", n: 1 } }));
  const out: Record<string, unknown> = {};
  for (const rt of runtimes) {
    const targets = new Map<string, Target>();
    const unavailable = new Map<string, string>();
    try {
      // The smoke run (the test suite's) only checks that the suite runs: three targets.
      const chosen = ctx.mode === "smoke" ? specs.filter((s) => ["b", "c", "cj"].includes(s.key)) : specs;
      for (const s of chosen) {
        try {
          targets.set(s.key, await startTarget(s.key, s.file, s.args, [], rt.execPath));
        } catch (e) {
          if (!(e instanceof TargetUnavailable)) throw e;
          unavailable.set(s.key, e.message);
        }
      }
      const live = specs.filter((s) => targets.has(s.key));
      const once = async (s: Spec, secs: number): Promise<Run> => {
        const t = targets.get(s.key)!;
        const before = await t.cpuMs();
        const r = await runH2load({
          port: t.port,
          path: SUBMIT,
          body: s.load === "grpc" ? grpcBody : jsonBody,
          seconds: secs,
          connections,
          streams,
          headers: s.load === "grpc" ? undefined : ["content-type: application/json", "connect-protocol-version: 1"],
        });
        const cpu = (await t.cpuMs()) - before;
        // h2load's warm-up second is not in its count: the CPU figure is per call over the measured window only roughly.
        return { rps: r.rps, cpuUs: (cpu * 1000) / Math.max(1, r.rps * (secs + 1)), failed: r.failed };
      };
      for (const s of live) await once(s, 1); // warm-up: JIT, connections
      const results = new Map<string, Run[]>(live.map((s) => [s.key, []]));
      for (let r = 0; r < n; r++) {
        for (let k = 0; k < live.length; k++) {
          const s = live[(k + r) % live.length]!;
          const res = await once(s, seconds);
          results.get(s.key)!.push(res);
          ctx.log(`edge ${rt.name} round ${r + 1}/${n} ${s.key}: ${fmt(res.rps)} calls/s, ${fmt(res.cpuUs)} µs CPU/call`);
        }
      }
      const roundRatio = (x: string, y: string) => {
        const xs = results.get(x);
        const ys = results.get(y);
        if (!xs || !ys) return undefined;
        return median(xs.map((res, i) => ratio(res.rps, ys[i]!.rps)!));
      };
      const summary = specs.map((s) => {
        const rs = results.get(s.key);
        if (!rs) return { key: s.key, label: s.label, unavailable: unavailable.get(s.key) ?? "not started" };
        return { key: s.key, label: s.label, rps: median(rs.map((x) => x.rps)), cpuUs: median(rs.map((x) => x.cpuUs)), failed: rs.reduce((a, x) => a + x.failed, 0), rounds: rs };
      });
      const ratios = {
        "c/b": roundRatio("c", "b"),
        "c/a": roundRatio("c", "a"),
        "c/p": roundRatio("c", "p"),
        "t/c": roundRatio("t", "c"),
        "u/p": roundRatio("u", "p"),
        "cj/pj": roundRatio("cj", "pj"),
      };
      ctx.log(`\nEdge, ${rt.name}: h2load, ${connections} connections × ${streams} streams, unary Submit (32-byte binary payload; JSON rows: Connect protocol), ${n} interleaved rounds of ${seconds} s (medians)`);
      ctx.log(table(
        ["target", "calls/s", "server CPU µs/call", "failed"],
        summary.map((s) => ("rps" in s ? [s.label, fmt(s.rps), fmt(s.cpuUs), fmt(s.failed)] : [s.label, `n/a (${s.unavailable})`, "", ""])),
      ));
      ctx.log(table(
        ["ratio (median of per-round ratios)", "value", "target"],
        [
          ["dispatcher / bare grpc-js", fmt(ratios["c/b"], 2), "≥ 0.6 (Node 20), ≥ 0.9 (Node 24)"],
          ["dispatcher / bare connect-node", fmt(ratios["c/a"], 2), ""],
          ["dispatcher / dispatcher before the edge", fmt(ratios["c/p"], 2), ""],
          ["traced / untraced", fmt(ratios["t/c"], 2), "≥ 0.85"],
          ["connect handler on raw streams / compat", fmt(ratios["u/p"], 2), ""],
          ["Connect JSON: edge / compat", fmt(ratios["cj/pj"], 2), "≥ 1.0 (no slower)"],
        ],
      ));
      out[rt.name] = { targets: summary, ratios };
    } finally {
      await Promise.all([...targets.values()].map((t) => t.stop()));
    }
  }
  const data = { connections, streams, secondsPerRound: seconds, rounds: n, runtimes: out };
  ctx.log(`wrote ${writeResult(ctx, "edge", data)}`);
  return data;
}
