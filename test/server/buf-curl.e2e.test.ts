import { execFile } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";

let app: App;

beforeAll(async () => {
  app = await startTestApp({ backends: [{ name: "echo", kind: "echo", workers: 4 }] });
});
afterAll(async () => {
  await app.close();
});

/** Runs the buf CLI as a user would (`npx buf curl …`); resolves with its exit code and output. */
function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("node_modules/.bin/buf", ["curl", "--schema", "proto", ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

const url = (method: string) => `http://127.0.0.1:${app.server.port}/dispatcher.v1.DispatcherService/${method}`;

describe("buf curl", () => {
  it("calls Submit with a JSON payload over gRPC", async () => {
    const r = await bufCurl(["--protocol", "grpc", "--http2-prior-knowledge", "-d", '{"backend":"echo","session_id":"u1","json":{"hi":1}}', url("Submit")]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.json).toEqual({ hi: 1 });
    expect(res.workerId).toMatch(/^echo\/\d$/);
    expect(res.affinity).toBe("miss");
  });

  it("calls Submit over the Connect protocol (its default) with h2c", async () => {
    const r = await bufCurl(["--http2-prior-knowledge", "-d", '{"backend":"echo","binary":"AQID"}', url("Submit")]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).binary).toBe("AQID");
  });

  it("reports an error status in its exit code (gRPC code × 8)", async () => {
    const r = await bufCurl(["--protocol", "grpc", "-d", '{"backend":"nope"}', url("Submit")]);
    expect(r.code).toBe(5 * 8);
    expect(r.stdout + r.stderr).toContain("known backends: echo");
  });

  it("streams WorkerMetrics until its timeout", async () => {
    const r = await bufCurl(["--protocol", "grpc", "--timeout", "0.8s", "-d", '{"interval":"0.2s"}', url("WorkerMetrics")]);
    expect(r.code).toBe(4 * 8); // DEADLINE_EXCEEDED ends the stream
    const messages = r.stdout.split(/\n(?=\{)/).map((m) => JSON.parse(m));
    expect(messages.length).toBeGreaterThanOrEqual(2);
    expect(messages[0].workers).toHaveLength(4);
    expect(messages[0].workers[0].state).toBe("WORKER_STATE_SERVING");
  });
});
