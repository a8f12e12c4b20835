import type { Context } from "@opentelemetry/api";
import { hrTimeToMilliseconds } from "@opentelemetry/core";
import { AggregationTemporality, MeterProvider, MetricReader, type GaugeMetricData } from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, type ReadableSpan, type Span, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { JobMetrics } from "../../src/telemetry/job-metrics.js";
import { createJobObserver } from "../../src/telemetry/job-observer.js";
import * as n from "../../src/telemetry/names.js";
import { runScenario } from "../core/lifecycle-scenario.js";

/** Spans started and ended, with what a well-formed span must have. */
class SpanCheck implements SpanProcessor {
  open = new Set<Span>();
  started = new Map<string, number>();
  problems: string[] = [];
  onStart(span: Span, _parent: Context): void {
    this.open.add(span);
  }
  onEnd(span: ReadableSpan): void {
    if (!this.open.delete(span as Span)) this.problems.push(`${span.name} ended twice or was never started`);
    this.started.set(span.name, (this.started.get(span.name) ?? 0) + 1);
    if (hrTimeToMilliseconds(span.endTime) < hrTimeToMilliseconds(span.startTime)) this.problems.push(`${span.name} ends before it starts`);
    const outcome = span.attributes[n.ATTR_OUTCOME];
    if (outcome === undefined) this.problems.push(`${span.name} without an outcome`);
    if (span.name === n.SPAN_JOB_RUN && (outcome === "error" || outcome === "timeout") && span.status.code !== 2) {
      this.problems.push(`a failed run span (${String(outcome)}) without error status`);
    }
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

class Reader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

async function gauges(reader: Reader): Promise<number[]> {
  const { resourceMetrics } = await reader.collect();
  const values: number[] = [];
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const m of scope.metrics) {
      if (m.descriptor.name !== n.METRIC_QUEUE_DEPTH && m.descriptor.name !== n.METRIC_INFLIGHT) continue;
      for (const p of (m as GaugeMetricData).dataPoints) values.push(p.value);
    }
  }
  return values;
}

/**
 * The lifecycle property runs again through the real telemetry observer:
 * spans well formed (each started span ends once, after it started, with an
 * outcome; failed runs marked as errors), one queue-wait span per attempt
 * queued (or submit refused), and the queue-depth and in-flight gauges back at zero after every run.
 */
describe("telemetry over the job lifecycle (property)", () => {
  it("keeps spans well formed and gauges at zero over 300 seeded runs", async () => {
    const spans = new SpanCheck();
    const tracer = new BasicTracerProvider({ spanProcessors: [spans] }).getTracer("test");
    const reader = new Reader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter("test");
    const observer = createJobObserver(tracer, new JobMetrics(meter));
    const violations: string[] = [];
    let waits = 0;
    for (let seed = 1; seed <= 300; seed++) {
      let queued = 0;
      const counting = { jobQueued: () => void queued++ };
      const r = await runScenario(5_000 + seed, false, {
        ...observer,
        jobQueued: (j) => (counting.jobQueued(), observer.jobQueued!(j)),
        // A refused submit gets a zero-length queue-wait span too.
        jobRejected: (b, w, e) => (counting.jobQueued(), observer.jobRejected!(b, w, e)),
      });
      violations.push(...r.violations);
      waits += queued;
      if (spans.open.size !== 0) violations.push(`seed ${5_000 + seed}: ${spans.open.size} spans left open`);
      const g = await gauges(reader);
      if (g.some((v) => v !== 0)) violations.push(`seed ${5_000 + seed}: gauges ${JSON.stringify(g)}`);
      if (violations.length > 5) break;
    }
    expect(violations).toEqual([]);
    expect(spans.problems.slice(0, 5)).toEqual([]);
    expect(spans.started.get(n.SPAN_QUEUE_WAIT)).toBe(waits);
  }, 60_000);
});
