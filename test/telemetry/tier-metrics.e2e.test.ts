import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { startTelemetry, type Telemetry } from "../../src/telemetry/index.js";
import { connectClient } from "../helpers/clients.js";

let telemetry: Telemetry;
let app: App;

beforeAll(async () => {
  telemetry = await startTelemetry({ env: {}, prometheusPort: 0 });
  const config = validateConfig({
    server: { port: 0 },
    backends: [
      {
        name: "b",
        kind: "echo",
        workers: 1,
        max_concurrency: 1,
        queue_capacity: 4,
        options: { delay_ms: 30 },
        scheduling: { tenant_queue_share: 0.5 },
      },
    ],
  });
  app = await startApp(config, { observer: telemetry.observer, interceptors: telemetry.interceptors });
});
afterAll(async () => {
  await app?.close();
  await telemetry?.shutdown();
});

describe("Prometheus per tier and tenant", () => {
  it("shows queue wait per priority, queue depth per priority and refusals per tenant and tier", async () => {
    const client = connectClient(app.server.port, "grpc");
    const calls = [
      client.submit({ backend: "b", tenant: "noisy", priority: 1 }),
      client.submit({ backend: "b", tenant: "noisy", priority: 1 }),
      client.submit({ backend: "b", tenant: "noisy", priority: 1 }),
      client.submit({ backend: "b", tenant: "noisy", priority: 1 }), // over its share of the queue: refused
      client.submit({ backend: "b", tenant: "quiet", priority: 0 }),
    ].map((p) => p.then(() => "ok", () => "refused"));
    expect((await Promise.all(calls)).filter((c) => c === "refused")).toHaveLength(1);
    const text = await (await fetch(`http://127.0.0.1:${telemetry.prometheusPort}/metrics`)).text();
    expect(text).toMatch(/dispatcher_queue_wait_by_priority_duration_count\{dispatcher_backend="b",dispatcher_priority="1"\} 3/);
    expect(text).toMatch(/dispatcher_queue_wait_by_priority_duration_count\{dispatcher_backend="b",dispatcher_priority="0"\} 1/);
    expect(text).toMatch(/dispatcher_tenant_rejected_total\{dispatcher_backend="b",dispatcher_tenant="noisy",dispatcher_priority="1"\} 1/);
    // Every call has left the queue: each tier's depth is back at zero.
    const depths = text.split("\n").filter((l) => l.startsWith("dispatcher_queue_depth_by_priority{"));
    expect(depths.length).toBeGreaterThan(0);
    expect(depths.every((l) => l.endsWith(" 0"))).toBe(true);
  });
});
