import type { ChunkStream, HandlerContext, HandlerResult } from "./handler.js";
import type { Job } from "./job.js";
import { LazyAbortController } from "./lazy-abort.js";
import type { Worker } from "./worker.js";

/**
 * One run (attempt) of a job: the handler's context and the controller of
 * its signal in one object, with its accessors on the prototype. The
 * `bench/` core profile showed a context literal with a getter and two
 * closures per started job among the main sources of garbage.
 *
 * A run is fixed at its start: a handler that outlives its attempt (the job
 * retried elsewhere) keeps seeing its own worker, attempt and signal.
 */
export class JobRun extends LazyAbortController implements HandlerContext {
  /** What the handler returned or threw, while the run waits to be settled (sync handlers). */
  outcome: HandlerResult | unknown = undefined;
  threw = false;
  readonly attempt: number;
  readonly deadline: number | undefined;

  constructor(
    readonly job: Job,
    readonly worker: Worker<Job>,
    now: number,
  ) {
    super();
    this.attempt = job.attempt;
    // Clock ms → epoch ms, read only when the call has a deadline.
    this.deadline = job.deadline === Infinity ? undefined : Date.now() + (job.deadline - now);
  }

  get workerId(): string {
    return this.worker.id;
  }

  get endpoint(): string | undefined {
    return this.worker.endpoint;
  }

  get sessionId(): string {
    return this.job.sessionId;
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.job.metadata;
  }

  traceHeaders(): Record<string, string> {
    const carrier: Record<string, string> = {};
    this.job.owner.observer.injectHeaders?.(this.job, carrier);
    return carrier;
  }
}

/** Calls the job's handler with `run` as its context, through the observer's wrapper only if it has one. */
export function callHandler(run: JobRun): Promise<HandlerResult | ChunkStream> | HandlerResult | ChunkStream {
  const job = run.job;
  const observer = job.owner.observer;
  if (observer.runHandler === undefined || !job.entry.ambientTrace) return job.entry.handler(job.payload, run);
  return observer.runHandler(job, () => job.entry.handler(job.payload, run));
}
