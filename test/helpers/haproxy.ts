import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./redis-server.js";

/**
 * A real HAProxy (Debian package `haproxy`, 2.6) on a free loopback port in
 * front of dispatcher replicas, from a generated config: h2c in, h2c to each
 * replica, the session header hashed consistently with bounded load
 * (examples/cluster/haproxy.cfg is the same config with fixed ports).
 */
export interface HaproxyProcess {
  port: number;
  /** The generated config, for a failure message. */
  config: string;
  stop(): Promise<void>;
}

/** Why HAProxy tests cannot run here, or undefined when haproxy is installed. */
export function haproxyMissing(): string | undefined {
  const r = spawnSync("haproxy", ["-v"], { stdio: "ignore" });
  return r.error === undefined && r.status === 0 ? undefined : "haproxy not found: install it with `apt-get install haproxy` (2.6 or later)";
}

export interface HaproxyOptions {
  /** The replicas' gRPC ports, named r0, r1, … in order. */
  servers: readonly number[];
  /** hash-balance-factor: a replica takes at most this % of the mean load before its sessions spill. Default 150. */
  hashBalanceFactor?: number;
}

export function haproxyConfig(port: number, o: HaproxyOptions): string {
  const servers = o.servers.map((p, i) => `  server r${i} 127.0.0.1:${p} weight 100 proto h2 check check-proto h1 inter 200ms fall 1 rise 2`);
  return [
    "global",
    "  maxconn 4096",
    "defaults",
    "  mode http",
    "  timeout connect 1s",
    "  timeout client 60s",
    "  timeout server 60s",
    // A call that found its replica dead (connection refused) is sent to another one.
    "  retries 2",
    "  option redispatch 1",
    "frontend grpc",
    `  bind 127.0.0.1:${port} proto h2`,
    "  default_backend replicas",
    "backend replicas",
    "  balance hdr(dispatcher-session)",
    "  hash-type consistent",
    ...(o.hashBalanceFactor === 0 ? [] : [`  hash-balance-factor ${o.hashBalanceFactor ?? 150}`]),
    // The gRPC health service, asked in the Connect protocol (JSON over HTTP/1.1, which the service also serves):
    // NOT_SERVING (a draining replica) takes it out. HAProxy 2.6 cannot send a gRPC frame's binary body.
    "  option httpchk",
    "  http-check send meth POST uri /grpc.health.v1.Health/Check ver HTTP/1.1 hdr host localhost hdr content-type application/json body {}",
    `  http-check expect rstring "status\\":\\"SERVING"`,
    ...servers,
    "",
  ].join("\n");
}

export async function startHaproxy(o: HaproxyOptions): Promise<HaproxyProcess> {
  const missing = haproxyMissing();
  if (missing !== undefined) throw new Error(missing);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "dispatcher-haproxy-"));
  const file = join(dir, "haproxy.cfg");
  const config = haproxyConfig(port, o);
  writeFileSync(file, config);
  const check = spawnSync("haproxy", ["-c", "-q", "-f", file], { encoding: "utf8" });
  if (check.status !== 0) throw new Error(`haproxy rejected its config: ${check.stderr}${check.stdout}\n${config}`);
  // -db: foreground, logs to stderr; one process, stopped by a signal.
  const proc: ChildProcess = spawn("haproxy", ["-db", "-f", file], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (proc.exitCode !== null) throw new Error(`haproxy exited with ${proc.exitCode}: ${out}`);
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`haproxy did not listen on ${port} within 10 s: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    port,
    config,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
