import { execFile } from "node:child_process";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface H2loadResult {
  rps: number;
  succeeded: number;
  failed: number;
  meanUs: number | undefined;
  /** With `latencies`: the 50th and 99th percentile of request time, µs (h2load's --log-file). */
  p50Us?: number;
  p99Us?: number;
}

/** h2load (nghttp2-client) if it is on PATH: a second opinion from a load generator not written in Node. */
export function h2loadAvailable(): Promise<boolean> {
  return new Promise((resolve) => execFile("h2load", ["--version"], (err) => resolve(err === null)));
}

/**
 * Timed h2load run. h2load does not read gRPC trailers: "succeeded" means
 * HTTP 200, so its figure is only trusted where our own generator saw no
 * gRPC errors on the same target.
 */
export function runH2load(o: {
  port: number;
  path: string;
  body: Buffer;
  seconds: number;
  connections: number;
  streams: number;
  /** Request headers; default gRPC's (content-type: application/grpc, te: trailers). */
  headers?: string[];
  /** Also read every request's time from h2load's per-request log, for percentiles. */
  latencies?: boolean;
  /** Open loop: requests per second from each connection (h2load --rps), instead of as fast as answers come. */
  rps?: number;
}): Promise<H2loadResult> {
  const dir = mkdtempSync(join(tmpdir(), "bench-h2load-"));
  const file = join(dir, "body");
  writeFileSync(file, o.body);
  const args = [
    "-D", String(o.seconds), "--warm-up-time=1",
    "-c", String(o.connections), "-m", String(o.streams), "-t", "1",
    "-d", file,
    ...(o.latencies ? [`--log-file=${join(dir, "log")}`] : []),
    ...(o.rps !== undefined ? [`--rps=${o.rps}`] : []),
    ...(o.headers ?? ["content-type: application/grpc", "te: trailers"]).flatMap((h) => ["-H", h]),
    `http://127.0.0.1:${o.port}${o.path}`,
  ];
  return new Promise((resolve, reject) => {
    execFile("h2load", args, { timeout: (o.seconds + 30) * 1000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout) => {
      const pct = o.latencies && err === null ? percentiles(join(dir, "log")) : undefined;
      rmSync(dir, { recursive: true, force: true });
      if (err) return reject(err);
      const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout);
      const reqs = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(stdout);
      const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(stdout);
      if (!rps || !reqs) return reject(new Error(`cannot read h2load output:\n${stdout}`));
      resolve({ rps: Number(rps[1]), succeeded: Number(reqs[1]), failed: Number(reqs[2]), meanUs: mean ? toUs(mean[1]!) : undefined, ...pct });
    });
  });
}

/** p50 and p99 of the log's third column (µs until the end of the response), answered requests only. */
function percentiles(file: string): { p50Us: number; p99Us: number } | undefined {
  const times: number[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const cols = line.split("\t");
    if (cols.length >= 3 && cols[1] !== "-1") times.push(Number(cols[2]));
  }
  if (times.length === 0) return undefined;
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
  return { p50Us: at(0.5), p99Us: at(0.99) };
}

function toUs(v: string): number | undefined {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (!m) return undefined;
  return Number(m[1]) * { us: 1, ms: 1_000, s: 1_000_000 }[m[2] as "us" | "ms" | "s"];
}
