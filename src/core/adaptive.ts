import type { Worker } from "./worker.js";

/**
 * Adaptive concurrency (AIMD), per worker in this process, where a backend's
 * `limits.adaptiveConcurrency` is on: an upstream 429 halves the concurrency
 * the worker runs (never below 1), at most once per recent service time (the
 * 429s of one burst are one signal, not many); each run of successes as long
 * as the current concurrency adds one back, up to the configured value. The
 * worker then runs about what its upstream sustains without 429s, where its
 * limits are unknown or shared with other clients.
 */
export interface Adaptive {
  /** The configured ceiling. */
  readonly ceiling: number;
  streak: number;
  decreasedAt: number;
}

/** An upstream 429 on `w` at `now`. */
export function adaptDown(w: Worker, now: number): void {
  const a = w.adaptive;
  if (a === undefined) return;
  if (now - a.decreasedAt < Math.max(1, w.serviceMs)) return;
  w.maxConcurrency = Math.max(1, Math.floor(w.maxConcurrency / 2));
  a.decreasedAt = now;
  a.streak = 0;
}

/** An attempt on `w` succeeded; true when the worker may now run one more. */
export function adaptUp(w: Worker): boolean {
  const a = w.adaptive;
  if (a === undefined || w.maxConcurrency >= a.ceiling) return false;
  if (++a.streak < w.maxConcurrency) return false;
  a.streak = 0;
  w.maxConcurrency++;
  return true;
}
