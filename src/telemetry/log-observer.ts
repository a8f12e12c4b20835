import type { DispatchError, DispatchObserver, JobView } from "../core/index.js";

/** The part of a pino logger this module uses. */
export interface Log {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface LogObserverOptions {
  /** Shortest time between two upstream-failure lines of one worker, in ms. Default 5000: a failing upstream fails every call. */
  failureIntervalMs?: number;
  /** Shortest time between two retry-budget lines of one backend, in ms. Default 5000. */
  budgetIntervalMs?: number;
  /** Wall-clock ms. Default Date.now. */
  now?: () => number;
}

/** Lines of one kind per key at most once per interval, each with how many it stands for. */
class Throttle {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {}

  /** How many events this line stands for (≥ 1), or 0 if it is to be left out. */
  take(key: string): number {
    const t = this.now();
    const s = this.last.get(key);
    if (s !== undefined && t - s.at < this.intervalMs) {
      s.suppressed++;
      return 0;
    }
    const count = 1 + (s?.suppressed ?? 0);
    this.last.set(key, { at: t, suppressed: 0 });
    return count;
  }
}

/**
 * Operator logs from the core's lifecycle events: a worker ejected (warn,
 * with why and for how long) or back in service (info); upstream failures
 * (warn, at most one line per worker per failureIntervalMs, with the count
 * since the last); an exhausted retry budget (warn, likewise per backend);
 * each retry (debug). Built from the same events as the metrics and spans.
 */
export function createLogObserver(log: Log, options: LogObserverOptions = {}): DispatchObserver {
  const now = options.now ?? Date.now;
  const failures = new Throttle(options.failureIntervalMs ?? 5_000, now);
  const budget = new Throttle(options.budgetIntervalMs ?? 5_000, now);

  const failed = (job: JobView, error: DispatchError, what: string) => {
    const count = failures.take(job.workerId);
    if (count === 0) return;
    log.warn(
      { backend: job.backend, worker: job.workerId, code: error.code, failures: count, attempt: job.attempt },
      `upstream failure on ${job.workerId} (${what}): ${error.message}${count > 1 ? ` (${count} failures since the last report)` : ""}`,
    );
  };

  return {
    jobRetrying(job, error, delayMs) {
      failed(job, error, "retrying");
      log.debug(
        { backend: job.backend, worker: job.workerId, attempt: job.attempt, delay_ms: Math.round(delayMs), code: error.code },
        `retrying after attempt ${job.attempt} failed on ${job.workerId}`,
      );
    },

    jobEnded(job, outcome, error, from) {
      if (from === "running" && (outcome === "error" || outcome === "timeout") && error !== undefined) {
        failed(job, error, outcome === "timeout" ? "backend timeout" : "not retried");
      }
    },

    retryDenied(job, error, reason) {
      const count = budget.take(job.backend);
      if (count === 0) return;
      log.warn(
        { backend: job.backend, worker: job.workerId, code: error.code, denied: count },
        `backend "${job.backend}": not retrying a failed call: ${reason}${count > 1 ? ` (${count} calls since the last report)` : ""}`,
      );
    },

    workerStateChanged(worker, reason, forMs) {
      if (forMs !== undefined) {
        log.warn({ worker: worker.id, reason, ejected_for_ms: forMs }, `worker ${worker.id} ejected for ${forMs} ms: ${reason}`);
      } else {
        log.info({ worker: worker.id, reason }, `worker ${worker.id} back in service (${reason})`);
      }
    },
  };
}
