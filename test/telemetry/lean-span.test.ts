import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Context, type HrTime, type Span, type Tracer } from "@opentelemetry/api";
import { suppressTracing } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type IdGenerator,
  type ReadableSpan,
  type Sampler,
  type SpanLimits,
} from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { LeanSpan, spanStarter } from "../../src/telemetry/lean-span.js";

// LeanSpan must record what the SDK's own span records: the same processors and exporters read both.
// Each case runs the same steps on an SDK span and a lean one, from two providers configured alike
// (ids from a counter, so both get the same), and compares what the exporter received.

/** Ids from a counter: two providers made alike hand out the same ids in the same order. */
function counterIds(): IdGenerator {
  let n = 0;
  const hex = (width: number) => (++n).toString(16).padStart(width, "0");
  return { generateTraceId: () => hex(32), generateSpanId: () => hex(16) };
}

function provider(o: { sampler?: Sampler; spanLimits?: SpanLimits } = {}) {
  const exporter = new InMemorySpanExporter();
  const p = new BasicTracerProvider({
    sampler: o.sampler ?? new AlwaysOnSampler(),
    spanLimits: o.spanLimits,
    idGenerator: counterIds(),
    resource: resourceFromAttributes({ "service.name": "lean-test" }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  return { tracer: p.getTracer("dispatcher-test", "1.2.3"), exporter };
}

const T0: HrTime = [1_700_000_000, 5_000];
const T1: HrTime = [1_700_000_000, 905_000];
const T2: HrTime = [1_700_000_001, 5];

/** What an exporter reads from a span, as plain data. */
function exported(s: ReadableSpan) {
  return {
    name: s.name,
    kind: s.kind,
    spanContext: { ...s.spanContext() },
    parentSpanContext: s.parentSpanContext,
    startTime: s.startTime,
    endTime: s.endTime,
    duration: s.duration,
    ended: s.ended,
    status: s.status,
    attributes: { ...s.attributes },
    events: s.events,
    links: s.links,
    droppedAttributesCount: s.droppedAttributesCount,
    droppedEventsCount: s.droppedEventsCount,
    droppedLinksCount: s.droppedLinksCount,
    resource: s.resource.attributes,
    instrumentationScope: s.instrumentationScope,
  };
}

type Start = (name: string, kind: SpanKind, attributes: Attributes, parent: Context, startTime: HrTime | number) => Span;

/** Runs `steps` with SDK spans and with lean ones; returns what each exporter got. */
function both(steps: (start: Start) => void, o: { sampler?: () => Sampler; spanLimits?: SpanLimits } = {}) {
  const sdk = provider({ sampler: o.sampler?.(), spanLimits: o.spanLimits });
  const lean = provider({ sampler: o.sampler?.(), spanLimits: o.spanLimits });
  steps((name, kind, attributes, parent, startTime) => sdk.tracer.startSpan(name, { kind, attributes, startTime }, parent));
  const starter = spanStarter(lean.tracer);
  const made: Span[] = [];
  steps((...args) => {
    const s = starter.start(...args);
    made.push(s);
    return s;
  });
  return { sdk: sdk.exporter.getFinishedSpans().map(exported), lean: lean.exporter.getFinishedSpans().map(exported), made };
}

const remoteParent = (flags: TraceFlags) =>
  trace.setSpanContext(ROOT_CONTEXT, { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: flags, isRemote: true });

describe("LeanSpan records what the SDK's span records", () => {
  it("for a server span with a child, attributes, an event, an error status and an exception", () => {
    const { sdk, lean, made } = both((start) => {
      const server = start("svc/Method", SpanKind.SERVER, { "rpc.system": "grpc", "rpc.method": "Method" }, remoteParent(TraceFlags.SAMPLED), T0);
      const child = start("dispatcher.job.run", SpanKind.INTERNAL, { "dispatcher.backend": "echo", "dispatcher.attempt": 1 }, trace.setSpan(ROOT_CONTEXT, server), T0);
      child.addEvent("dispatcher.first_chunk", { "dispatcher.time_to_first_chunk": 0.25 }, T1);
      child.addEvent("no attributes", T1);
      child.setAttribute("dispatcher.outcome", "error");
      child.setAttribute("", "ignored");
      child.setAttribute("nothing", undefined as never);
      child.setAttributes({ list: ["a", "b"], flag: true, bad: { nested: 1 } as never });
      child.setStatus({ code: SpanStatusCode.ERROR, message: "worker echo-1 failed" });
      child.recordException(Object.assign(new Error("boom"), { stack: "Error: boom\n    at x" }), T1);
      child.updateName("dispatcher.job.run");
      child.end(T2);
      child.end(T2); // ignored: a span ends once
      child.setAttribute("after", "end"); // ignored
      server.setStatus({ code: SpanStatusCode.OK });
      server.setStatus({ code: SpanStatusCode.ERROR, message: "too late" }); // OK is final
      server.setAttribute("rpc.grpc.status_code", 0);
      server.end(T2);
    });
    expect(made.every((s) => s instanceof LeanSpan)).toBe(true);
    expect(lean).toHaveLength(2);
    expect(lean).toEqual(sdk);
    // The child is parented by value, in the remote caller's trace.
    expect(lean[0]!.parentSpanContext?.spanId).toBe(lean[1]!.spanContext.spanId);
    expect(lean[1]!.spanContext.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
  });

  it("for a root span, an end before the start, and links", () => {
    const { sdk, lean } = both((start) => {
      const s = start("root", SpanKind.INTERNAL, {}, ROOT_CONTEXT, T1);
      s.addLink({ context: { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 1 }, attributes: { why: "retry" } });
      s.addLinks([{ context: { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b8", traceFlags: 1 } }]);
      s.setStatus({ code: SpanStatusCode.ERROR, message: 42 as never });
      s.end(T0);
    });
    expect(lean).toEqual(sdk);
    expect(lean[0]!.duration).toEqual([0, 0]);
  });

  it("from wall-clock milliseconds, as the dispatcher gives its times (within a microsecond of the SDK's reading)", () => {
    const startMs = 1_700_000_000_123.4567;
    const { sdk, lean } = both((start) => {
      const s = start("ms", SpanKind.INTERNAL, {}, ROOT_CONTEXT, startMs);
      s.end(startMs + 2.5005);
      start("backwards", SpanKind.INTERNAL, {}, ROOT_CONTEXT, startMs).end(startMs - 1);
    });
    const micros = (t: HrTime) => t[0] * 1e6 + t[1] / 1e3;
    for (const [i, s] of lean.entries()) {
      expect(Math.abs(micros(s.startTime) - micros(sdk[i]!.startTime))).toBeLessThan(1);
      expect(Math.abs(micros(s.endTime) - micros(sdk[i]!.endTime))).toBeLessThan(1);
      expect(Math.abs(micros(s.duration) - micros(sdk[i]!.duration))).toBeLessThan(1);
    }
    expect(micros(lean[0]!.duration)).toBeCloseTo(2500.5, 0);
    expect(lean[1]!.duration).toEqual([0, 0]);
    expect(lean[1]!.endTime).toEqual(lean[1]!.startTime);
  });

  it("within the span limits the environment sets", () => {
    const spanLimits: SpanLimits = { attributeCountLimit: 2, attributeValueLengthLimit: 3, eventCountLimit: 1, linkCountLimit: 1, attributePerEventCountLimit: 1, attributePerLinkCountLimit: 1 };
    const { sdk, lean } = both(
      (start) => {
        const s = start("limited", SpanKind.INTERNAL, { a: "abcdef", b: ["xyzw", "v"], c: "dropped" }, ROOT_CONTEXT, T0);
        s.setAttribute("a", "replaced");
        s.setAttribute("d", "dropped too");
        s.addEvent("first", { x: "12345", y: 2 }, T1);
        s.addEvent("second", { z: 3 }, T1);
        const link = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 1 };
        s.addLink({ context: link, attributes: { p: 1, q: 2 } });
        s.addLink({ context: link });
        s.end(T2);
      },
      { spanLimits },
    );
    expect(lean).toEqual(sdk);
    expect(lean[0]!.droppedAttributesCount).toBe(2);
    expect(lean[0]!.attributes).toEqual({ a: "rep", b: ["xyz", "v"] });
  });

  it("with no events or links allowed", () => {
    const { sdk, lean } = both(
      (start) => {
        const s = start("none", SpanKind.INTERNAL, {}, ROOT_CONTEXT, T0);
        s.addEvent("e", T1);
        s.addLink({ context: { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 1 } });
        s.end(T2);
      },
      { spanLimits: { eventCountLimit: 0, linkCountLimit: 0 } },
    );
    expect(lean).toEqual(sdk);
    expect(lean[0]!.droppedEventsCount).toBe(1);
  });

  it.each([
    ["always off", () => new AlwaysOffSampler(), ROOT_CONTEXT, 0],
    ["parent-based, a sampled remote parent", () => new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0) }), remoteParent(TraceFlags.SAMPLED), 1],
    ["parent-based, an unsampled remote parent", () => new ParentBasedSampler({ root: new AlwaysOnSampler() }), remoteParent(TraceFlags.NONE), 0],
    ["ratio 0 for a root", () => new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0) }), ROOT_CONTEXT, 0],
  ] as const)("as the sampler decides: %s", (_, sampler, parent, exportedCount) => {
    const recording: boolean[] = [];
    const { sdk, lean, made } = both((start) => {
      const s = start("sampled?", SpanKind.SERVER, { k: 1 }, parent, T0);
      recording.push(s.isRecording());
      const child = start("child", SpanKind.INTERNAL, {}, trace.setSpan(ROOT_CONTEXT, s), T0);
      child.end(T1);
      s.end(T2);
    }, { sampler });
    expect(lean).toEqual(sdk);
    expect(lean).toHaveLength(exportedCount * 2);
    // A span the sampler drops still carries its trace onward (outgoing traceparent).
    expect(trace.isSpanContextValid(made[0]!.spanContext())).toBe(true);
    expect(recording).toEqual([exportedCount === 1, exportedCount === 1]);
  });

  it("not at all where tracing is suppressed (an exporter's own requests)", () => {
    const recording: boolean[] = [];
    const { sdk, lean } = both((start) => {
      const s = start("suppressed", SpanKind.INTERNAL, {}, suppressTracing(ROOT_CONTEXT), T0);
      recording.push(s.isRecording());
      s.end(T1);
    });
    expect(lean).toEqual(sdk);
    expect(lean).toHaveLength(0);
    expect(recording).toEqual([false, false]);
  });

  it("keeps its own attributes apart from the object the next span is given", () => {
    const { lean } = both((start) => {
      const a = start("a", SpanKind.INTERNAL, { k: 1 }, ROOT_CONTEXT, T0);
      a.setAttribute("only-a", true);
      a.end(T1);
      start("b", SpanKind.INTERNAL, { k: 2 }, ROOT_CONTEXT, T0).end(T1);
    });
    expect(lean.map((s) => s.attributes)).toEqual([{ k: 1, "only-a": true }, { k: 2 }]);
  });
});

describe("LeanSpan takes what user code hands it as the SDK's span does", () => {
  // A module backend's handler reaches the run span through trace.getActiveSpan() and may call any of this.
  it("drops invalid attribute values and copies arrays", () => {
    const { sdk, lean } = both((start) => {
      const s = start("user", SpanKind.INTERNAL, {}, ROOT_CONTEXT, T0);
      const list = ["small"];
      s.setAttribute("list", list);
      list.push("large");
      s.setAttribute("obj", { nested: 1 } as never);
      s.setAttribute("mixed", [1, "two"] as never);
      s.setAttribute("fn", (() => 1) as never);
      s.end(T1);
    });
    expect(lean).toEqual(sdk);
    expect(lean[0]!.attributes).toEqual({ list: ["small"] });
  });

  it("reads an event's time from the third argument before the second, and null times as now", () => {
    const before = Date.now();
    const { sdk, lean } = both((start) => {
      const s = start("times", SpanKind.INTERNAL, {}, ROOT_CONTEXT, T0);
      s.addEvent("two times", T0, T1);
      s.addEvent("null time", {}, null as never);
      s.recordException("boom", null as never);
      s.end(null as never);
    });
    expect(lean).toHaveLength(1);
    expect(lean[0]!.events[0]).toEqual(sdk[0]!.events[0]);
    for (const t of [lean[0]!.events[1]!.time, lean[0]!.events[2]!.time, lean[0]!.endTime]) {
      expect(t[0] * 1000 + t[1] / 1e6).toBeGreaterThanOrEqual(before - 5);
    }
  });
});

describe("spanStarter", () => {
  it("leaves span making to a tracer that is not the SDK's", () => {
    const calls: string[] = [];
    const other = {
      startSpan(name: string) {
        calls.push(name);
        return trace.wrapSpanContext({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 1 });
      },
    } as unknown as Tracer;
    const span = spanStarter(other).start("x", SpanKind.INTERNAL, {}, ROOT_CONTEXT, T0);
    expect(calls).toEqual(["x"]);
    expect(span).not.toBeInstanceOf(LeanSpan);
  });
});
