import type { DispatchError } from "./errors.js";
import type { RetryOptions } from "./options.js";

export type RetryPolicy = Required<RetryOptions>;

/**
 * Wait before running a job again after its attempt `failed` (1 = the first
 * run) failed with `err`, in ms; -1 if it must not run again. Full jitter
 * (uniform in [0, ceiling]) spreads the retries of many callers that failed
 * together, so they do not come back as one wave. An upstream's Retry-After
 * is obeyed as stated; one longer than maxBackoffMs is not retried (as
 * Envoy's rate-limited retry back-off does): the caller hears the 429 and
 * can decide for itself.
 */
export function retryDelay(p: RetryPolicy, failed: number, err: DispatchError, random: () => number): number {
  if (!err.retryable || failed >= p.maxAttempts) return -1;
  if (err.retryAfterMs !== undefined) return err.retryAfterMs <= p.maxBackoffMs ? err.retryAfterMs : -1;
  const ceiling = Math.min(p.maxBackoffMs, p.initialBackoffMs * p.multiplier ** (failed - 1));
  return random() * ceiling;
}

/**
 * Retry budget (Envoy's `retry_budget`): one more retry is allowed while the
 * retries in progress (`retrying`: jobs waiting to retry or running a retry)
 * stay under budgetPercent of the backend's `active` jobs, or under
 * minRetryConcurrency. During an outage every job fails, so without it each
 * would be sent maxAttempts times: the budget caps the extra load at a fixed share.
 */
export function withinBudget(p: RetryPolicy, retrying: number, active: number): boolean {
  return retrying < Math.max(p.minRetryConcurrency, (active * p.budgetPercent) / 100);
}
