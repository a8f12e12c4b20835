import type { HrTime } from "@opentelemetry/api";

/**
 * Span timestamps from one monotonic clock, so that the spans of a trace
 * line up to the microsecond: a job's queue wait ends exactly where its run
 * starts. The SDK's own default starts each span at Date.now(), whole
 * milliseconds, which makes a child appear to start before its parent
 * ended. performance.now() is anchored to the wall clock; the anchor is
 * checked once a second and moved only when the two clocks drift apart by
 * more than a millisecond (NTP adjustments), so spans neither jitter nor
 * drift.
 */
let anchorMs = Date.now() - performance.now();
let checkedAt = performance.now();
const CHECK_EVERY_MS = 1_000;
const MAX_DRIFT_MS = 1;

/** Now, as wall-clock milliseconds on the span clock. */
export function spanMs(): number {
  return spanMsAt(performance.now());
}

/**
 * The span timestamp of a performance.now() reading: the core's clock in the
 * service, so that a span lasts exactly what the core measured (and what the
 * client is told as queue_wait / execution).
 */
export function spanTimeAt(p: number): HrTime {
  return msToHrTime(spanMsAt(p));
}

/** spanTimeAt as wall-clock milliseconds: what spans keep until an exporter reads them. */
export function spanMsAt(p: number): number {
  if (p - checkedAt > CHECK_EVERY_MS) {
    // Checked against a reading taken now: `p` may be a moment in the past (a handler's own timestamp).
    const now = performance.now();
    checkedAt = now;
    const wall = Date.now() - now;
    if (Math.abs(wall - anchorMs) > MAX_DRIFT_MS) anchorMs = wall;
  }
  return anchorMs + p;
}

export function msToHrTime(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6))];
}
