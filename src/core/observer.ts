import type { DispatchError } from "./errors.js";

/** How a session's pin was used for one job. */
export type AffinityOutcome = "hit" | "miss" | "spill" | "none";

/** How a job ended. */
export type JobOutcome =
  | "ok"
  | "error" // the handler failed
  | "timeout" // the handler ran past its backend's timeoutMs
  | "cancelled" // the client went away
  | "deadline_exceeded" // the call's deadline passed, queued or running
  | "shutdown"; // close() ran out of grace

/** A read-only view of a job, handed to observers. `tag` is the observer's own slot (e.g. its span). */
export interface JobView {
  readonly backend: string;
  readonly workerId: string;
  readonly sessionId: string;
  readonly affinity: AffinityOutcome;
  readonly attempt: number;
  /** Clock milliseconds. */
  readonly admittedAt: number;
  readonly startedAt: number;
  readonly endedAt: number;
  tag: unknown;
}

/**
 * The core's telemetry seam: the core calls these synchronously on the submit
 * path, so implementations must be cheap and must not throw. No-op by default;
 * src/telemetry implements it with OpenTelemetry.
 */
export interface DispatchObserver {
  /** A job was accepted by a worker (queued, or about to start at once). */
  jobAdmitted?(job: JobView): void;
  /** A job left the queue and its handler is about to run. */
  jobStarted?(job: JobView): void;
  /**
   * Runs the handler call; lets telemetry make the run span the active
   * context so the backend's own spans and outgoing requests are its children.
   */
  runHandler?<T>(job: JobView, call: () => T): T;
  /** Writes trace propagation headers of the job's run into `carrier` (HandlerContext.traceHeaders). */
  injectHeaders?(job: JobView, carrier: Record<string, string>): void;
  /**
   * A job's run failed with a retryable error and it will run again after
   * `delayMs`; `job.attempt` is already the next attempt's number. jobStarted
   * follows for the retry; jobEnded comes once, for the job's final outcome.
   */
  jobRetrying?(job: JobView, error: DispatchError, delayMs: number): void;
  /** A job settled (once). `error` is set unless the outcome is "ok". */
  jobEnded?(job: JobView, outcome: JobOutcome, error: DispatchError | undefined): void;
  /** A submit was refused before any worker accepted it. */
  jobRejected?(backend: string, workerId: string | undefined, error: DispatchError): void;
}

export const noopObserver: DispatchObserver = {};
