import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { haproxyConfig, type HaproxyOptions } from "../../bench/lib/haproxy-config.js";
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
