import type { Clock } from "./clock.js";
import type { DispatchError } from "./errors.js";
import type { OutlierOptions } from "./options.js";
import type { Worker } from "./worker.js";

export type OutlierPolicy = Required<OutlierOptions>;

/**
 * Whether an error says the worker's upstream is unwell, rather than the
 * request being wrong: what a gateway counts as a 5xx or a local failure
 * (Envoy's consecutive_5xx). A client's fault (INVALID_ARGUMENT, NOT_FOUND, …)
 * shows the upstream answering, so it ends a run of failures.
 */
export function isUpstreamFault(err: DispatchError): boolean {
  switch (err.code) {
    case "unavailable":
    case "internal":
    case "unknown":
    case "deadline_exceeded":
      return true;
    default:
      return err.retryable;
  }
}

/**
 * Counts one failed run of `w`; ejects it when the run of failures reaches
 * the policy's threshold, unless it is the last serving worker of `workers`
 * (ejecting it would turn a degraded backend into a dead one).
 */
export function noteFailure(w: Worker, workers: readonly Worker[], p: OutlierPolicy, err: DispatchError, clock: Clock): void {
  if (!isUpstreamFault(err)) {
    w.consecutiveFailures = 0;
    return;
  }
  w.consecutiveFailures++;
  if (w.consecutiveFailures < p.consecutiveFailures || w.state !== "serving") return;
  let serving = 0;
  for (const o of workers) if (o.state === "serving") serving++;
  if (serving <= 1) return;
  w.state = "ejected";
  w.ejections++;
  w.ejectionStreak++;
  w.consecutiveFailures = 0;
  // Linear growth, as Envoy: a worker that fails again at once after its return stays out longer.
  w.returnTimer = clock.setTimer(bringBack, Math.min(p.maxEjectionMs, p.baseEjectionMs * w.ejectionStreak), w);
}

/** A success ends both the run of failures and the run of ejections. */
export function noteSuccess(w: Worker): void {
  w.consecutiveFailures = 0;
  w.ejectionStreak = 0;
}

function bringBack(w: Worker): void {
  w.returnTimer = undefined;
  if (w.state === "ejected") w.state = "serving";
}

/** Cancels a pending return (close()). */
export function clearEjection(w: Worker, clock: Clock): void {
  if (w.returnTimer !== undefined) {
    clock.clearTimer(w.returnTimer);
    w.returnTimer = undefined;
  }
}
