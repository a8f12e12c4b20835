import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { context, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { startTelemetry } from "../../src/telemetry/index.js";
import { tracesRequested, withOtelEnv } from "../../src/telemetry/env.js";
import { connectClient } from "../helpers/clients.js";

interface OtlpSpan {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}

/** An OTLP/HTTP receiver (JSON encoding) on loopback, as a collector would be. */
let receiver: http.Server;
let endpoint: string;
let requests: { path: string; contentType: string | undefined; body: unknown }[] = [];

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push({ path: req.url ?? "", contentType: req.headers["content-type"], body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
      res.setHeader("content-type", "application/json");
      res.end("{}");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => receiver.close(resolve));
});

/** A traced service as main.ts starts it with built-in backends only: no async context manager registered. */
async function submitOnce(env: NodeJS.ProcessEnv): Promise<{ traced: boolean }> {
  const telemetry = await startTelemetry({ env, ambientContext: false });
  const config = validateConfig({ server: { port: 0 }, backends: [{ name: "echo", kind: "echo" }] });
  const app = await startApp(config, { observer: telemetry.observer, interceptors: telemetry.interceptors });
  try {
    // No manager: entering a context makes nothing active (no async hooks in the process).
    const span = trace.wrapSpanContext({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 1 });
    expect(context.with(trace.setSpan(ROOT_CONTEXT, span), () => trace.getActiveSpan())).toBeUndefined();
    // gRPC: the edge's fast path, whose spans are parented by value alone.
    await connectClient(app.server.port, "grpc").submit({ backend: "echo", sessionId: "s" });
  } finally {
    await app.close();
    await telemetry.shutdown();
  }
  return { traced: telemetry.interceptors.length > 0 };
}

describe("export over OTLP/HTTP", () => {
  it("sends the spans of a Submit to the collector the environment names", async () => {
    requests = [];
    await submitOnce({
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "dispatcher-e2e",
    });
    // shutdown() flushed the batch processor: everything has arrived.
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((r) => r.path === "/v1/traces" && r.contentType === "application/json")).toBe(true);
    const resourceSpans = requests.flatMap((r) => (r.body as { resourceSpans: unknown[] }).resourceSpans) as {
      resource: { attributes: { key: string; value: { stringValue?: string } }[] };
      scopeSpans: { scope: { name: string }; spans: OtlpSpan[] }[];
    }[];
    const serviceNames = resourceSpans.map((rs) => rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue);
    expect(new Set(serviceNames)).toEqual(new Set(["dispatcher-e2e"]));
    const spans = resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
    const byName = (name: string) => spans.filter((s) => s.name === name);
    const [server] = byName("dispatcher.v1.DispatcherService/Submit");
    const [wait] = byName("dispatcher.queue.wait");
    const [run] = byName("dispatcher.job.run");
    expect(spans).toHaveLength(3);
    expect(server!.parentSpanId ?? "").toBe("");
    expect(wait!.parentSpanId).toBe(server!.spanId);
    expect(run!.parentSpanId).toBe(server!.spanId);
    expect(new Set([server!.traceId, wait!.traceId, run!.traceId]).size).toBe(1);
    expect(run!.attributes).toContainEqual({ key: "dispatcher.worker.id", value: { stringValue: "echo/0" } });
    expect(run!.attributes).toContainEqual({ key: "dispatcher.affinity", value: { stringValue: "miss" } });
  });

  it("exports nothing, and adds no hooks, unless asked", async () => {
    requests = [];
    // A protocol alone does not ask for export; "none" and OTEL_SDK_DISABLED win over an endpoint.
    expect(await submitOnce({ OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" })).toEqual({ traced: false });
    expect(await submitOnce({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_EXPORTER: "none" })).toEqual({ traced: false });
    expect(await submitOnce({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SDK_DISABLED: "true" })).toEqual({ traced: false });
    expect(requests).toEqual([]);
    const off = await startTelemetry({ env: {} });
    expect(off.observer).toEqual({});
    expect(off.interceptors).toEqual([]);
    expect(off.prometheusPort).toBeUndefined();
    await off.shutdown();
  });
});

describe("tracesRequested", () => {
  it("follows the documented rule", () => {
    expect(tracesRequested({})).toBe(false);
    expect(tracesRequested({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", OTEL_SERVICE_NAME: "x" })).toBe(false);
    expect(tracesRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toBe(true);
    expect(tracesRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" })).toBe(true);
    expect(tracesRequested({ OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
    expect(tracesRequested({ OTEL_TRACES_EXPORTER: "console" })).toBe(true);
    expect(tracesRequested({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toBe(false);
    expect(tracesRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: " " })).toBe(false);
  });
});

describe("withOtelEnv", () => {
  it("applies process.env itself, and restores it", () => {
    process.env["OTEL_TEST_VALUE"] = "kept";
    try {
      const seen = withOtelEnv(process.env, { OTEL_LOGS_EXPORTER: "none" }, () => [process.env["OTEL_TEST_VALUE"], process.env["OTEL_LOGS_EXPORTER"]]);
      expect(seen).toEqual(["kept", "none"]);
      expect(withOtelEnv({ OTEL_OTHER: "x" }, {}, () => [process.env["OTEL_TEST_VALUE"], process.env["OTEL_OTHER"]])).toEqual([undefined, "x"]);
      expect(process.env["OTEL_TEST_VALUE"]).toBe("kept");
      expect(process.env["OTEL_OTHER"]).toBeUndefined();
      expect(process.env["OTEL_LOGS_EXPORTER"]).toBeUndefined();
    } finally {
      delete process.env["OTEL_TEST_VALUE"];
    }
  });
});
