import { createContextKey, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { describe, expect, it } from "vitest";
import { SpanInContext } from "../../src/telemetry/span-context.js";
import { PooledIdGenerator } from "../../src/telemetry/span-ids.js";

const span = trace.wrapSpanContext({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED });

describe("SpanInContext", () => {
  it("reads as trace.setSpan's context does", () => {
    const other = createContextKey("other");
    const parent = ROOT_CONTEXT.setValue(other, 42);
    const ctx = new SpanInContext(parent, span);
    // The API finds the span under its own key: if that key ever changed, this is where it shows.
    expect(trace.getSpan(ctx)).toBe(span);
    expect(trace.getSpan(trace.setSpan(parent, span))).toBe(span);
    expect(ctx.getValue(other)).toBe(42);
    expect(trace.getSpan(new SpanInContext(ROOT_CONTEXT, span).deleteValue(createContextKey("OpenTelemetry Context Key SPAN")))).toBeUndefined();
  });

  it("sets and deletes values into a context of its own, leaving itself as it was", () => {
    const key = createContextKey("k");
    const ctx = new SpanInContext(ROOT_CONTEXT, span);
    const more = ctx.setValue(key, "v");
    expect(more.getValue(key)).toBe("v");
    expect(trace.getSpan(more)).toBe(span);
    expect(ctx.getValue(key)).toBeUndefined();
    expect(trace.getSpan(more.deleteValue(key))).toBe(span);
  });

  it("carries the span's trace onward in a traceparent header", () => {
    const carrier: Record<string, string> = {};
    new W3CTraceContextPropagator().inject(new SpanInContext(ROOT_CONTEXT, span), carrier, { set: (c, k, v) => (c[k] = v) });
    expect(carrier["traceparent"]).toBe("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  });
});

describe("PooledIdGenerator", () => {
  it("makes valid, distinct ids across many pool refills", () => {
    const ids = new PooledIdGenerator();
    const spans = new Set<string>();
    const traces = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const s = ids.generateSpanId();
      const t = ids.generateTraceId();
      expect(s).toMatch(/^[0-9a-f]{16}$/);
      expect(t).toMatch(/^[0-9a-f]{32}$/);
      spans.add(s);
      traces.add(t);
    }
    expect(spans.size).toBe(20_000);
    expect(traces.size).toBe(20_000);
    expect(trace.isSpanContextValid({ traceId: [...traces][0]!, spanId: [...spans][0]!, traceFlags: 1 })).toBe(true);
  });

  it("spreads its ids over every hex digit in every place", () => {
    const ids = new PooledIdGenerator();
    const seen = Array.from({ length: 16 }, () => new Set<string>());
    for (let i = 0; i < 2_000; i++) [...ids.generateSpanId()].forEach((c, j) => seen[j]!.add(c));
    expect(seen.every((s) => s.size === 16)).toBe(true);
  });
});
