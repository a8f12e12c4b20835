import { JobQueue, type QueueNode } from "./queue.js";
import { createSampleWindow, type SampleWindow } from "./window.js";

/** Whether a worker takes new jobs. A union, not flags: a worker is in exactly one state. */
export type WorkerState = "serving" | "ejected" | "draining";

/** What a selection policy may read of a worker; policies never mutate. */
export interface WorkerView {
  readonly id: string;
  readonly inflight: number;
  readonly queued: number;
  readonly maxConcurrency: number;
  readonly queueCapacity: number;
  readonly weight: number;
  readonly state: WorkerState;
}

/** One lane of a backend: its own bounded FIFO and concurrency limit. */
export class Worker<J extends QueueNode = QueueNode> implements WorkerView {
  readonly queue = new JobQueue<J>();
  /**
   * Jobs running now, in start order; kept so that shutdown can abort them,
   * and so that one timer per worker, armed for the oldest, enforces the
   * backend's timeout (all of a worker's jobs share it).
   */
  readonly running = new JobQueue<J>();
  /** The backend-timeout timer of the oldest running job; unset while none runs. */
  timeoutTimer: unknown = undefined;
  inflight = 0;
  state: WorkerState = "serving";
  /** Live session pins naming this worker. */
  sessions = 0;
  completed = 0;
  errors = 0;
  rejected = 0;
  cancelled = 0;
  ejections = 0;
  consecutiveFailures = 0;
  /** Ejections since the worker last succeeded: the next ejection lasts this many base times. */
  ejectionStreak = 0;
  /** Brings an ejected worker back; unset while it serves. */
  returnTimer: unknown = undefined;
  readonly queueWait: SampleWindow = createSampleWindow();
  readonly execution: SampleWindow = createSampleWindow();

  constructor(
    readonly id: string,
    readonly backend: string,
    readonly index: number,
    readonly maxConcurrency: number,
    readonly queueCapacity: number,
    readonly weight: number,
    readonly endpoint: string | undefined,
  ) {}

  get queued(): number {
    return this.queue.length;
  }
}

/** (inflight + queued) / (max_concurrency × weight): DESIGN.md §2, weighted per endpoint. */
export function loadOf(w: WorkerView): number {
  return (w.inflight + w.queued) / (w.maxConcurrency * w.weight);
}

/** Serving, and a free run slot or queue slot. */
export function canAdmit(w: WorkerView): boolean {
  return w.state === "serving" && (w.inflight < w.maxConcurrency || w.queued < w.queueCapacity);
}
