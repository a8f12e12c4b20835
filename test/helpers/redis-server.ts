import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { connect } from "node:net";

/**
 * A real redis-server (Debian package `redis-server`) on a free loopback
 * port, started and stopped by a test. Nothing is persisted: no RDB, no AOF.
 */
export interface RedisProcess {
  url: string;
  port: number;
  /** Stops it (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (after stop()), empty. */
  restart(): Promise<void>;
}

/** Why Redis tests cannot run here, or undefined when redis-server is installed. */
export function redisMissing(): string | undefined {
  const r = spawnSync("redis-server", ["--version"], { stdio: "ignore" });
  return r.error === undefined && r.status === 0 ? undefined : "redis-server not found: install it with `apt-get install redis-server` (Redis 7)";
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startRedis(): Promise<RedisProcess> {
  const missing = redisMissing();
  if (missing !== undefined) throw new Error(missing);
  const port = await freePort();
  let proc: ChildProcess | undefined = await launch(port);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      const p = proc;
      proc = undefined;
      if (p === undefined || p.exitCode !== null) return;
      const exited = new Promise((resolve) => p.once("exit", resolve));
      p.kill("SIGTERM");
      await exited;
    },
    async restart() {
      if (proc !== undefined) throw new Error("redis-server is running");
      proc = await launch(port);
    },
  };
}

async function launch(port: number): Promise<ChildProcess> {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"];
  const proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}: ${out}`);
    if (await answersPing(port)) return proc;
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`redis-server did not answer on port ${port} within 10 s: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.setTimeout(500);
    s.once("connect", () => s.write("PING\r\n"));
    s.once("data", (d) => {
      s.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}
