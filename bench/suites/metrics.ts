import type * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { SubmitRequestSchema, WorkerMetricsRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startTarget, type Target } from "../lib/child.js";
import { connect, grpcFrame, runLoad } from "../lib/grpc-load.js";
import { fmt, median, rounds, sleep, table, writeResult, type BenchContext } from "../lib/report.js";

const INTERVAL_MS = 100;
const STREAMS_PER_CONNECTION = 100;
const SUBMIT_RATE = 200;

interface Subscriber {
  opened: number;
  first: number | undefined;
  messages: number;
  /** Server time (ms since the epoch) of each message, from its `time` field. */
  times: number[];
  stream: http2.ClientHttp2Stream;
  ended: string | undefined;
}

/**
 * WorkerMetrics fan-out: the server's CPU per second with 0, 100 and 1,000
 * subscribers at a 100 ms interval while Submit runs at a fixed rate (open
 * loop, so the Submit share of the CPU is the same in every configuration).
 * The CPU figure is the server process's own (process.cpuUsage() over IPC):
 * the subscribers' client cost stays out of it.
 */
export async function metricsSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const windowMs = ctx.mode === "full" ? 5_000 : ctx.mode === "quick" ? 1_000 : 400;
  const n = rounds(ctx, 3);
  const counts = ctx.mode === "smoke" ? [0, 10, 100] : [0, 100, 1_000];
  const target = await startTarget("dispatcher", "dispatcher");
  const submit = [grpcFrame(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: new Uint8Array(32) } })))];
  const subscribe = grpcFrame(toBinary(WorkerMetricsRequestSchema, create(WorkerMetricsRequestSchema, { interval: { seconds: 0n, nanos: INTERVAL_MS * 1e6 } })));
  try {
    const results = new Map<number, { cpuPercent: number; delivered: number; expected: number; missed: number; ended: number; submitRps: number }[]>(counts.map((c) => [c, []]));
    await runLoad({ port: target.port, path: "/dispatcher.v1.DispatcherService/Submit", bodies: submit, durationMs: 500, concurrency: 64, rate: SUBMIT_RATE }); // warm-up
    for (let r = 0; r < n; r++) {
      for (let k = 0; k < counts.length; k++) {
        const count = counts[(k + r) % counts.length]!;
        const res = await measure(target, count, windowMs, submit, subscribe);
        results.get(count)!.push(res);
        ctx.log(`metrics round ${r + 1}/${n} ${count} subscribers: server CPU ${fmt(res.cpuPercent, 1)} % of a core, ${res.delivered}/${res.expected} messages, ${res.missed} missed a tick`);
      }
    }
    const rows = counts.map((c) => {
      const rs = results.get(c)!;
      const base = results.get(0)!;
      return {
        subscribers: c,
        cpuPercent: median(rs.map((x) => x.cpuPercent)),
        addedCpuPercent: median(rs.map((x, i) => x.cpuPercent - base[i]!.cpuPercent)),
        delivered: rs.reduce((a, x) => a + x.delivered, 0),
        expected: rs.reduce((a, x) => a + x.expected, 0),
        subscribersThatMissed: rs.reduce((a, x) => a + x.missed, 0),
        streamsEndedEarly: rs.reduce((a, x) => a + x.ended, 0),
        submitRps: median(rs.map((x) => x.submitRps)),
        rounds: rs,
      };
    });
    ctx.log(`\nMetrics fan-out: WorkerMetrics at ${INTERVAL_MS} ms, Submit at ${SUBMIT_RATE}/s, ${n} interleaved rounds of ${windowMs / 1000} s (medians; CPU is the server process's)`);
    ctx.log(table(
      ["subscribers", "server CPU, % of a core", "added by subscribers", "messages delivered / expected", "subscribers that missed a tick", "Submit calls/s"],
      rows.map((x) => [fmt(x.subscribers), fmt(x.cpuPercent, 1), x.subscribers === 0 ? "" : fmt(x.addedCpuPercent, 1), x.subscribers === 0 ? "" : `${fmt(x.delivered)} / ${fmt(x.expected)}`, x.subscribers === 0 ? "" : fmt(x.subscribersThatMissed), fmt(x.submitRps)]),
    ));
    const data = { intervalMs: INTERVAL_MS, submitRate: SUBMIT_RATE, windowMs, rounds: n, results: rows };
    ctx.log(`wrote ${writeResult(ctx, "metrics", data)}`);
    return data;
  } finally {
    await target.stop();
  }
}

