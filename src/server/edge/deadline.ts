/**
 * Incoming deadlines, held to the server's longest before connect or any
 * timer sees them. `grpc-timeout` allows up to 99999999 hours on the wire
 * (PROTOCOL-HTTP2.md), far past what a Node timer holds (2^31-1 ms): left
 * alone, connect's own deadline timer overflows, fires at once and prints a
 * TimeoutOverflowWarning per call.
 */

/** Longest delay a Node timer holds. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const units: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };
const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;

/** The ceiling for a client's deadline: maxDeadlineMs, or the timer limit when that is 0 (no limit). */
export function deadlineCeiling(maxDeadlineMs: number): number {
  return maxDeadlineMs > 0 ? Math.min(maxDeadlineMs, MAX_TIMER_MS) : MAX_TIMER_MS;
}

/** A `grpc-timeout` value in ms; undefined for absent, NaN for malformed (connect answers those itself). */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = GRPC_TIMEOUT.exec(value);
  return m === null ? NaN : Number(m[1]) * units[m[2]!]!;
}

/** `value` unchanged when within `ceilingMs`, else the ceiling in the header's own syntax. */
export function clampGrpcTimeout(value: string, ceilingMs: number): string {
  const ms = parseGrpcTimeout(value);
  if (ms === undefined || Number.isNaN(ms) || ms <= ceilingMs) return value;
  return ceilingMs <= 99_999_999 ? `${ceilingMs}m` : `${Math.floor(ceilingMs / 1000)}S`;
}

/** The same for the Connect protocol's `connect-timeout-ms` (at most 10 digits). */
export function clampConnectTimeout(value: string, ceilingMs: number): string {
  if (!/^\d{1,10}$/.test(value)) return value;
  return Number(value) <= ceilingMs ? value : String(ceilingMs);
}

/**
 * Clamps both deadline headers in a Node header object in place (HTTP/1.1
 * and HTTP/2 alike).
 */
export function clampDeadlineHeaders(headers: Record<string, unknown>, ceilingMs: number): void {
  const g = headers["grpc-timeout"];
  if (typeof g === "string") headers["grpc-timeout"] = clampGrpcTimeout(g, ceilingMs);
  const c = headers["connect-timeout-ms"];
  if (typeof c === "string") headers["connect-timeout-ms"] = clampConnectTimeout(c, ceilingMs);
}
