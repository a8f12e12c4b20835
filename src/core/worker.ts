import type { Adaptive } from "./adaptive.js";
import type { WorkerLimits } from "./capacity.js";
import { FairQueue, type FairNode, type FairPolicy } from "./fair-queue.js";
import { JobQueue } from "./queue.js";
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
  /** Moving average of recent attempts' run time, ms, and how many it has seen. */
  readonly serviceMs: number;
  readonly serviceSamples: number;
}

/** Weight of the newest service time in the worker's moving average (EWMA). */
const SERVICE_ALPHA = 0.2;
/** Service times seen before the average is trusted for admission. */
export const SERVICE_MIN_SAMPLES = 5;

/** One lane of a backend: its own bounded queue (priority tiers, tenant round-robin) and concurrency limit. */
export class Worker<J extends FairNode = FairNode> implements WorkerView {
  readonly queue: FairQueue<J>;
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
  cancelled = 0;
  ejections = 0;
  /** Moving average of how long an attempt runs here, in ms (attempts that ran to an answer or a timeout). */
  serviceMs = 0;
  serviceSamples = 0;
  /** Per tier: refused at admission, displaced, and queue-wait samples. */
  readonly rejectedByTier: number[];
  readonly displacedByTier: number[];
  readonly tierWait: SampleWindow[];
  /** Attempts streaming their answer now, and their time to first chunk. */
  streams = 0;
  readonly ttft: SampleWindow = createSampleWindow();
  consecutiveFailures = 0;
  /** Ejections since the worker last succeeded: the next ejection lasts this many base times. */
  ejectionStreak = 0;
  /** Brings an ejected worker back; unset while it serves. */
  returnTimer: unknown = undefined;
  /** Rate and concurrency limits (capacity.ts); undefined for a worker without any, whose starts cost nothing extra. */
  limits: WorkerLimits | undefined = undefined;
  /** Set where the backend adapts its concurrency to its upstream's 429s (adaptive.ts). */
  adaptive: Adaptive | undefined = undefined;
  readonly queueWait: SampleWindow = createSampleWindow();
  readonly execution: SampleWindow = createSampleWindow();

  constructor(
    readonly id: string,
    readonly backend: string,
    readonly index: number,
    /** Jobs it runs at once; adaptive concurrency (adaptive.ts) moves it between 1 and its configured value. */
    public maxConcurrency: number,
    readonly queueCapacity: number,
    readonly weight: number,
    readonly endpoint: string | undefined,
    fair: FairPolicy,
  ) {
    this.queue = new FairQueue<J>(fair);
    this.rejectedByTier = new Array<number>(fair.levels).fill(0);
    this.displacedByTier = new Array<number>(fair.levels).fill(0);
    this.tierWait = Array.from({ length: fair.levels }, () => createSampleWindow());
  }

  /** Calls refused at admission that this worker would have taken (all tiers). */
  get rejected(): number {
    return sum(this.rejectedByTier);
  }

  /** Queued jobs given up for a more urgent arrival on a full queue (all tiers). */
  get displaced(): number {
    return sum(this.displacedByTier);
  }

  /** Counts one attempt's service time in the moving average. */
  noteService(ms: number): void {
    this.serviceMs = this.serviceSamples === 0 ? ms : this.serviceMs + SERVICE_ALPHA * (ms - this.serviceMs);
    this.serviceSamples++;
  }

  /**
   * Estimated queue wait of a new job of tier `priority`, in ms: recent
   * service time × the jobs it would wait for ÷ concurrency (DESIGN.md §10);
   * undefined until enough attempts were seen to trust it.
   */
  estimateWaitMs(priority: number): number | undefined {
    if (this.serviceSamples < SERVICE_MIN_SAMPLES) return undefined;
    const waitFor = this.queue.aheadOf(priority) + this.inflight + 1 - this.maxConcurrency;
    return waitFor <= 0 ? 0 : (this.serviceMs * waitFor) / this.maxConcurrency;
  }

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

function sum(xs: readonly number[]): number {
  let n = 0;
  for (const x of xs) n += x;
  return n;
}
