import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

export interface Child {
  proc: ChildProcess;
  port: number;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
  /** Log lines (pino JSON) so far. */
  logs: string[];
}

/** Starts the service as a child process and waits for its "dispatcher listening" log line. */
export async function startChild(cmd: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Child> {
  const proc = spawn(cmd[0]!, cmd.slice(1), { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  const logs: string[] = [];
  const exited = new Promise<number | string>((resolve) => proc.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  proc.stderr!.on("data", (d: Buffer) => logs.push(d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on("line", (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { port?: number; msg?: string };
        if (entry.msg?.startsWith("dispatcher listening") && typeof entry.port === "number") resolve(entry.port);
      } catch {
        // not JSON: kept in logs
      }
    });
    void exited.then((code) => reject(new Error(`exited with ${code} before listening:\n${logs.join("\n")}`)));
  });
  return { proc, port, exited, logs };
}
