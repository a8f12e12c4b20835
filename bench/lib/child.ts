import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/** A benchmark target running in its own process, so its CPU and heap are its own. */
export interface Target {
  readonly name: string;
  readonly port: number;
  readonly info: Record<string, unknown>;
  /** CPU time the target process has used so far, in ms (user + system). */
  cpuMs(): Promise<number>;
  stop(): Promise<void>;
}

const targetsDir = new URL("../targets/", import.meta.url);

/**
 * Forks `bench/targets/<file>.js` and waits for its "ready" message. A target
 * that fails to start (e.g. a module not built on this branch) rejects with
 * the reason it reported. With BENCH_CPU_PROF=<dir> set, each target writes
 * a V8 CPU profile there when it stops (for finding where a figure goes).
 */
export function startTarget(name: string, file: string, args: string[] = [], execArgv: string[] = [], execPath?: string): Promise<Target> {
  const profileDir = process.env["BENCH_CPU_PROF"];
  const child = fork(fileURLToPath(new URL(`${file}.js`, targetsDir)), args, {
    execArgv: profileDir ? [...execArgv, "--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`] : execArgv,
    execPath,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`target ${name} exited (${code}) before it was ready`));
    child.once("exit", onExit);
    child.once("message", (m: Msg) => {
      child.off("exit", onExit);
      if (m.type === "failed") {
        child.kill();
        reject(new TargetUnavailable(m.reason));
        return;
      }
      resolve(handle(name, child, m as ReadyMsg));
    });
  });
}

export class TargetUnavailable extends Error {}

type Msg = ReadyMsg | { type: "failed"; reason: string } | { type: "cpu"; ms: number };
interface ReadyMsg {
  type: "ready";
  port: number;
  info?: Record<string, unknown>;
}

function handle(name: string, child: ChildProcess, ready: ReadyMsg): Target {
  return {
    name,
    port: ready.port,
    info: ready.info ?? {},
    cpuMs() {
      return new Promise((resolve) => {
        const on = (m: Msg) => {
          if (m.type !== "cpu") return;
          child.off("message", on);
          resolve(m.ms);
        };
        child.on("message", on);
        child.send({ type: "cpu" });
      });
    },
    stop() {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const force = setTimeout(() => child.kill("SIGKILL"), 5_000);
        child.once("exit", () => {
          clearTimeout(force);
          resolve();
        });
        child.kill("SIGTERM");
      });
    },
  };
}
