import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { haproxyConfig } from "./haproxy-config.js";

/**
 * Redis, N dispatcher replicas (the built service, dist/src/main.js, one
 * process each) and HAProxy in front of them, on loopback: what
 * examples/cluster/run.sh starts, on free ports.
 */
export interface Cluster {
  /** HAProxy's port. */
  proxyPort: number;
  /** Each replica's own port. */
  replicaPorts: number[];
  /** Process ids of the replicas and HAProxy, for CPU figures. */
  pids: { replicas: number[]; haproxy: number };
  stop(): Promise<void>;
}

/** What is missing to run a cluster here, or undefined. */
export function clusterMissing(): string | undefined {
  for (const [tool, arg, pkg] of [["redis-server", "--version", "redis-server"], ["haproxy", "-v", "haproxy"]] as const) {
    const r = spawnSync(tool, [arg], { stdio: "ignore" });
    if (r.error !== undefined || r.status !== 0) return `${tool} not installed (apt-get install ${pkg})`;
  }
  return undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function untilAccepts(port: number, proc: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within 15 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function startReplica(main: string, configFile: string, env: NodeJS.ProcessEnv): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, [main, "--config", configFile], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on("line", (line) => {
      try {
        const e = JSON.parse(line) as { msg?: string; port?: number };
        if (e.msg?.startsWith("dispatcher listening") && typeof e.port === "number") resolve({ proc, port: e.port });
      } catch {
        // not a log line
      }
    });
    proc.once("exit", (code) => reject(new Error(`replica exited with ${code} before listening`)));
  });
}

/** `backends`: the config's backends list, the same on every replica. */
export async function startCluster(replicas: number, backends: unknown[], hashBalanceFactor?: number): Promise<Cluster> {
  const missing = clusterMissing();
  if (missing !== undefined) throw new Error(missing);
  const dir = mkdtempSync(join(tmpdir(), "bench-cluster-"));
  const procs: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(
      procs.reverse().map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            p.once("exit", () => resolve());
            p.kill("SIGTERM");
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const redisPort = await freePort();
    const redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    procs.push(redis);
    await untilAccepts(redisPort, redis, "redis-server");
    const main = fileURLToPath(new URL("../../src/main.js", import.meta.url));
    const replicaPorts: number[] = [];
    const replicaPids: number[] = [];
    for (let i = 0; i < replicas; i++) {
      const file = join(dir, `r${i}.json`);
      writeFileSync(file, JSON.stringify({ log: { level: "warn" }, dashboard: false, server: { port: 0 }, cluster: { replica_id: `r${i}` }, backends }));
      // "warn" hides the listening line; LOG_LEVEL=info shows it (the only info line at start).
      const r = await startReplica(main, file, { REDIS_URL: `redis://127.0.0.1:${redisPort}`, LOG_LEVEL: "info" });
      procs.push(r.proc);
      replicaPorts.push(r.port);
      replicaPids.push(r.proc.pid!);
    }
    const proxyPort = await freePort();
    const cfg = join(dir, "haproxy.cfg");
    writeFileSync(cfg, haproxyConfig(proxyPort, { servers: replicaPorts, hashBalanceFactor }));
    const haproxy = spawn("haproxy", ["-db", "-f", cfg], { stdio: "ignore" });
    procs.push(haproxy);
    await untilAccepts(proxyPort, haproxy, "haproxy");
    // Health checks (rise 2, every 200 ms) let the replicas in.
    await new Promise((r) => setTimeout(r, 1_000));
    return { proxyPort, replicaPorts, pids: { replicas: replicaPids, haproxy: haproxy.pid! }, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
