import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobState } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { startTelemetry, type Telemetry } from "../../src/telemetry/index.js";
import { connectClient } from "../helpers/clients.js";
import { isChildOf, SpanRecorder } from "../helpers/spans.js";

const recorder = new SpanRecorder();
let telemetry: Telemetry;
let app: App;

beforeAll(async () => {
  telemetry = await startTelemetry({ env: {}, spanProcessors: [recorder] });
  app = await startApp(validateConfig({ server: { port: 0 }, backends: [{ name: "echo", kind: "echo" }] }), {
    observer: telemetry.observer,
    interceptors: telemetry.interceptors,
  });
});

afterAll(async () => {
  await app.close();
  await telemetry.shutdown();
});

describe("tracing a background job", () => {
  it("runs in a trace of its own whose span links to the Enqueue call's span", async () => {
    const c = connectClient(app.server.port, "grpc");
    const { jobId } = await c.enqueue({ request: { backend: "echo" } });
    for (let i = 0; i < 500; i++) {
      if ((await c.getJob({ jobId })).state === JobState.SUCCEEDED) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await recorder.ended("dispatcher.background_job", 1);
    await recorder.ended("dispatcher.job.run", 1);
    const spans = recorder.spans();
    const enqueue = spans.find((s) => s.name === "dispatcher.v1.DispatcherService/Enqueue")!;
    const job = spans.find((s) => s.name === "dispatcher.background_job")!;
    const run = spans.find((s) => s.name === "dispatcher.job.run")!;
    expect(enqueue).toBeDefined();
    expect(job.links.map((l) => l.context.spanId)).toEqual([enqueue.spanContext().spanId]);
    expect(job.links[0]!.context.traceId).toBe(enqueue.spanContext().traceId);
    expect(job.spanContext().traceId).not.toBe(enqueue.spanContext().traceId);
    expect(isChildOf(run, job)).toBe(true);
    expect(job.attributes["dispatcher.job.state"]).toBe("succeeded");
  });
});
