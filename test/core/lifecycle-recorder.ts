import type { Clock, DispatchError, DispatchObserver, JobOutcome, JobState, JobView, WorkerView } from "../../src/core/index.js";

/** How the test's handler ended one attempt: keyed by `${job id}#${attempt}`. */
export type HandlerEnd = "ok" | "failed";

interface JobTrack {
  last: "queued" | "started" | "retrying" | "ended";
  ended: number;
  outcome?: JobOutcome;
  code?: string;
}

/**
 * An observer that checks the lifecycle as it happens: each job's events in a
 * legal order, an attempt never started past its deadline, outcomes that
 * match their cause (a client deadline only after the deadline, a backend
 * timeout only after the timeout, an error only from a handler that failed),
 * ejections only after upstream faults, and gauges kept from the events
 * alone, which must come back to zero.
 */
export class LifecycleRecorder implements DispatchObserver {
  readonly violations: string[] = [];
  readonly jobs = new Map<JobView, JobTrack>();
  /** Gauges built from the events, per worker. */
  readonly queued = new Map<string, number>();
  readonly inflight = new Map<string, number>();
  attemptsQueued = 0;
  okAnswers = 0;
  rejected = 0;
  ejections = 0;
  /** Consecutive upstream faults per worker, from the events. */
  private readonly streak = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    private readonly ids: (job: JobView) => string,
    private readonly handlerEnds: Map<string, HandlerEnd>,
    private readonly cancelledIds: Set<string>,
    private readonly closing: () => boolean,
    private readonly slackMs: number,
    private readonly ejectAfter: number,
  ) {}

  private bad(job: JobView, msg: string): void {
    if (this.violations.length < 20) this.violations.push(`${this.ids(job)} attempt ${job.attempt}: ${msg}`);
  }

  private add(m: Map<string, number>, k: string, d: number): void {
    m.set(k, (m.get(k) ?? 0) + d);
  }

  jobQueued(job: JobView): void {
    const t = this.jobs.get(job);
    if (t === undefined) this.jobs.set(job, { last: "queued", ended: 0 });
    else if (t.last !== "retrying") this.bad(job, `queued after ${t.last}`);
    else t.last = "queued";
    if (job.state !== "queued") this.bad(job, `jobQueued in state ${job.state}`);
    this.attemptsQueued++;
    this.add(this.queued, job.workerId, 1);
  }

  jobStarted(job: JobView): void {
    const t = this.jobs.get(job);
    if (t?.last !== "queued") this.bad(job, `started after ${t?.last}`);
    else t.last = "started";
    const deadline = (job as unknown as { deadline: number }).deadline;
    // In the core's own time: the start it recorded.
    if (job.startedAt >= deadline) this.bad(job, "started past its deadline");
    this.add(this.queued, job.workerId, -1);
    this.add(this.inflight, job.workerId, 1);
  }

  jobRetrying(job: JobView, error: DispatchError): void {
    const t = this.jobs.get(job);
    if (t?.last !== "started") this.bad(job, `retrying after ${t?.last}`);
    else t.last = "retrying";
    // A stream's first-chunk or stall timeout fails the attempt before its handler hears of it.
    if (this.handlerEnds.get(`${this.ids(job)}#${job.attempt}`) !== "failed" && error.abortReason !== "timeout") {
      this.bad(job, "retried though its handler did not fail");
    }
    if (!error.retryable) this.bad(job, `retried a non-retryable ${error.code}`);
    this.add(this.inflight, job.workerId, -1);
    this.fault(job.workerId, error);
  }

  jobEnded(job: JobView, outcome: JobOutcome, error: DispatchError | undefined, from: JobState): void {
    const t = this.jobs.get(job);
    if (t === undefined) {
      this.bad(job, "ended but never queued");
      return;
    }
    t.ended++;
    if (t.ended > 1) this.bad(job, "ended twice");
    const expectedFrom = { queued: "queued", started: "running", retrying: "backoff", ended: "?" }[t.last];
    if (from !== expectedFrom) this.bad(job, `ended from ${from} after ${t.last}`);
    t.last = "ended";
    t.outcome = outcome;
    t.code = error?.code;
    if (from === "queued") this.add(this.queued, job.workerId, -1);
    if (from === "running") this.add(this.inflight, job.workerId, -1);
    const now = this.clock.now();
    const id = this.ids(job);
    const deadline = (job as unknown as { deadline: number }).deadline;
    const timeoutMs = (job as unknown as { entry: { timeoutMs: number } }).entry.timeoutMs;
    const handler = this.handlerEnds.get(`${id}#${job.attempt}`);
    switch (outcome) {
      case "ok":
        this.okAnswers++;
        if (from !== "running" || handler !== "ok") this.bad(job, `ok from ${from} with handler ${handler}`);
        if (from === "running") this.streak.set(job.workerId, 0);
        break;
      case "deadline_exceeded":
        if (error?.code !== "deadline_exceeded") this.bad(job, `deadline outcome with code ${error?.code}`);
        // Early by the timer's slack at most; or a client cancel in the last moments before the deadline (the core's
        // CANCEL_AT_DEADLINE_MS: clients reset their call when their own copy of the deadline passes).
        if (!(now >= deadline - this.slackMs) && !(this.cancelledIds.has(id) && now >= deadline - 20)) {
          this.bad(job, `deadline_exceeded ${deadline - now} ms before the deadline`);
        }
        break;
      case "timeout":
        if (from !== "running" || error?.code !== "deadline_exceeded") this.bad(job, `timeout from ${from}, code ${error?.code}`);
        if (!(timeoutMs > 0 && now >= job.startedAt + timeoutMs - this.slackMs)) this.bad(job, "timeout before the backend's timeout");
        if (now >= deadline) this.bad(job, "a passed client deadline reported as a backend timeout");
        this.fault(job.workerId, error!);
        break;
      case "error":
        if (from === "running") {
          if (handler !== "failed" && error?.abortReason !== "timeout") this.bad(job, `error though the handler ${handler ?? "had not ended"}`);
          this.fault(job.workerId, error!);
        } else if (from !== "backoff") this.bad(job, `error from ${from}`);
        break;
      case "cancelled":
        if (!this.cancelledIds.has(id) || error?.code !== "cancelled") this.bad(job, "cancelled without a client cancel");
        if (now > deadline - 20) this.bad(job, "cancelled at its deadline: that is a deadline");
        break;
      case "displaced":
        if (from !== "queued" || error?.code !== "resource_exhausted") this.bad(job, `displaced from ${from} with ${error?.code}`);
        break;
      case "shutdown":
        if (!this.closing() || error?.code !== "unavailable") this.bad(job, "shutdown outcome outside close()");
        break;
    }
  }

  jobRejected(): void {
    this.rejected++;
  }

  workerStateChanged(w: WorkerView, _reason: string, forMs: number | undefined): void {
    if (forMs === undefined) return;
    this.ejections++;
    // The ejecting fault is charged before its event reaches observers: one more than the streak seen.
    if ((this.streak.get(w.id) ?? 0) + 1 < this.ejectAfter) {
      this.violations.push(`${w.id} ejected after ${this.streak.get(w.id) ?? 0} faults in a row`);
    }
    this.streak.set(w.id, 0);
  }

  private fault(workerId: string, err: DispatchError): void {
    const fault = ["unavailable", "internal", "unknown", "deadline_exceeded"].includes(err.code) || err.retryable;
    this.streak.set(workerId, fault ? (this.streak.get(workerId) ?? 0) + 1 : 0);
  }

  gaugesAtZero(): boolean {
    return [...this.queued.values(), ...this.inflight.values()].every((v) => v === 0);
  }
}
