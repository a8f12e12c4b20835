import { Code, ConnectError, createContextValues, type ContextValues, type StreamRequest, type StreamResponse, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { traceParentKey } from "../../src/server/trace-parent.js";
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

function request(service: string, method: string, stream: boolean, header: Record<string, string> = {}, values: ContextValues = createContextValues()) {
  return {
    stream,
    service: { typeName: service },
    method: { name: method },
    header: new Headers(header),
    contextValues: values,
    message: {},
  } as unknown as UnaryRequest & StreamRequest;
}

const intercept = (next: (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>) =>
  telemetry.interceptors[0]!(next);

describe("the RPC interceptor", () => {
  it("hands the stream's span to the implementation as a value, not as the active context", async () => {
    const seen: (string | undefined)[] = [];
    const values = createContextValues();
    const req = request("test.v1.Streams", "Count", true, {}, values);
    async function* generate() {
      seen.push(trace.getActiveSpan()?.spanContext().spanId);
      yield 1;
      yield 2;
    }
    const res = (await intercept(async () => ({ stream: true, message: generate() }) as unknown as StreamResponse)(req)) as StreamResponse;
    const out: unknown[] = [];
    for await (const m of res.message) out.push(m);
    expect(out).toEqual([1, 2]);
    await recorder.ended("test.v1.Streams/Count");
    const [span] = recorder.named("test.v1.Streams/Count");
    expect(span!.kind).toBe(SpanKind.SERVER);
    // Made active, it would switch on async hooks for every promise in the process (Node 20).
    expect(seen).toEqual([undefined]);
    const handed = trace.getSpan(values.get(traceParentKey) as never);
    expect(handed?.spanContext().spanId).toBe(span!.spanContext().spanId);
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
    let handed: string | undefined;
    await intercept(async (req) => {
      handed = trace.getSpan(req.contextValues.get(traceParentKey) as never)?.spanContext().traceId;
      return { stream: false, message: {} } as unknown as UnaryResponse;
    })(request("test.v1.S", "Joined", false, { traceparent: `00-${traceId}-00f067aa0ba902b7-01` }));
    await recorder.ended("test.v1.S/Joined");
    const [span] = recorder.named("test.v1.S/Joined");
    expect(span!.spanContext().traceId).toBe(traceId);
    expect(span!.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
    expect(handed).toBe(traceId);
  });

  it("does not trace health checks", async () => {
    let handed: unknown = "unset";
    await intercept(async (req) => {
      handed = req.contextValues.get(traceParentKey);
      return { stream: false, message: {} } as unknown as UnaryResponse;
    })(request("grpc.health.v1.Health", "Check", false));
    expect(handed).toBeUndefined();
    await recorder.reset();
    expect(recorder.spans()).toHaveLength(0);
  });
});
