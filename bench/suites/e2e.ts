import { create, toBinary } from "@bufbuild/protobuf";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startTarget, TargetUnavailable, type Target } from "../lib/child.js";
import { grpcFrame, runLoad, type LoadResult } from "../lib/grpc-load.js";
import { h2loadAvailable, runH2load, type H2loadResult } from "../lib/h2load.js";
import { PIN_PREFIX } from "../lib/pins.js";
import { fmt, median, ratio, rounds, table, writeResult, type BenchContext } from "../lib/report.js";
import { mulberry32 } from "../lib/random.js";

const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";
const CONCURRENCY = 64;
const PAYLOAD = new Uint8Array(32).fill(7);

interface Spec {
  key: string;
  label: string;
  file: string;
  args: string[];
  /** Hit random live pins instead of sending no session. */
  sessions?: number;
}

/**
 * End to end, unary over h2c on loopback: bare connect-node (a), bare grpc-js
 * (b), the dispatcher (c), the dispatcher traced (d), and the dispatcher
 * holding N live pins with every call hitting one of them (e). Every target
 * is its own process; rounds are interleaved and their order rotates, so
 * drift on a shared machine falls on every target alike.
 */
export async function e2eSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const pins = ctx.mode === "full" ? 1_000_000 : ctx.mode === "quick" ? 100_000 : 1_000;
  const seconds = ctx.mode === "full" ? 4 : ctx.mode === "quick" ? 0.6 : 0.3;
  const n = rounds(ctx, 5);
  const specs: Spec[] = [
    { key: "a", label: "(a) bare connect-node", file: "connect-bare", args: [] },
    { key: "b", label: "(b) bare grpc-js", file: "grpcjs-bare", args: [] },
    { key: "c", label: "(c) dispatcher, echo", file: "dispatcher", args: [] },
    { key: "d", label: "(d) dispatcher, traced", file: "dispatcher", args: ["--traced"] },
    { key: "e", label: `(e) dispatcher, ${fmt(pins)} live pins, every call hits one`, file: "dispatcher", args: ["--pins", String(pins)], sessions: pins },
  ];
  const plain = [grpcFrame(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: PAYLOAD } })))];
  const rand = mulberry32(42);
  const pinned = Array.from({ length: 8192 }, () =>
    grpcFrame(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, {
      backend: "echo",
      sessionId: `${PIN_PREFIX}${Math.floor(rand() * pins)}`,
      payload: { case: "binary", value: PAYLOAD },
    }))),
  );

  const targets = new Map<string, Target>();
  const unavailable = new Map<string, string>();
  try {
    ctx.log(`e2e: starting ${specs.length} targets (the pinned one creates ${fmt(pins)} pins first)`);
    const started = await Promise.allSettled(specs.map((s) => startTarget(s.key, s.file, s.args, ["--max-old-space-size=4096"])));
    started.forEach((r, i) => {
      const s = specs[i]!;
      if (r.status === "fulfilled") targets.set(s.key, r.value);
      else if (r.reason instanceof TargetUnavailable) unavailable.set(s.key, r.reason.message);
      else throw r.reason;
    });
    const live = specs.filter((s) => targets.has(s.key));
    const load = (s: Spec, durationMs: number) =>
      runLoad({ port: targets.get(s.key)!.port, path: SUBMIT, bodies: s.sessions ? pinned : plain, durationMs, concurrency: CONCURRENCY });

    for (const s of live) await load(s, Math.min(1000, seconds * 1000)); // warm-up: JIT, connections
    const results = new Map<string, LoadResult[]>(live.map((s) => [s.key, []]));
    for (let r = 0; r < n; r++) {
      // Rotate the order every round: A B C …, B C … A, …
      for (let k = 0; k < live.length; k++) {
        const s = live[(k + r) % live.length]!;
        const res = await load(s, seconds * 1000);
        results.get(s.key)!.push(res);
        ctx.log(`e2e round ${r + 1}/${n} ${s.key}: ${fmt(res.rps)} calls/s, p99 ${fmt(res.p99Us)} µs, errors ${res.errors}`);
      }
    }

    let h2load: Record<string, H2loadResult | string> | undefined;
    if (await h2loadAvailable()) {
      h2load = {};
      for (const key of ["a", "b", "c"]) {
        if (!targets.has(key)) continue;
        try {
          h2load[key] = await runH2load({ port: targets.get(key)!.port, path: SUBMIT, body: plain[0]!, seconds: Math.max(1, Math.round(seconds)), connections: 2, streams: CONCURRENCY / 2 });
        } catch (e) {
          h2load[key] = `failed: ${(e as Error).message.split("\n")[0]}`;
        }
      }
    }

    // Per-round ratios (same round, adjacent in time), then their median.
    const roundRatio = (x: string, y: string) => {
      const xs = results.get(x);
      const ys = results.get(y);
      if (!xs || !ys) return undefined;
      return median(xs.map((res, i) => ratio(res.rps, ys[i]!.rps)!));
    };
    const summary = specs.map((s) => {
      const rs = results.get(s.key);
      if (!rs) return { key: s.key, label: s.label, unavailable: unavailable.get(s.key) ?? "not started" };
      return {
        key: s.key,
        label: s.label,
        rps: median(rs.map((x) => x.rps)),
        p50Us: median(rs.map((x) => x.p50Us)),
        p99Us: median(rs.map((x) => x.p99Us)),
        p999Us: median(rs.map((x) => x.p999Us)),
        calls: rs.reduce((a, x) => a + x.calls, 0),
        errors: rs.reduce((a, x) => a + x.errors, 0),
        firstError: rs.find((x) => x.firstError)?.firstError,
        info: targets.get(s.key)!.info,
        rounds: rs,
      };
    });
    const ratios = {
      "c/a": roundRatio("c", "a"),
      "c/b": roundRatio("c", "b"),
      "d/c": roundRatio("d", "c"),
      "e/c": roundRatio("e", "c"),
    };

    const rows = summary.map((s) =>
      "rps" in s
        ? [s.label, fmt(s.rps), fmt(s.p50Us), fmt(s.p99Us), fmt(s.p999Us), fmt(s.errors), h2load?.[s.key] === undefined ? "" : typeof h2load[s.key] === "string" ? "failed" : fmt((h2load[s.key] as H2loadResult).rps)]
        : [s.label, `n/a (${s.unavailable})`, "", "", "", "", ""],
    );
    ctx.log(`\nEnd to end: unary Submit over h2c, ${CONCURRENCY} calls in flight on 2 connections, 32-byte binary payload, ${n} interleaved rounds of ${seconds} s (medians)`);
    ctx.log(table(["target", "calls/s", "p50 µs", "p99 µs", "p99.9 µs", "errors", "h2load calls/s"], rows));
    ctx.log(table(
      ["ratio (median of per-round ratios)", "value", "target"],
      [
        ["c/a dispatcher vs bare connect-node", fmt(ratios["c/a"], 3), "≥ 0.90"],
        ["c/b dispatcher vs bare grpc-js", fmt(ratios["c/b"], 3), ""],
        ["d/c traced vs untraced", ratios["d/c"] === undefined ? `n/a (${unavailable.get("d") ?? "not run"})` : fmt(ratios["d/c"], 3), "≥ 0.90"],
        [`e/c ${fmt(pins)} live pins vs none`, fmt(ratios["e/c"], 3), "≥ 0.95"],
      ],
    ));
    const data = { concurrency: CONCURRENCY, connections: 2, secondsPerRound: seconds, rounds: n, pins, targets: summary, ratios, h2load: h2load ?? "not installed" };
    ctx.log(`wrote ${writeResult(ctx, "e2e", data)}`);
    return data;
  } finally {
    await Promise.all([...targets.values()].map((t) => t.stop()));
  }
}
