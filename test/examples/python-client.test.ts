import { execFile, execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";

/**
 * Debian's python3-grpcio and python3-grpc-tools belong to the system
 * interpreter: a pyenv or venv `python3` earlier on PATH does not see them,
 * so the test names /usr/bin/python3.
 */
const PYTHON = "/usr/bin/python3";
const CLIENT = join("examples", "python", "client.py");

function missingPython(): string | undefined {
  try {
    execFileSync(PYTHON, ["-c", "import grpc, grpc_tools.protoc"], { stdio: "ignore" });
    return undefined;
  } catch {
    return `${PYTHON} cannot import grpc and grpc_tools: install the Debian packages python3-grpcio and python3-grpc-tools (apt-get install -y python3-grpcio python3-grpc-tools)`;
  }
}

const missing = missingPython();
// In CI a missing package fails the run; on a workstation the test is skipped with the reason.
if (missing !== undefined && process.env["CI"]) throw new Error(missing);

const run = promisify(execFile);

/** Runs the example; returns its exit code and its stdout's JSON lines. */
async function client(args: string[]): Promise<{ code: number; lines: Record<string, unknown>[] }> {
  const r = await run(PYTHON, [CLIENT, ...args], { timeout: 60_000 }).then(
    (ok) => ({ code: 0, stdout: ok.stdout }),
    (e: { code?: number; stdout?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? "" }),
  );
  return { code: r.code, lines: r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe.skipIf(missing !== undefined)(`the Python client example${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let app: App;
  let authed: App;
  let stubs: string;

  beforeAll(async () => {
    stubs = await mkdtemp(join(tmpdir(), "py-stubs-"));
    const backends = [{ name: "echo", kind: "echo", workers: 2 }];
    app = await startApp(validateConfig({ server: { port: 0 }, backends }));
    authed = await startApp(validateConfig({ server: { port: 0, auth: { tokens_env: "TOKENS" } }, backends }), { env: { TOKENS: "py-token" } });
  });
  afterAll(async () => {
    await app?.close();
    await authed?.close();
    if (stubs) await rm(stubs, { recursive: true, force: true });
  });

  it("generates stubs from the proto, submits a JSON job and reads WorkerMetrics", async () => {
    const target = `127.0.0.1:${app.server.port}`;
    const { code, lines } = await client(["--target", target, "--session", "py", "--json", '{"n": [1, 2], "s": "x"}', "--stubs", stubs]);
    expect(code).toBe(0);
    const [answer, ...metrics] = lines;
    expect(answer).toMatchObject({ payload: { n: [1, 2], s: "x" }, affinity: "miss" });
    expect(answer!["worker_id"]).toMatch(/^echo\/[01]$/);
    expect(metrics).toHaveLength(2);
    const workers = metrics[1]!["workers"] as { worker_id: string; state: string; completed: string; sessions: string }[];
    expect(workers.map((w) => w.worker_id).sort()).toEqual(["echo/0", "echo/1"]);
    expect(workers.every((w) => w.state === "WORKER_STATE_SERVING")).toBe(true);
    const ran = workers.find((w) => w.worker_id === answer!["worker_id"])!;
    expect(Number(ran.completed)).toBe(1);
    expect(Number(ran.sessions)).toBe(1);

    // The same session again: the pinned worker.
    const again = await client(["--target", target, "--session", "py", "--metrics", "0", "--stubs", stubs]);
    expect(again.lines[0]).toMatchObject({ worker_id: answer!["worker_id"], affinity: "hit" });
  });

  it("streams a job with SubmitStream: Started, the chunks in order, Done", async () => {
    const { code, lines } = await client([
      "--target", `127.0.0.1:${app.server.port}`, "--stream", "--json", '"hello stream"',
      "--meta", "stream_chunks=3", "--meta", "chunk_delay_ms=20", "--metrics", "0", "--stubs", stubs,
    ]);
    expect(code).toBe(0);
    expect(lines[0]).toMatchObject({ attempt: 1, affinity: "none" });
    expect(lines.slice(1, 4)).toEqual([{ chunk: "hell" }, { chunk: "o st" }, { chunk: "ream" }]);
    expect(lines[4]).toMatchObject({ done: true, attempts: 1, chunks: 3 });
    expect(lines[4]!["time_to_first_chunk_ms"]).toBeGreaterThan(0);
  });

  it("enqueues a background job, watches it to its end resuming midway, and dedupes by key", async () => {
    const target = `127.0.0.1:${app.server.port}`;
    const jobs = async (args: string[]) => {
      const r = await run(PYTHON, [join("examples", "python", "jobs.py"), ...args], { timeout: 60_000 });
      return r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    };
    const lines = await jobs(["--target", target, "--json", '{"job": 1}', "--key", "py-1", "--stubs", stubs]);
    expect(lines[0]).toMatchObject({ created: true });
    const events = lines.slice(1, -1);
    expect(events.map((e) => e["state"] ?? "chunk")).toEqual(["JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "chunk", "JOB_STATE_SUCCEEDED"]);
    // Resumed after the first event: no gap, no repeat.
    expect(new Set(events.map((e) => e["event_id"])).size).toBe(events.length);
    expect(lines.at(-1)).toMatchObject({ state: "JOB_STATE_SUCCEEDED", payload: { job: 1 }, attempts: 1 });
    const again = await jobs(["--target", target, "--key", "py-1", "--stubs", stubs]);
    expect(again[0]).toEqual({ job_id: lines[0]!["job_id"], created: false });
  });

  it("prints the gRPC status of a failed call and exits 1", async () => {
    const { code, lines } = await client(["--target", `127.0.0.1:${app.server.port}`, "--backend", "nope", "--stubs", stubs]);
    expect(code).toBe(1);
    expect(lines).toEqual([{ error: "NOT_FOUND", message: 'unknown backend "nope"; known backends: echo' }]);
  });

  it("sends the bearer token when auth is on", async () => {
    const target = `127.0.0.1:${authed.server.port}`;
    const refused = await client(["--target", target, "--stubs", stubs, "--token", ""]);
    expect(refused.code).toBe(1);
    expect(refused.lines[0]).toMatchObject({ error: "UNAUTHENTICATED" });
    const ok = await client(["--target", target, "--stubs", stubs, "--token", "py-token", "--metrics", "1"]);
    expect(ok.code).toBe(0);
    expect(ok.lines).toHaveLength(2);
  });
});
