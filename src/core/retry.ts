import type { DispatchError } from "./errors.js";
import type { Job } from "./job.js";
import type { RetryOptions } from "./options.js";
import { canAdmit, type Worker } from "./worker.js";

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

/**
 * A session that came with a live pin stays on its worker (which holds its
 * state, e.g. a prompt cache) while that worker can admit; any other job
 * prefers a worker other than the one that just failed it.
 */
export function placeRetry(job: Job, now: number, random: () => number): Worker<Job> | undefined {
  const entry = job.entry;
  const session = job.sessionId !== "" ? entry.affinity : undefined;
  const pin = session?.lookup(job.sessionId, now);
  let w: Worker<Job> | undefined;
  if (pin !== undefined && job.affinity === "hit" && canAdmit(pin.worker)) {
    w = pin.worker;
  } else {
    if (entry.workers.length > 1) {
      const others = entry.workers.filter((o) => o !== job.worker);
      w = others[entry.policy.pick(others, random)];
    }
    w ??= entry.workers[entry.policy.pick(entry.workers, random)];
    if (w === undefined) return undefined;
    if (job.affinity === "hit" && w !== pin?.worker) job.affinity = "spill";
  }
  session?.pin(job.sessionId, w, now, pin);
  return w;
}
