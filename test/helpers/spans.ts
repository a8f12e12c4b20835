import type { Context } from "@opentelemetry/api";
import { hrTimeToMilliseconds } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan, type Span, type SpanProcessor } from "@opentelemetry/sdk-trace-base";

/**
 * Collects finished spans (SimpleSpanProcessor over an InMemorySpanExporter)
 * and lets a test wait for spans by name, instead of sleeping until they
 * have probably ended. The exporter may receive a span after it ended (the
 * processor waits for the resource's asynchronous attributes), so waiting
 * means: seen ending here, then flushed.
 */
export class SpanRecorder implements SpanProcessor {
  readonly exporter = new InMemorySpanExporter();
  private readonly inner = new SimpleSpanProcessor(this.exporter);
  private readonly endedByName = new Map<string, number>();
  private waiters: { name: string; count: number; resolve: () => void }[] = [];

  onStart(span: Span, parent: Context): void {
    this.inner.onStart(span, parent);
  }

  onEnd(span: ReadableSpan): void {
    this.inner.onEnd(span);
    this.endedByName.set(span.name, (this.endedByName.get(span.name) ?? 0) + 1);
    this.waiters = this.waiters.filter((w) => {
      if ((this.endedByName.get(w.name) ?? 0) < w.count) return true;
      w.resolve();
      return false;
    });
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  spans(): ReadableSpan[] {
    return this.exporter.getFinishedSpans();
  }

  named(name: string): ReadableSpan[] {
    return this.spans().filter((s) => s.name === name);
  }

  /** Resolves once `count` spans named `name` have ended since the last reset, and are in the exporter. */
  async ended(name: string, count = 1): Promise<void> {
    if ((this.endedByName.get(name) ?? 0) < count) {
      await new Promise<void>((resolve) => this.waiters.push({ name, count, resolve }));
    }
    await this.inner.forceFlush();
  }

  /** Forgets what was recorded; call it once the previous test's spans have all ended. */
  async reset(): Promise<void> {
    await this.inner.forceFlush();
    this.exporter.reset();
    this.endedByName.clear();
  }
}

export function startMs(s: ReadableSpan): number {
  return hrTimeToMilliseconds(s.startTime);
}

export function endMs(s: ReadableSpan): number {
  return hrTimeToMilliseconds(s.endTime);
}

/** The span's trace's spans with the given name. */
export function inTrace(spans: ReadableSpan[], traceId: string, name: string): ReadableSpan[] {
  return spans.filter((s) => s.spanContext().traceId === traceId && s.name === name);
}

export function isChildOf(child: ReadableSpan, parent: ReadableSpan): boolean {
  return (
    child.spanContext().traceId === parent.spanContext().traceId &&
    child.parentSpanContext?.spanId === parent.spanContext().spanId
  );
}
