import type { AsyncResource } from "node:async_hooks";
import type { AffinityTable } from "./affinity.js";
import type { TimerHandle } from "./clock.js";
import type { JobResult } from "./dispatcher.js";
import type { OutlierPolicy } from "./ejection.js";
import type { DispatchError } from "./errors.js";
import type { Handler, HandlerResult, Payload } from "./handler.js";
import type { JobRun } from "./job-run.js";
import type { CapacityLease } from "./limits.js";
import type { PinStore } from "./pins.js";
import type { FairNode, Lane } from "./fair-queue.js";
import type { AffinityOutcome, DispatchObserver, JobState, JobView } from "./observer.js";
import type { SelectionPolicy } from "./policy.js";
import type { QueueNode } from "./queue.js";
import type { ValidSchedulingOptions } from "./options.js";
import type { RetryPolicy } from "./retry.js";
import type { StreamSink } from "./stream.js";
import type { Worker } from "./worker.js";

/** What a job calls back into: the lifecycle that owns it (src/core/lifecycle.ts). */
export interface JobOwner {
  readonly observer: DispatchObserver;
  /** The client's signal aborted. */
  clientCancelled(job: Job): void;
  /** The job's deadline timer fired. */
  deadlinePassed(job: Job): void;
  /** The job's backoff timer fired. */
  backoffOver(job: Job): void;
}

/** A registered backend, as the dispatcher keeps it. */
export interface BackendEntry {
  name: string;
  handler: Handler;
  workers: Worker<Job>[];
  policy: SelectionPolicy;
  affinity: AffinityTable<Worker<Job>> | undefined;
  /** Where pins are also kept for other replicas (pins.ts); undefined without one, or without affinity. */
  pinStore: PinStore | undefined;
  /** 0 = a pin spills only when its worker cannot admit. */
  spillLoadFactor: number;
  timeoutMs: number;
  retry: RetryPolicy | undefined;
  outlier: OutlierPolicy | undefined;
  scheduling: ValidSchedulingOptions;
  /** Streams: longest wait for an attempt's first chunk, and between chunks, in ms (0 = none). */
  firstChunkTimeoutMs: number;
  stallTimeoutMs: number;
  close: (() => void | Promise<void>) | undefined;
  /** Tokens a request asks for (its max_tokens), for token limits; undefined = the backend cannot tell. */
  tokensFor: ((payload: Payload) => number | undefined) | undefined;
  /** BackendOptions.ambientTrace: the handler runs through observer.runHandler. */
  ambientTrace: boolean;
  /** Jobs of this backend admitted and not settled (the retry budget's base). */
  active: number;
  /** Of those, jobs that have failed an attempt and are waiting to retry or running a retry. */
  retrying: number;
}

/**
 * One Submit from admission to result. A class so that it can be its own
 * queue node, abort listener (handleEvent) and timer argument: the submit
 * path allocates no closures for those. Its state changes only in
 * Lifecycle.transition().
 */
/**
 * What the core needs of a caller's cancellation: an AbortSignal has it, and
 * a transport can offer it without one (the edge's fast path makes no
 * AbortController per call). A listener is an object (Job.handleEvent).
 */
export interface AbortListener {
  handleEvent(event: unknown): void;
}

export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: AbortListener): void;
  removeEventListener(type: "abort", listener: AbortListener): void;
}

export class Job implements JobView, FairNode {
  prev: QueueNode | null = null;
  next: QueueNode | null = null;
  /** Links of the tier's arrival-order list and the tenant lane, while queued (fair-queue.ts). */
  aprev: FairNode | null = null;
  anext: FairNode | null = null;
  lane: Lane | undefined = undefined;
  /** The queue wait estimated at admission, in ms, where the worker had an estimate. */
  predictedWaitMs: number | undefined = undefined;
  state: JobState = "new";
  attempt = 1;
  /** Attempts that failed and were retried; > 0 means the job holds a share of the retry budget. */
  retries = 0;
  queuedAt: number;
  startedAt = 0;
  endedAt = 0;
  /** The failure a job waiting to retry is retrying from. */
  lastError: DispatchError | undefined = undefined;
  tag: unknown = undefined;
  /**
   * The one timer of the job's state: its deadline while queued or running,
   * its backoff while backing off. Which one is set by the callback it was
   * armed with (onDeadline, onBackoffOver), never re-read from the clock.
   */
  timer: TimerHandle | undefined = undefined;
  /** The current attempt's run while running; a settled or retried run is no longer it. */
  run: JobRun | undefined = undefined;
  /** The capacity the running attempt holds under its worker's limits; released when the attempt ends. */
  lease: CapacityLease | undefined = undefined;
  /** What the handler returned (for "ok"). */
  result: HandlerResult | undefined = undefined;
  /** Where a SubmitStream caller reads the job's events; undefined for Submit. */
  sink: StreamSink | undefined = undefined;
  /** Chunks the current attempt pulled, and when its first came (clock ms; 0 for none). */
  chunks = 0;
  firstChunkAt = 0;
  /**
   * The async context the job was submitted from (tracing); set only when it
   * had to queue or may retry. An AsyncResource, not AsyncLocalStorage.snapshot():
   * on Node 20 snapshot() binds through a deprecation wrapper that cost ~35 %
   * of a queued submit (bench/ core suite profile).
   */
  context: AsyncResource | undefined = undefined;
  /** SubmitOptions.traceParent. */
  traceParent: unknown = undefined;
  resolve!: (r: JobResult) => void;
  reject!: (e: DispatchError) => void;

  constructor(
    readonly owner: JobOwner,
    readonly entry: BackendEntry,
    /** The worker of the current attempt; changes only when a retry moves the job. */
    public worker: Worker<Job>,
    public affinity: AffinityOutcome,
    readonly sessionId: string,
    readonly payload: Payload,
    readonly metadata: Record<string, string>,
    readonly clientSignal: CancelSignal | undefined,
    /** Clock ms; Infinity for none. */
    readonly deadline: number,
    readonly admittedAt: number,
    /** Tier, 0 = most urgent, within the backend's levels. */
    readonly priority: number,
    /** "" when the call names none. */
    readonly tenant: string,
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
    this.owner.clientCancelled(this);
  }
}

export function onDeadline(job: Job): void {
  job.timer = undefined;
  job.owner.deadlinePassed(job);
}

export function onBackoffOver(job: Job): void {
  job.timer = undefined;
  job.owner.backoffOver(job);
}
