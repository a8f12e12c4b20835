import type { LimitSpec } from "./limits.js";
import { nonNegativeInt, positiveInt } from "./validate.js";

/**
 * Rate and concurrency limits of one worker (an upstream endpoint or API
 * key) or of a whole backend (DESIGN.md §11). Unset = unlimited.
 */
export interface LimitOptions {
  /** Attempts started in any sliding window of `windowMs`. */
  requestsPerMinute?: number;
  /** Tokens in any sliding window: reserved when an attempt starts, settled from its answer's usage. */
  tokensPerMinute?: number;
  /** Attempts running at once across every replica sharing the store (unlike a worker's own maxConcurrency). */
  maxConcurrency?: number;
  /** The window, ms. Default 60000 ("per minute"); shorter windows serve tests and bursty upstreams. */
  windowMs?: number;
  /** Tokens reserved for a request that does not say (max_tokens). Default 0. */
  tokenEstimate?: number;
  /** On a backend: each worker halves its concurrency on an upstream 429 and grows it back on success (AIMD; adaptive.ts). Default false. */
  adaptiveConcurrency?: boolean;
}

export interface ValidLimits {
  spec: LimitSpec;
  tokenEstimate: number;
}

/** Complete limits, or undefined when none is set; throws naming the option and the value. */
export function validateLimits(l: LimitOptions | undefined, key: string, at: string): ValidLimits | undefined {
  if (l === undefined) return undefined;
  if (typeof l !== "object" || l === null) throw new TypeError(`${at}: expected an object, got ${JSON.stringify(l)}`);
  const opt = (v: number | undefined, name: string) => (v === undefined ? undefined : positiveInt(v, `${at}.${name}`));
  const spec: LimitSpec = {
    key,
    requestsPerMinute: opt(l.requestsPerMinute, "requestsPerMinute"),
    tokensPerMinute: opt(l.tokensPerMinute, "tokensPerMinute"),
    maxConcurrency: opt(l.maxConcurrency, "maxConcurrency"),
    windowMs: positiveInt(l.windowMs ?? 60_000, `${at}.windowMs`),
  };
  const tokenEstimate = nonNegativeInt(l.tokenEstimate ?? 0, `${at}.tokenEstimate`);
  if (spec.requestsPerMinute === undefined && spec.tokensPerMinute === undefined && spec.maxConcurrency === undefined) return undefined;
  return { spec, tokenEstimate };
}
