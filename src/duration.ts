/**
 * The longest wait Node's timers support: setTimeout() with more than
 * 2^31−1 ms warns and fires after 1 ms instead, so a `timeout: 600h` would
 * re-arm every millisecond. Durations above it are config errors rather than
 * being capped silently: a cap would change what the operator wrote without
 * saying so, and every duration that means "no limit" has its own 0.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const FORMAT = "expected a duration such as 500ms, 30s, 10m, 1h or a whole number of ms";
const TOO_LONG = `expected at most 24.8 days (${MAX_DURATION_MS} ms, the longest a Node.js timer can wait)`;

/**
 * A config duration in whole ms: a number of milliseconds, or a string like
 * "250ms", "1.5s", "10m", "1h" (or bare digits, as environment variables
 * come). Returns the ms, or the reason it is not one.
 */
export function durationMs(v: unknown): { ms: number } | { error: string } {
  let ms: number | undefined;
  if (typeof v === "number") {
    // Whole ms: the core's timers take integers, and a fraction of a ms is never what was meant.
    if (Number.isInteger(v) && v >= 0) ms = v;
  } else if (typeof v === "string") {
    const t = v.trim();
    const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(t);
    if (m) ms = Math.round(Number(m[1]) * UNITS[m[2] as keyof typeof UNITS]);
    else if (/^\d+$/.test(t)) ms = Number(t);
  }
  if (ms === undefined || !Number.isFinite(ms)) return { error: FORMAT };
  if (ms > MAX_DURATION_MS) return { error: TOO_LONG };
  return { ms };
}

/** As durationMs, throwing a TypeError that names `what` and the value received. */
export function parseDuration(v: unknown, what: string): number {
  const r = durationMs(v);
  if ("error" in r) throw new TypeError(`${what}: ${r.error} (got ${JSON.stringify(v)})`);
  return r.ms;
}
