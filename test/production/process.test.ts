import { execFile, execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient } from "../helpers/clients.js";
import { startChild } from "../helpers/child.js";

/**
 * The Dockerfile's steps without Docker: a packed copy of the package, built
 * as the build stage does, installed as the runtime stage does (npm ci
 * --omit=dev), started with the image's CMD and probed with its HEALTHCHECK.
 * The drain tests then use the same installed copy as a real child process.
 */
const repo = join(import.meta.dirname, "../..");
const run = promisify(execFile);
let dir: string;
let app: string;
let docker: { env: Record<string, string>; cmd: string[]; healthcheck: string[]; copies: string[] };

/** The runtime (last) stage of the Dockerfile: its ENV, COPY sources, CMD and HEALTHCHECK. */
function parseDockerfile(text: string): typeof docker {
  const lines = text.replace(/\\\n\s*/g, " ").split("\n").map((l) => l.trim());
  const stage = lines.slice(lines.map((l) => l.startsWith("FROM ")).lastIndexOf(true));
  const env: Record<string, string> = {};
  const copies: string[] = [];
  let cmd: string[] = [];
  let healthcheck: string[] = [];
  for (const l of stage) {
    if (l.startsWith("ENV ")) for (const m of l.slice(4).matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
    if (l.startsWith("COPY ")) copies.push(l.split(/\s+/).slice(1, -1).filter((a) => !a.startsWith("--")).join(" "));
    if (l.startsWith("CMD ")) cmd = JSON.parse(l.slice(4)) as string[];
    if (l.startsWith("HEALTHCHECK ")) healthcheck = JSON.parse(l.slice(l.indexOf(" CMD ") + 5)) as string[];
  }
  return { env, cmd, healthcheck, copies };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dispatcher-image-"));
  docker = parseDockerfile(readFileSync(join(repo, "Dockerfile"), "utf8"));
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: repo });
  const tarball = (JSON.parse(stdout) as { filename: string }[])[0]!.filename;
  execFileSync("tar", ["xzf", join(dir, tarball), "-C", dir]);
  app = join(dir, "package");
  // COPY package.json package-lock.json (npm pack leaves the lock file out).
  cpSync(join(repo, "package-lock.json"), join(app, "package-lock.json"));
  // Build stage: the copy's own tsconfig and sources, with the repository's dev dependencies lent for the build.
  symlinkSync(join(repo, "node_modules"), join(app, "node_modules"), "dir");
  await run("npm", ["run", "build"], { cwd: app });
  unlinkSync(join(app, "node_modules"));
  // Runtime stage.
  await run("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: app });
}, 240_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("the Docker image's steps", () => {
  it("installs without dev dependencies, starts with the CMD and passes the HEALTHCHECK", async () => {
    expect(existsSync(join(app, "node_modules/typescript"))).toBe(false);
    expect(existsSync(join(app, "node_modules/@connectrpc/connect-node"))).toBe(true);
    expect(existsSync(join(app, "dist/web/index.html"))).toBe(true);
    for (const c of docker.copies) {
      const src = c.replace(/^\/app\//, "");
      if (!src.includes(" ")) expect(existsSync(join(app, src)), `COPY ${c}`).toBe(true);
    }
    expect(docker.env["HOST"]).toBe("0.0.0.0");
    expect(docker.cmd[0]).toBe("node");
    const child = await startChild(docker.cmd, { cwd: app, env: { ...docker.env, PORT: "0" } });
    try {
      const probe = await run(docker.healthcheck[0]!, docker.healthcheck.slice(1), { cwd: app, env: { ...process.env, PORT: String(child.port) } })
        .then(() => 0, (e: { code: number }) => e.code);
      expect(probe).toBe(0);
      expect((await connectClient(child.port, "grpc").submit({ backend: "echo" })).workerId).toMatch(/^echo\//);
    } finally {
      child.proc.kill("SIGTERM");
    }
    expect(await child.exited).toBe(0);
    // With nothing listening the probe fails.
    const down = await run(docker.healthcheck[0]!, docker.healthcheck.slice(1), { cwd: app, env: { ...process.env, PORT: String(child.port) } })
      .then(() => 0, (e: { code: number }) => e.code);
    expect(down).toBe(1);
  });
});

function config(grace: string): string {
  const file = join(dir, `config-${grace}.json`);
  writeFileSync(file, JSON.stringify({
    server: { shutdown_grace: grace },
    backends: [{ name: "echo", kind: "echo", workers: 2, max_concurrency: 4, queue_capacity: 16 }],
  }));
  return file;
}

const codeOf = (p: Promise<unknown>): Promise<Code | "OK"> => p.then(() => "OK" as const, (e: unknown) => ConnectError.from(e).code);

describe("SIGTERM drain of a real process", () => {
  it("finishes in-flight and queued jobs, refuses new ones with UNAVAILABLE and exits 0 within the grace period", async () => {
    const child = await startChild(["node", "dist/src/main.js", "--config", config("10s"), "--port", "0"], { cwd: app });
    const client = connectClient(child.port, "grpc");
    // 8 run at once (2 workers × 4), 12 wait: three rounds of 300 ms.
    const calls = Array.from({ length: 20 }, () => codeOf(client.submit({ backend: "echo", metadata: { delay_ms: "300" } })));
    const metrics = client.workerMetrics({ interval: { seconds: 0n, nanos: 100_000_000 } });
    for await (const m of metrics) if (m.workers.reduce((n, w) => n + w.inflight + w.queueLen, 0) === 20) break;
    const started = Date.now();
    child.proc.kill("SIGTERM");
    // Once the drain has begun, new calls are refused.
    let refused: Code | "OK" = "OK";
    for (let i = 0; i < 50 && refused === "OK"; i++) refused = await codeOf(client.submit({ backend: "echo" }));
    expect(refused).toBe(Code.Unavailable);
    const results = await Promise.all(calls);
    expect(results.every((c) => c === "OK")).toBe(true);
    expect(await child.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("aborts jobs still running when the grace period ends, answering them UNAVAILABLE, and exits 0", async () => {
    const child = await startChild(["node", "dist/src/main.js", "--config", config("500ms"), "--port", "0"], { cwd: app });
    const client = connectClient(child.port, "grpc");
    const calls = Array.from({ length: 4 }, () => codeOf(client.submit({ backend: "echo", metadata: { delay_ms: "60000" } })));
    for await (const m of client.workerMetrics({})) if (m.workers.reduce((n, w) => n + w.inflight, 0) === 4) break;
    const started = Date.now();
    child.proc.kill("SIGTERM");
    expect(await Promise.all(calls)).toEqual([Code.Unavailable, Code.Unavailable, Code.Unavailable, Code.Unavailable]);
    expect(await child.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("exits at once with status 1 on a second signal", async () => {
    const child = await startChild(["node", "dist/src/main.js", "--config", config("30s"), "--port", "0"], { cwd: app });
    const client = connectClient(child.port, "grpc");
    const call = codeOf(client.submit({ backend: "echo", metadata: { delay_ms: "60000" } }));
    for await (const m of client.workerMetrics({})) if (m.workers.reduce((n, w) => n + w.inflight, 0) === 1) break;
    child.proc.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    child.proc.kill("SIGINT");
    expect(await child.exited).toBe(1);
    // A forced exit answers nothing: the client sees its connection drop, and does not hang.
    expect(await call).not.toBe("OK");
  });
});