async function measure(target: Target, count: number, windowMs: number, submit: Buffer[], subscribe: Buffer) {
  const sessions = await Promise.all(Array.from({ length: Math.ceil(count / STREAMS_PER_CONNECTION) }, () => connect(target.port)));
  const subs: Subscriber[] = [];
  for (let i = 0; i < count; i++) subs.push(open(sessions[Math.floor(i / STREAMS_PER_CONNECTION)]!, subscribe));
  // Every stream open (first message in) before the window starts.
  const openBy = performance.now() + 10_000;
  while (subs.some((s) => s.first === undefined && s.ended === undefined) && performance.now() < openBy) await sleep(10);
  const from = performance.now();
  const fromServer = Date.now();
  const cpu0 = await target.cpuMs();
  const load = await runLoad({ port: target.port, path: "/dispatcher.v1.DispatcherService/Submit", bodies: submit, durationMs: windowMs, concurrency: 64, rate: SUBMIT_RATE });
  const cpu1 = await target.cpuMs();
  const wall = performance.now() - from;
  const toServer = Date.now();
  // Messages are counted by the server time they carry, not by when this (busy, same-machine) client read them:
  // a message sent in the window but read after it still counts, a backlog from before the window does not.
  // Two intervals' grace for the last ones to arrive.
  await sleep(2 * INTERVAL_MS);
  const expectedEach = Math.floor((toServer - fromServer) / INTERVAL_MS);
  let delivered = 0;
  let missed = 0;
  for (const s of subs) {
    let n = 0;
    for (const t of s.times) if (t >= fromServer && t < toServer) n++;
    delivered += n;
    // One tick of tolerance: the shared timer's phase differs from the window's.
    if (n < expectedEach - 1) missed++;
  }
  const ended = subs.filter((s) => s.ended !== undefined).length;
  for (const s of subs) s.stream.close();
  for (const s of sessions) s.close();
  await sleep(50);
  return { cpuPercent: ((cpu1 - cpu0) / wall) * 100, delivered, expected: expectedEach * count, missed, ended, submitRps: load.rps };
}

function open(session: http2.ClientHttp2Session, body: Buffer): Subscriber {
  const stream = session.request({ ":method": "POST", ":path": "/dispatcher.v1.DispatcherService/WorkerMetrics", "content-type": "application/grpc", te: "trailers" });
  const sub: Subscriber = { opened: performance.now(), first: undefined, messages: 0, times: [], stream, ended: undefined };
  let pending: Buffer = Buffer.alloc(0);
  stream.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const len = pending.readUInt32BE(1);
      if (pending.length < 5 + len) break;
      sub.times.push(serverTimeMs(pending.subarray(5, 5 + len)));
      pending = pending.subarray(5 + len);
      sub.messages++;
      sub.first ??= performance.now();
    }
  });
  stream.on("trailers", (t) => {
    sub.ended ??= `grpc-status ${String(t["grpc-status"])}`;
  });
  stream.on("error", (e) => {
    sub.ended ??= e.message;
  });
  stream.end(body);
  return sub;
}

/**
 * `time` of a binary WorkerMetricsResponse in ms, read without decoding the
 * rest (the client shares the machine's two cores with the server): field 1,
 * a Timestamp of field 1 (seconds) and field 2 (nanos).
 */
function serverTimeMs(msg: Buffer): number {
  let i = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 1; ; shift *= 128) {
      const b = msg[i++]!;
      v += (b & 0x7f) * shift;
      if (b < 0x80) return v;
    }
  };
  if (msg[i++] !== 0x0a) return NaN;
  const end = varint() + i;
  let seconds = 0;
  let nanos = 0;
  while (i < end) {
    const tag = msg[i++];
    if (tag === 0x08) seconds = varint();
    else if (tag === 0x10) nanos = varint();
    else return NaN;
  }
  return seconds * 1000 + nanos / 1e6;
}
