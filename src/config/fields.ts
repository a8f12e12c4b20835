import * as z from "zod";
import { durationMs } from "../duration.js";

/**
 * The leaf types of the config file, each with one message for every way a
 * value can fail (wrong type, fraction, out of range), so that the report says
 * what is expected rather than which check tripped. The formatter appends
 * the value received.
 */

/** An integer in [min, max]; `what` overrides the message. */
export function int(min: number, max?: number, what?: string) {
  const error = what ?? (max === undefined ? `expected an integer ≥ ${min}` : `expected an integer ${min}-${max}`);
  // A refinement rather than .int(): zod's int check aborts the parse, which would hide the cross-key rules' errors.
  const s = z.number({ error }).refine(Number.isSafeInteger, { error }).min(min, { error });
  return max === undefined ? s : s.max(max, { error });
}

/** A finite number in [min, max]. */
export function number(min: number, max?: number, what?: string) {
  const error = what ?? (max === undefined ? `expected a number ≥ ${min}` : `expected a number ${min}-${max}`);
  const s = z.number({ error }).min(min, { error });
  return max === undefined ? s : s.max(max, { error });
}

export const port = int(0, 65535, "expected a port number 0-65535");

export const nonEmptyString = z.string({ error: "expected a non-empty string" }).min(1, { error: "expected a non-empty string" });

export const bool = z.boolean({ error: "expected true or false" });

/** A duration in whole ms, at most what Node's timers can wait (see src/duration.ts). */
export const duration = z.unknown().transform((v, ctx) => {
  const r = durationMs(v);
  if ("error" in r) {
    ctx.addIssue({ code: "custom", message: r.error, input: v });
    return z.NEVER;
  }
  return r.ms;
});

/** pino's levels. */
export const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export const logLevel = z.enum(logLevels, { error: `expected one of ${logLevels.join(", ")}` });

/**
 * A mapping that refuses unknown keys. The unknown-key message carries the
 * known keys; the formatter turns it into one line per unknown key.
 */
export function table<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape).join(", ");
  return z.strictObject(shape, {
    error: (issue) => (issue.code === "unrecognized_keys" ? `${UNKNOWN}${known}` : "expected a mapping"),
  });
}

/** Prefix of an unknown-key message; what follows it is the list of known keys. */
export const UNKNOWN = "unknown key; known: ";

/** A mapping whose keys are checked elsewhere (a backend kind's `options`). */
export const mapping = z.record(z.string(), z.unknown(), { error: "expected a mapping" });
