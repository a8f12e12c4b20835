import type { Clock } from "./clock.js";
import type { DispatchError } from "./errors.js";
import type { OutlierOptions } from "./options.js";
import type { Worker } from "./worker.js";

export type OutlierPolicy = Required<OutlierOptions>;

/** Told when a worker is ejected (with for how long, in ms) or comes back (forMs undefined). */
export type EjectionListener = (w: Worker, reason: string, forMs: number | undefined) => void;

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
 * Counts one failed attempt of `w` (an upstream fault or a backend timeout);
 * ejects it when the run of failures reaches the policy's threshold, unless
 * that would eject more than maxEjectionPercent of `workers` (at least one
 * may go, as Envoy's max_ejection_percent) or leave none serving: ejecting
 * the last one would turn a degraded backend into a dead one.
 */
export function noteFailure(
  w: Worker,
  workers: readonly Worker[],
  p: OutlierPolicy,
  err: DispatchError,
  clock: Clock,
  listener: EjectionListener,
): void {
  if (!isUpstreamFault(err)) {
    w.consecutiveFailures = 0;
    return;
  }
  w.consecutiveFailures++;
  if (w.consecutiveFailures < p.consecutiveFailures || w.state !== "serving") return;
  let serving = 0;
  let ejected = 0;
  for (const o of workers) {
    if (o.state === "serving") serving++;
    else if (o.state === "ejected") ejected++;
  }
  const allowed = Math.max(1, Math.floor((workers.length * p.maxEjectionPercent) / 100));
  if (serving <= 1 || ejected + 1 > allowed) return;
  w.state = "ejected";
  w.ejections++;
  w.ejectionStreak++;
  const failures = w.consecutiveFailures;
  w.consecutiveFailures = 0;
  // Linear growth, as Envoy: a worker that fails again at once after its return stays out longer.
  const ms = Math.min(p.maxEjectionMs, p.baseEjectionMs * w.ejectionStreak);
  w.returnTimer = clock.setTimer(() => bringBack(w, listener), ms, undefined);
  listener(w, `${failures} upstream faults in a row, the last: ${err.code}: ${err.message}`, ms);
}

/** A success ends both the run of failures and the run of ejections. */
export function noteSuccess(w: Worker): void {
  w.consecutiveFailures = 0;
  w.ejectionStreak = 0;
}

function bringBack(w: Worker, listener: EjectionListener): void {
  w.returnTimer = undefined;
  if (w.state !== "ejected") return;
  w.state = "serving";
  listener(w, "ejection time over", undefined);
}

/** Cancels a pending return (close()). */
export function clearEjection(w: Worker, clock: Clock): void {
  if (w.returnTimer !== undefined) {
    clock.clearTimer(w.returnTimer);
    w.returnTimer = undefined;
  }
}
