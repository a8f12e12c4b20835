/**
 * Background jobs (DESIGN.md §12): the store interface the core owns. A job
 * is accepted into a store, claimed by a runner on some replica, run through
 * the dispatcher like any Submit, and its terminal state written once. The
 * request and result are opaque bytes (the transport's encoding): the store
 * keeps them, never reads them. In process by default (local-job-store.ts,
 * lost on restart); durable in Redis (src/cluster/redis-jobs.ts).
 */

export type AsyncJobState = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "expired";

export function isTerminal(s: AsyncJobState): boolean {
  return s !== "queued" && s !== "running";
}

/** A job as the store keeps it. Times are epoch ms; 0 = not yet. */
export interface AsyncJob {
  id: string;
  backend: string;
  state: AsyncJobState;
  /** The request as the client sent it. */
  request: Uint8Array;
  idempotencyKey: string;
  createdAt: number;
  /** When it expires if not finished. */
  deadline: number;
  startedAt: number;
  finishedAt: number;
  /** Runs begun: each claim by a runner (a replica that died running it costs one). */
  attempts: number;
  workerId: string;
  /** The answer, when it succeeded. */
  result: Uint8Array | undefined;
  /** A DispatchError code and message, when it did not. */
  errorCode: string;
  errorMessage: string;
  /** CancelJob asked a running job to stop; its runner does. */
  cancelRequested: boolean;
  /** The W3C traceparent of the Enqueue call, so that the run's span can link to it; "" for none. */
  traceparent: string;
}

/** One event of a job: a state entered, or a chunk of a streamed answer. Ids are opaque and ordered. */
export interface AsyncJobEvent {
  id: string;
  time: number;
  state?: AsyncJobState;
  chunk?: Uint8Array;
}

export interface NewAsyncJob {
  backend: string;
  request: Uint8Array;
  idempotencyKey: string;
  deadline: number;
  traceparent: string;
}

/** How a run ended, written once. */
export interface AsyncJobOutcome {
  state: "succeeded" | "failed" | "cancelled" | "expired";
  result?: Uint8Array;
  errorCode?: string;
  errorMessage?: string;
}

/** A job a runner holds: the job, and the store's handle for its claim. */
export interface ClaimedJob {
  job: AsyncJob;
  claim: string;
}

export interface JobStore {
  /** Accepts a job, or returns the job already holding its idempotency key; refuses past the backend's cap of queued jobs. */
  enqueue(job: NewAsyncJob, maxQueued: number): Promise<{ id: string; created: boolean } | { refused: string }>;
  get(id: string): Promise<AsyncJob | undefined>;
  /** Ends a queued job at once (cancelled); marks a running one for its runner to stop. Unknown → undefined. */
  cancel(id: string): Promise<AsyncJob | undefined>;
  /** Events after `afterId` (all when undefined), at most `max`, with the job; undefined when the job is unknown. */
  events(id: string, afterId: string | undefined, max: number): Promise<{ events: AsyncJobEvent[]; job: AsyncJob } | undefined>;
  /** Whether `afterId` could be an event id of this store (a client's resume point is checked before use). */
  validEventId(afterId: string): boolean;
  /** Jobs for this replica to run: queued ones, and those whose runner stopped renewing (died). Waits up to `waitMs` for one. */
  claim(max: number, waitMs: number): Promise<ClaimedJob[]>;
  /** The run begins on `workerId`; false when the job is already ended or cancelled (the runner then drops it). */
  started(c: ClaimedJob, workerId: string): Promise<boolean>;
  /** Appends a chunk of the streamed answer. */
  chunk(c: ClaimedJob, chunk: Uint8Array): Promise<void>;
  /** Writes the terminal state unless one was written; true when this call wrote it. Releases the claim. */
  finish(c: ClaimedJob, outcome: AsyncJobOutcome): Promise<boolean>;
  /** Tells `fn` at once of each running job whose cancel is requested, where the store can (in process). */
  onCancel?(fn: (id: string) => void): void;
  /** Renews the claims of running jobs; returns the ids of those whose cancel was requested. */
  keepAlive(claims: readonly ClaimedJob[]): Promise<string[]>;
  /** Jobs kept, by backend and state (for metrics). */
  counts(): Promise<Record<string, Partial<Record<AsyncJobState, number>>>>;
  close(): Promise<void>;
}
