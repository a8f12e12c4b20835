import { Code, ConnectError, type StreamRequest, type StreamResponse, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startTelemetry, type Telemetry } from "../../src/telemetry/index.js";
import { SpanRecorder } from "../helpers/spans.js";

// The interceptor driven directly, with requests shaped as connect hands them over.

const recorder = new SpanRecorder();
let telemetry: Telemetry;

beforeAll(async () => {
  telemetry = await startTelemetry({ env: {}, spanProcessors: [recorder] });
});
afterAll(async () => {
  await telemetry.shutdown();
});
beforeEach(async () => {
  await recorder.reset();
});

function request(service: string, method: string, stream: boolean, header: Record<string, string> = {}) {
  return {
    stream,
    service: { typeName: service },
    method: { name: method },
    header: new Headers(header),
    message: {},
  } as unknown as UnaryRequest & StreamRequest;
}

const intercept = (next: (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>) =>
  telemetry.interceptors[0]!(next);

describe("the RPC interceptor", () => {
  it("runs every step of a streaming generator inside the stream's span", async () => {
    const seen: (string | undefined)[] = [];
    async function* generate() {
      seen.push(trace.getActiveSpan()?.spanContext().spanId);
      await new Promise((resolve) => setImmediate(resolve));
      seen.push(trace.getActiveSpan()?.spanContext().spanId);
      yield 1;
      await Promise.resolve();
      seen.push(trace.getActiveSpan()?.spanContext().spanId);
      yield 2;
    }
    const res = (await intercept(async () => ({ stream: true, message: generate() }) as unknown as StreamResponse)(
      request("test.v1.Streams", "Count", true),
    )) as StreamResponse;
    const out: unknown[] = [];
    for await (const m of res.message) out.push(m);
    expect(out).toEqual([1, 2]);
    await recorder.ended("test.v1.Streams/Count");
    const [span] = recorder.named("test.v1.Streams/Count");
    expect(span!.kind).toBe(SpanKind.SERVER);
    expect(seen).toEqual([span!.spanContext().spanId, span!.spanContext().spanId, span!.spanContext().spanId]);
    expect(span!.attributes["rpc.grpc.status_code"]).toBe(0);
  });

  it("ends a stream's span with the status the stream failed with", async () => {
    async function* generate() {
      yield 1;
      throw new ConnectError("gone", Code.Unavailable);
    }
    const res = (await intercept(async () => ({ stream: true, message: generate() }) as unknown as StreamResponse)(
      request("test.v1.Streams", "Fail", true),
    )) as StreamResponse;
    await expect(async () => {
      for await (const _ of res.message);
    }).rejects.toThrow("gone");
    await recorder.ended("test.v1.Streams/Fail");
    const [span] = recorder.named("test.v1.Streams/Fail");
    expect(span!.attributes["rpc.grpc.status_code"]).toBe(Code.Unavailable);
    expect(span!.status).toEqual({ code: SpanStatusCode.ERROR, message: "gone" });
  });

  it("reads a plain Error thrown by a service as INTERNAL, as connect sends it", async () => {
    await expect(intercept(async () => Promise.reject(new Error("bug")))(request("test.v1.S", "M", false))).rejects.toThrow("bug");
    await recorder.ended("test.v1.S/M");
    const [span] = recorder.named("test.v1.S/M");
    expect(span!.attributes["rpc.grpc.status_code"]).toBe(Code.Internal);
    expect(span!.status.code).toBe(SpanStatusCode.ERROR);
  });

  it("joins the trace of an incoming Connect traceparent header", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    let active: string | undefined;
    await intercept(async () => {
      active = trace.getActiveSpan()?.spanContext().traceId;
      return { stream: false, message: {} } as unknown as UnaryResponse;
    })(request("test.v1.S", "Joined", false, { traceparent: `00-${traceId}-00f067aa0ba902b7-01` }));
    await recorder.ended("test.v1.S/Joined");
    const [span] = recorder.named("test.v1.S/Joined");
    expect(span!.spanContext().traceId).toBe(traceId);
    expect(span!.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
    expect(active).toBe(traceId);
  });

  it("does not trace health checks", async () => {
    let active: unknown = "unset";
    await intercept(async () => {
      active = trace.getActiveSpan();
      return { stream: false, message: {} } as unknown as UnaryResponse;
    })(request("grpc.health.v1.Health", "Check", false));
    expect(active).toBeUndefined();
    await recorder.reset();
    expect(recorder.spans()).toHaveLength(0);
  });
});
