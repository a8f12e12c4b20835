import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startChild, type Child } from "./child.js";

const run = promisify(execFile);
const repo = join(import.meta.dirname, "../..");

/**
 * N dispatcher replicas as child processes, as an operator runs them: the
 * service built from this checkout, one generated config file each (its own
 * `cluster.replica_id`, the same backends), REDIS_URL in the environment.
 */
export interface Replicas {
  readonly children: Child[];
  readonly ports: number[];
  /** Sends `signal` to replica `i` and waits for it to exit. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Stops every replica still running (SIGTERM) and removes the build. */
  stop(): Promise<void>;
}

export interface ReplicasOptions {
  count: number;
  /** The `backends:` list as YAML/JSON-able objects, the same on every replica. */
  backends: unknown[];
  /** REDIS_URL of every replica; none: pins stay in each process. */
  redisUrl?: string;
  /** Extra top-level config keys (e.g. `cluster`, `server.limits`), merged into each replica's file. */
  extra?: Record<string, unknown>;
}

/** Compiles the service once (tsc, as `npm run build` does, without the web page) into a temporary directory. */
async function build(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "dispatcher-replicas-"));
  await run(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", join(repo, "tsconfig.build.json"), "--outDir", join(dir, "dist")], { cwd: repo });
  symlinkSync(join(repo, "package.json"), join(dir, "package.json"));
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"), "dir");
  return dir;
}

export async function startReplicas(o: ReplicasOptions): Promise<Replicas> {
  const dir = await build();
  const children: Child[] = [];
  try {
    for (let i = 0; i < o.count; i++) {
      const extra = o.extra ?? {};
      const cluster = { ...(extra["cluster"] as Record<string, unknown> | undefined), replica_id: `r${i}` };
      const server = { ...(extra["server"] as Record<string, unknown> | undefined), port: 0, shutdown_grace: "2s" };
      const config = { log: { level: "info" }, dashboard: false, ...extra, cluster, server, backends: o.backends };
      const file = join(dir, `replica-${i}.json`);
      writeFileSync(file, JSON.stringify(config));
      const env: NodeJS.ProcessEnv = { LOG_LEVEL: "info" };
      if (o.redisUrl !== undefined) env["REDIS_URL"] = o.redisUrl;
      children.push(await startChild([process.execPath, join(dir, "dist/src/main.js"), "--config", file], { cwd: dir, env }));
    }
  } catch (e) {
    for (const c of children) c.proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    children,
    ports: children.map((c) => c.port),
    async kill(i, signal = "SIGTERM") {
      const c = children[i]!;
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill(signal);
      await c.exited;
    },
    async stop() {
      await Promise.all(children.map(async (c) => {
        if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill("SIGTERM");
        await c.exited;
      }));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
