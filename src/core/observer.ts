import type { DispatchError } from "./errors.js";
import type { HandlerResult } from "./handler.js";
import type { WorkerView } from "./worker.js";

/** How a session's pin was used for one job. */
export type AffinityOutcome = "hit" | "miss" | "spill" | "none";

/**
 * How a job, or one attempt of it, ended. Exact: each has one cause, and only
 * "error" (an upstream fault) and "timeout" feed outlier ejection.
 */
export type JobOutcome =
  | "ok"
  | "error" // the handler failed
  | "timeout" // the handler ran past its backend's timeoutMs (DEADLINE_EXCEEDED, an upstream fault)
  | "cancelled" // the client cancelled or went away
  | "deadline_exceeded" // the client's deadline passed, queued or running
  | "shutdown" // close() ran out of grace, or ended a job waiting to retry
  | "displaced"; // given up, queued, for a more urgent call on a full queue (RESOURCE_EXHAUSTED)

/** Where a job is: the states of the lifecycle (src/core/lifecycle.ts). */
export type JobState = "new" | "queued" | "running" | "backoff" | "settled";

/** A read-only view of a job, handed to observers. `tag` is the observer's own slot (e.g. its span). */
export interface JobView {
  readonly backend: string;
  /** The worker of the current attempt (for jobRetrying and jobEnded: the one that ran the attempt that ended). */
  readonly workerId: string;
  readonly sessionId: string;
  readonly affinity: AffinityOutcome;
  /** 1 for the first attempt, 2 for the first retry, … */
  readonly attempt: number;
  readonly state: JobState;
  /** Tier, 0 = most urgent. */
  readonly priority: number;
  /** "" when the call names none. */
  readonly tenant: string;
  /** The queue wait estimated at admission, in ms, where the worker had an estimate (compare with the actual wait). */
  readonly predictedWaitMs: number | undefined;
  /** Chunks the current attempt pulled from a streaming handler, and when the first came (clock ms; 0 for none). */
  readonly chunks: number;
  readonly firstChunkAt: number;
  /** In jobEnded with "ok": what the handler answered (a stream's final metadata for SubmitStream). */
  readonly result: HandlerResult | undefined;
  /** Clock milliseconds. */
  readonly admittedAt: number;
  /** When the current attempt joined its worker's queue. */
  readonly queuedAt: number;
  /** When the current (or last) attempt started running; 0 if none did. */
  readonly startedAt: number;
  /** When the job settled; in jobRetrying, when the failed attempt ended. */
  readonly endedAt: number;
  /** SubmitOptions.traceParent: the caller's trace context, opaque to the core. */
  readonly traceParent: unknown;
  tag: unknown;
}

/**
 * The core's telemetry seam. Every event is emitted by exactly one lifecycle
 * transition (src/core/lifecycle.ts), so spans, counters, gauges and logs
 * built from them agree with what clients saw. Per job: jobQueued and
 * jobStarted for each attempt, jobRetrying between attempts, jobEnded once.
 * The core calls these synchronously on the submit path: implementations must
 * be cheap. One that throws is reported through DispatcherOptions.onError and
 * never strands a job.
 */
export interface DispatchObserver {
  /** An attempt joined a worker's queue (the first at admission, later ones after a backoff). */
  jobQueued?(job: JobView): void;
  /** An attempt left the queue and its handler is about to run. */
  jobStarted?(job: JobView): void;
  /**
   * Runs the handler call; lets telemetry make the run span the active
   * context so the backend's own spans and outgoing requests are its children.
   */
  runHandler?<T>(job: JobView, call: () => T): T;
  /** Writes trace propagation headers of the job's run into `carrier` (HandlerContext.traceHeaders). */
  injectHeaders?(job: JobView, carrier: Record<string, string>): void;
  /**
   * The running attempt failed with `error` and the job runs again after
   * `delayMs`. `job.workerId` and `job.attempt` are still the failed
   * attempt's; jobQueued follows when the backoff is over.
   */
  jobRetrying?(job: JobView, error: DispatchError, delayMs: number): void;
  /**
   * A job settled (once). `from` is the state it left: "queued" or "running"
   * end an attempt on `job.workerId`; "backoff" means no attempt was live.
   * `error` is set unless the outcome is "ok".
   */
  jobEnded?(job: JobView, outcome: JobOutcome, error: DispatchError | undefined, from: JobState): void;
  /** A streaming attempt pulled a chunk from its handler; `job.chunks` is 1 for the first (time to first chunk). */
  jobChunk?(job: JobView): void;
  /**
   * A submit was refused before any worker accepted it; `call` gives its tier and tenant where they were known,
   * `traceParent` the caller's trace context (SubmitOptions.traceParent).
   */
  jobRejected?(backend: string, workerId: string | undefined, error: DispatchError, call?: { priority: number; tenant: string }, traceParent?: unknown): void;
  /** A worker left selection (ejected, for `forMs`) or came back (`forMs` undefined). */
  workerStateChanged?(worker: WorkerView, reason: string, forMs: number | undefined): void;
  /** A failed attempt was not retried though the backend retries: why (e.g. "retry budget exhausted"). */
  retryDenied?(job: JobView, error: DispatchError, reason: string): void;
}

export const noopObserver: DispatchObserver = {};

/**
 * One observer that calls each of `observers` in order (telemetry and logs
 * side by side). Only the events some observer has are defined, so the core
 * still skips the others. runHandler wraps the call in each one's, the first
 * outermost.
 */
export function combineObservers(...observers: DispatchObserver[]): DispatchObserver {
  const list = observers.filter((o) => Object.keys(o).length > 0 || Object.getPrototypeOf(o) !== Object.prototype);
  if (list.length === 1) return list[0]!;
  const out: DispatchObserver = {};
  const events = [
    "jobQueued", "jobStarted", "injectHeaders", "jobChunk", "jobRetrying", "jobEnded", "jobRejected", "workerStateChanged",
    "retryDenied",
  ] as const;
  for (const name of events) {
    const fns = list.map((o) => o[name]?.bind(o)).filter((f) => f !== undefined) as ((...a: unknown[]) => void)[];
    if (fns.length === 0) continue;
    (out as Record<string, unknown>)[name] = (...args: unknown[]) => {
      for (const f of fns) f(...args);
    };
  }
  const wrappers = list.map((o) => o.runHandler?.bind(o)).filter((f) => f !== undefined);
  if (wrappers.length > 0) {
    out.runHandler = <T>(job: JobView, call: () => T): T =>
      wrappers.reduceRight<() => T>((inner, wrap) => () => wrap(job, inner), call)();
  }
  return out;
}
