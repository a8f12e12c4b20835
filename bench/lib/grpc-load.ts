import * as http2 from "node:http2";
import hdr from "hdr-histogram-js";

/**
 * A unary gRPC load generator on raw node:http2: length-prefixed frames,
 * `grpc-status` read from trailers (or a trailers-only response), so a
 * failed call counts as an error, never as throughput. Closed loop (a fixed
 * number of calls in flight) or open loop (a fixed rate); bounded by
 * duration and by call count, it stops by itself.
 */
export interface LoadOptions {
  port: number;
  path: string;
  /** Request bodies, gRPC-framed; call i sends bodies[i % length]. */
  bodies: readonly Buffer[];
  durationMs: number;
  /** Calls in flight (closed loop). */
  concurrency: number;
  /** Calls per second (open loop) instead of a fixed number in flight; still at most `concurrency` in flight. */
  rate?: number;
  /** Stop after this many calls. Default: no limit beyond the duration. */
  maxCalls?: number;
  /** HTTP/2 connections the calls are spread over. Default 2. */
  connections?: number;
}

export interface LoadResult {
  calls: number;
  ok: number;
  errors: number;
  /** First non-OK grpc-status seen, with its message. */
  firstError: string | undefined;
  seconds: number;
  /** Successful calls per second. */
  rps: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

/** A gRPC envelope; `flags` 1 says the message is compressed. */
export function grpcFrame(message: Uint8Array, flags = 0): Buffer {
  const b = Buffer.allocUnsafe(5 + message.length);
  b[0] = flags;
  b.writeUInt32BE(message.length, 1);
  b.set(message, 5);
  return b;
}

export function connect(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.once("error", reject);
    s.once("connect", () => {
      s.off("error", reject);
      s.on("error", () => {});
      resolve(s);
    });
  });
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const sessions = await Promise.all(Array.from({ length: o.connections ?? 2 }, () => connect(o.port)));
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const maxCalls = o.maxCalls ?? Infinity;
  let issued = 0;
  let inflight = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + o.durationMs;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  let stopped = false;

  const headers = { ":method": "POST", ":path": o.path, "content-type": "application/grpc", te: "trailers" };

  const issue = (): void => {
    const i = issued++;
    inflight++;
    const t0 = performance.now();
    const req = sessions[i % sessions.length]!.request(headers);
    let status: string | undefined;
    let message: string | undefined;
    req.on("response", (h) => {
      if (h["grpc-status"] !== undefined) {
        status = String(h["grpc-status"]);
        message = h["grpc-message"] as string | undefined;
      } else if (h[":status"] !== 200) {
        status = `http ${h[":status"]}`;
      }
    });
    req.on("trailers", (t) => {
      status = String(t["grpc-status"]);
      message = t["grpc-message"] as string | undefined;
    });
    req.on("data", () => {});
    req.on("error", (e) => {
      status ??= `stream error ${e.message}`;
    });
    req.on("close", () => {
      inflight--;
      if (status === "0") {
        ok++;
        histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
      } else {
        errors++;
        firstError ??= `${status ?? "no grpc-status"}${message ? `: ${decodeURIComponent(message)}` : ""}`;
      }
      if (o.rate === undefined) next();
      else if (stopped && inflight === 0) finish();
    });
    req.end(o.bodies[i % o.bodies.length]);
  };

  const next = (): void => {
    if (!stopped && (performance.now() >= deadline || issued >= maxCalls)) stopped = true;
    if (!stopped) issue();
    else if (inflight === 0) finish();
  };

  let pacer: ReturnType<typeof setInterval> | undefined;
  if (o.rate === undefined) {
    for (let k = 0; k < o.concurrency; k++) next();
  } else {
    // Open loop: every 5 ms, issue what the rate owes since the start (bounded by `concurrency` in flight).
    const rate = o.rate;
    pacer = setInterval(() => {
      const now = performance.now();
      if (now >= deadline || issued >= maxCalls) {
        stopped = true;
        clearInterval(pacer);
        if (inflight === 0) finish();
        return;
      }
      const owed = Math.min(maxCalls, Math.floor(((now - started) / 1000) * rate));
      while (issued < owed && inflight < o.concurrency) issue();
    }, 5);
  }
  await done;
  const seconds = (performance.now() - started) / 1000;
  for (const s of sessions) s.close();
  const result: LoadResult = {
    calls: ok + errors,
    ok,
    errors,
    firstError,
    seconds,
    rps: ok / seconds,
    p50Us: histogram.getValueAtPercentile(50),
    p99Us: histogram.getValueAtPercentile(99),
    p999Us: histogram.getValueAtPercentile(99.9),
  };
  histogram.destroy();
  return result;
}
