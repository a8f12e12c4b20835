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

describe("README's grpc-js client example", () => {
  it("runs as shipped and keeps its session on one worker", async () => {
    const run = () =>
      new Promise<string>((resolve, reject) =>
        execFile(process.execPath, ["examples/grpc-js-client.mjs", `127.0.0.1:${app.server.port}`], { timeout: 20_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        ),
      );
    const first = JSON.parse(await run());
    const second = JSON.parse(await run());
    expect(first.affinity).toBe("miss");
    expect(second).toMatchObject({ affinity: "hit", worker_id: first.worker_id });
    expect(first.json.structValue.fields.prompt.stringValue).toBe("hello");
  });

  it("runs the background-jobs example: one job per idempotency key, watched to its end", async () => {
    const run = () =>
      new Promise<string>((resolve, reject) =>
        execFile(process.execPath, ["examples/grpc-js-jobs.mjs", `127.0.0.1:${app.server.port}`], { timeout: 20_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        ),
      );
    const first = JSON.parse(await run());
    expect(first).toMatchObject({ created: true, state: "JOB_STATE_SUCCEEDED", events: ["JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "chunk", "JOB_STATE_SUCCEEDED"] });
    const second = JSON.parse(await run());
    expect(second).toMatchObject({ job_id: first.job_id, created: false, state: "JOB_STATE_SUCCEEDED" });
  });
});
