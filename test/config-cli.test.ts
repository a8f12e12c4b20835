import { execFile } from "node:child_process";
import { once } from "node:events";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startChild } from "./helpers/child.js";

/**
 * The command line of the built service, run as a real process: the sources
 * compiled as `npm run build` does, into a scratch directory beside a copy of
 * package.json and the repository's node_modules.
 */
const repo = join(import.meta.dirname, "..");
const run = promisify(execFile);
let dir: string;
let main: string;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  const base = { ...process.env };
  for (const k of ["LOG_LEVEL", "PORT", "HOST", "SHUTDOWN_GRACE", "REFLECTION", "PROMETHEUS_PORT", "TLS_CERT_FILE", "TLS_KEY_FILE", "AUTH_TOKENS_FILE"]) delete base[k];
  return run(process.execPath, [main, ...args], { cwd: dir, env: { ...base, ...env }, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

function file(name: string, text: string): string {
  writeFileSync(join(dir, name), text);
  return name;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dispatcher-cli-"));
  await run(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", join(repo, "tsconfig.build.json"), "--outDir", join(dir, "dist")], { cwd: repo });
  copyFileSync(join(repo, "package.json"), join(dir, "package.json"));
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"), "dir");
  main = join(dir, "dist/src/main.js");
  // 596 h is the longest whole number of hours a Node.js timer can wait.
  file("good.yaml", "log: { level: warn }\nbackends:\n  - { name: a, kind: echo, workers: 2 }\n  - { name: b, kind: echo, timeout: 596h }\n");
  file("bad.yaml", "backends:\n  - name: a\n    kind: echo\n    workers: 0\n    timeout: 600h\n    max_concurency: 4\n");
  file("kinds.yaml", "backends:\n  - { name: a, kind: echo, options: { delay: 5 } }\n  - { name: b, kind: nope }\n");
}, 240_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const badLines = [
  "  backends[0].workers: expected an integer 1-1024 (got 0)",
  `  backends[0].timeout: expected at most 24.8 days (2147483647 ms, the longest a Node.js timer can wait) (got "600h")`,
  "  backends[0].max_concurency: unknown key; known: name, kind, workers, endpoints, max_concurrency, queue_capacity, timeout, policy, affinity, retry, outlier, idempotent, expose_upstream_errors, ttft_timeout, stall_timeout, limits, scheduling, options (got 4)",
];

describe("dispatcher command line", { timeout: 90_000 }, () => {
  it("--version prints the package's version", async () => {
    const version = (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string }).version;
    expect(await cli(["--version"])).toEqual({ code: 0, stdout: `${version}\n`, stderr: "" });
  });

  it("--check-config FILE prints config OK with the backends and exits 0 without listening", async () => {
    expect(await cli(["--check-config", "good.yaml"])).toEqual({ code: 0, stdout: "config OK: 2 backends (a, b)\n", stderr: "" });
    expect(await cli(["--check-config", "--config", "good.yaml"])).toEqual({ code: 0, stdout: "config OK: 2 backends (a, b)\n", stderr: "" });
  });

  it("--check-config prints every error as plain text on stderr and exits 2", async () => {
    const r = await cli(["--check-config", "--config", "bad.yaml"]);
    expect(r).toEqual({ code: 2, stdout: "", stderr: ["invalid config (bad.yaml), 3 errors:", ...badLines, ""].join("\n") });
  });

  it("--check-config builds each backend's kind: bad kind options and unknown kinds exit 2", async () => {
    const r = await cli(["--check-config", "kinds.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")).toEqual([
      "invalid config (kinds.yaml), 2 errors:",
      `  backends[0].options.delay: unknown option for kind "echo"; known: delay_ms, stream_chunks, chunk_delay_ms`,
      expect.stringMatching(/^ {2}backends\[1\]\.kind: unknown "nope"; known: echo, /),
      "",
    ]);
  });

  it("exits 2 with plain-text errors when started with a bad config or LOG_LEVEL, before logging anything", async () => {
    const bad = await cli(["--config", "bad.yaml", "--port", "0"]);
    expect(bad).toEqual({ code: 2, stdout: "", stderr: ["invalid config (bad.yaml), 3 errors:", ...badLines, ""].join("\n") });
    const level = await cli(["--port", "0"], { LOG_LEVEL: "verbose" });
    expect(level).toEqual({
      code: 2,
      stdout: "",
      stderr: `invalid config (the built-in config), 1 error:\n  LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent (got "verbose")\n`,
    });
  });

  it("exits 2 with the usage on bad arguments", async () => {
    const r = await cli(["good.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^unexpected argument "good\.yaml"\nusage: dispatcher/);
  });

  it("exits 1 with one log line naming the cause when the port is taken", async () => {
    const taken: Server = createServer();
    const port = await new Promise<number>((resolve) => taken.listen(0, "127.0.0.1", () => resolve((taken.address() as { port: number }).port)));
    try {
      const r = await cli(["--port", String(port)]);
      expect(r.code).toBe(1);
      const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { level: number; msg: string; stack?: string; err?: unknown });
      expect(lines.map((l) => l.msg)).toEqual(["config loaded from the built-in config", `cannot start: listen EADDRINUSE: address already in use 127.0.0.1:${port}`]);
      expect(lines[1]).not.toHaveProperty("err");
    } finally {
      taken.close();
    }
  });

  it("logs the config it loaded and each drain step on SIGTERM", async () => {
    const child = await startChild([process.execPath, main, "--config", "good.yaml", "--port", "0"], { cwd: dir, env: { LOG_LEVEL: "info" } });
    // "close" comes once the process has exited and its output has been read to the end.
    const closed = once(child.proc, "close");
    child.proc.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    await closed;
    const msgs = child.logs.flatMap((l) => {
      try {
        return [(JSON.parse(l) as { msg: string }).msg];
      } catch {
        return [];
      }
    });
    expect(msgs[0], child.logs.join("\n")).toBe("config loaded from good.yaml");
    expect(msgs.slice(-4)).toEqual([
      "draining: new calls get UNAVAILABLE", "dispatcher drained: every job has settled", "server closed", "telemetry flushed; stopped",
    ]);
  });
});
