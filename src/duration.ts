/** Parses a config duration: a number of milliseconds, or a string like "250ms", "1.5s", "10m", "1h". */
export function parseDuration(v: unknown, what: string): number {
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) return v;
  if (typeof v === "string") {
    const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(v.trim());
    if (m) return Math.round(Number(m[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"]);
  }
  throw new TypeError(`${what}: expected a duration such as 500ms, 30s, 10m or a number of ms, got ${JSON.stringify(v)}`);
}
