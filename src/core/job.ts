import type { AsyncResource } from "node:async_hooks";
import type { AffinityTable } from "./affinity.js";
import type { TimerHandle } from "./clock.js";
import type { JobResult } from "./dispatcher.js";
import type { OutlierPolicy } from "./ejection.js";
import { DispatchError } from "./errors.js";
import type { Handler, Payload } from "./handler.js";
import type { JobRun } from "./job-run.js";
import type { AffinityOutcome, DispatchObserver, JobOutcome, JobView } from "./observer.js";
import type { SelectionPolicy } from "./policy.js";
import type { QueueNode } from "./queue.js";
import type { RetryPolicy } from "./retry.js";
import type { Worker } from "./worker.js";

/** What a job calls back into: the dispatcher that admitted it. */
export interface JobOwner {
  readonly observer: DispatchObserver;
  fail(job: Job, outcome: JobOutcome, err: DispatchError): void;
  timerFired(job: Job): void;
}

/** A registered backend, as the dispatcher keeps it. */
export interface BackendEntry {
  name: string;
  handler: Handler;
  workers: Worker<Job>[];
  policy: SelectionPolicy;
  affinity: AffinityTable<Worker<Job>> | undefined;
  /** 0 = a pin spills only when its worker cannot admit. */
  spillLoadFactor: number;
  timeoutMs: number;
  retry: RetryPolicy | undefined;
  outlier: OutlierPolicy | undefined;
  close: (() => void | Promise<void>) | undefined;
  /** Jobs of this backend admitted and not settled (the retry budget's base). */
  active: number;
  /** Of those, jobs waiting to retry or running a retry. */
  retrying: number;
}

/** "backoff": between a failed attempt and its retry; on no worker's list. */
export type JobState = "queued" | "running" | "backoff" | "done";

/**
 * One Submit from admission to result. A class so that it can be its own
 * queue node, abort listener (handleEvent) and timer argument: the submit
 * path allocates no closures for those.
 */
export class Job implements JobView, QueueNode {
  prev: QueueNode | null = null;
  next: QueueNode | null = null;
  state: JobState = "queued";
  attempt = 1;
  /** Clock ms at which the job joined its current worker's queue. */
  queuedAt: number;
  /** The failure a job waiting to retry is retrying from. */
  lastError: DispatchError | undefined = undefined;
  startedAt = 0;
  endedAt = 0;
  tag: unknown = undefined;
  timer: TimerHandle | undefined = undefined;
  /** The current run, while the job is running; a settled or retried run is no longer it. */
  controller: JobRun | undefined = undefined;
  /**
   * The async context the job was submitted from (tracing); set only when it
   * had to queue or may retry. An AsyncResource, not AsyncLocalStorage.snapshot():
   * on Node 20 snapshot() binds through a deprecation wrapper that cost ~35 %
   * of a queued submit (bench/ core suite profile).
   */
  context: AsyncResource | undefined = undefined;
  resolve!: (r: JobResult) => void;
  reject!: (e: DispatchError) => void;

  constructor(
    readonly owner: JobOwner,
    readonly entry: BackendEntry,
    /** Changes only when a retry moves the job. */
    public worker: Worker<Job>,
    public affinity: AffinityOutcome,
    readonly sessionId: string,
    readonly payload: Payload,
    readonly metadata: Record<string, string>,
    readonly clientSignal: AbortSignal | undefined,
    /** Clock ms; Infinity for none. */
    readonly deadline: number,
    readonly admittedAt: number,
  ) {
    this.queuedAt = admittedAt;
  }

  get backend(): string {
    return this.entry.name;
  }

  get workerId(): string {
    return this.worker.id;
  }

  /** The client's signal aborted. */
  handleEvent(): void {
    this.owner.fail(this, "cancelled", new DispatchError("cancelled", "the client cancelled the call"));
  }
}

export function onTimer(job: Job): void {
  job.timer = undefined;
  job.owner.timerFired(job);
}
