import { adaptUp } from "./adaptive.js";
import type { CapacityGate } from "./capacity.js";
import { tokensUsed } from "./capacity.js";
import type { Clock } from "./clock.js";
import { noteFailure, noteSuccess, type EjectionListener } from "./ejection.js";
import { DispatchError } from "./errors.js";
import type { HandlerResult } from "./handler.js";
import { onBackoffOver, onDeadline, type BackendEntry, type Job, type JobOwner } from "./job.js";
import type { DispatchObserver, JobOutcome, JobState } from "./observer.js";
import { JobQueue } from "./queue.js";
import type { Worker } from "./worker.js";

/**
 * Within this many ms of a backend timeout counts as due when the worker's
 * timeout timer fires: Node's timers fire up to ~2 ms before
 * performance.now() reaches their target (PLATFORM.md), and the jobs started
 * within that window are due now too.
 */
const TIMER_SLACK_MS = 2;

/**
 * A client cancel this close to the call's deadline is the deadline: a
 * client resets its call when its own deadline passes, a little before the
 * server's copy of it (which started later, on receipt), and the transport's
 * deadline timer fires up to ~2 ms early (PLATFORM.md).
 */
const CANCEL_AT_DEADLINE_MS = 20;

/** What a transition needs beyond the target state. */
export interface Change {
  outcome?: JobOutcome;
  error?: DispatchError;
  delayMs?: number;
}

/**
 * The job state machine (DESIGN.md §4 "Lifecycle"):
 *
 *   new → queued → running → settled
 *           ↑         ↓
 *           └── backoff ──→ settled
 *   (queued and backoff may also go straight to settled)
 *
 * `transition()` is the one place a job changes state. It moves the job
 * between lists, arms or clears the one timer the state needs, updates the
 * worker's counters and emits exactly one observer event; the gauges and
 * counters of telemetry are built from those events and so agree with the
 * core's own. Attempts are first-class: an attempt begins when the job is
 * queued on a worker and ends when the job leaves "running" (or "queued")
 * for "backoff" or "settled", charged to that worker.
 */
export class Lifecycle implements JobOwner {
  /** Jobs admitted and not settled, across all workers. */
  active = 0;
  /** Jobs waiting out a retry backoff, so that close() can end them. */
  readonly backingOff = new JobQueue<Job>();
  closing = false;
  onIdle: (() => void) | undefined = undefined;
  readonly onWorkerChange: EjectionListener;
  private readonly sweepTimeouts = (w: Worker<Job>) => this.timeoutsDue(w);
  /** Gates starts on workers with limits (capacity.ts); set by the dispatcher. */
  gate!: CapacityGate;

  constructor(
    readonly observer: DispatchObserver,
    readonly clock: Clock,
    readonly random: () => number,
    private readonly onError: (error: unknown, where: string) => void,
  ) {
    this.onWorkerChange = (w, reason, forMs) => {
      if (this.observer.workerStateChanged === undefined) return;
      try {
        this.observer.workerStateChanged(w, reason, forMs);
      } catch (e) {
        this.report(e, "workerStateChanged");
      }
    };
  }

  /** The one place a job changes state. The caller sets `job.worker` before a move to "queued". */
  transition(job: Job, to: JobState, now: number, change: Change = {}): void {
    const from = job.state;
    if (from === "settled") throw new Error("a settled job does not move");
    const w = job.worker;
    switch (from) {
      case "queued":
        if (to === "running") w.queue.take(job);
        else w.queue.remove(job);
        break;
      case "running":
        w.running.remove(job);
        w.inflight--;
        w.execution.record(now - job.startedAt, now);
        // Runs cut short by the client or shutdown say nothing of how long the upstream takes.
        if (to === "backoff" || change.outcome === "ok" || change.outcome === "error" || change.outcome === "timeout") {
          w.noteService(now - job.startedAt);
        }
        if (job.lease !== undefined) {
          // Settled from the answer's usage (refund or extra charge); a failed or cut-short attempt keeps its reservation.
          job.lease.release(change.outcome === "ok" ? tokensUsed(job.result?.metadata) : undefined);
          job.lease = undefined;
        }
        if (w.running.length === 0 && w.timeoutTimer !== undefined) {
          this.clock.clearTimer(w.timeoutTimer);
          w.timeoutTimer = undefined;
        }
        break;
      case "backoff":
        this.backingOff.remove(job);
        break;
    }
    // The deadline timer serves both queued and running: it is kept across a start.
    if (job.timer !== undefined && !(from === "queued" && to === "running")) {
      this.clock.clearTimer(job.timer);
      job.timer = undefined;
    }
    job.state = to;
    const o = this.observer;
    switch (to) {
      case "queued":
        job.queuedAt = now;
        job.worker.queue.push(job);
        if (job.deadline !== Infinity) job.timer = this.clock.setTimer(onDeadline, job.deadline - now, job);
        if (o.jobQueued !== undefined) {
          try {
            o.jobQueued(job);
          } catch (e) {
            this.report(e, "jobQueued");
          }
        }
        break;
      case "running":
        job.startedAt = now;
        w.running.push(job);
        w.inflight++;
        w.queueWait.record(now - job.queuedAt, now);
        w.tierWait[job.priority]!.record(now - job.queuedAt, now);
        if (job.entry.timeoutMs > 0 && w.timeoutTimer === undefined) this.armTimeout(w, job.entry.timeoutMs, now);
        if (o.jobStarted !== undefined) {
          try {
            o.jobStarted(job);
          } catch (e) {
            this.report(e, "jobStarted");
          }
        }
        break;
      case "backoff": {
        const err = change.error!;
        this.chargeAttempt(job, w, "error", err, true);
        job.lastError = err;
        if (job.retries++ === 0) job.entry.retrying++;
        job.endedAt = now;
        this.backingOff.push(job);
        job.timer = this.clock.setTimer(onBackoffOver, change.delayMs ?? 0, job);
        if (o.jobRetrying !== undefined) {
          try {
            o.jobRetrying(job, err, change.delayMs ?? 0);
          } catch (e) {
            this.report(e, "jobRetrying");
          }
        }
        break;
      }
      case "settled": {
        const outcome = change.outcome!;
        job.endedAt = now;
        job.clientSignal?.removeEventListener("abort", job);
        this.active--;
        job.entry.active--;
        if (job.retries > 0) job.entry.retrying--;
        // A job settling from its backoff has no live attempt: its failed one was charged when it failed.
        if (from === "queued" || from === "running") this.chargeAttempt(job, w, outcome, change.error, from === "running");
        if (o.jobEnded !== undefined) {
          try {
            o.jobEnded(job, outcome, change.error, from);
          } catch (e) {
            this.report(e, "jobEnded");
          }
        }
        break;
      }
      default:
        throw new Error(`no transition to "${to}"`);
    }
  }

  /** Counts how an attempt on `w` ended; only upstream faults and backend timeouts feed ejection. */
  private chargeAttempt(job: Job, w: Worker<Job>, outcome: JobOutcome, err: DispatchError | undefined, ran: boolean): void {
    switch (outcome) {
      case "ok":
        w.completed++;
        noteSuccess(w);
        // A slot added back is used by the pump that follows this settle.
        adaptUp(w);
        break;
      case "error":
      case "timeout":
        w.errors++;
        // Only an attempt that ran says anything of its upstream (a job refused by its limits never did).
        if (job.entry.outlier !== undefined && ran) {
          noteFailure(w, job.entry.workers, job.entry.outlier, err!, this.clock, this.onWorkerChange);
        }
        break;
      case "displaced":
        w.displacedByTier[job.priority]!++;
        break;
      default:
        w.cancelled++;
    }
  }

  /**
   * Settles `job` once: unlinks it, answers the caller, aborts a running
   * handler (after settling, so a handler reacting synchronously to the abort
   * finds the job done) and lets the worker start what its queue holds.
   */
  settle(job: Job, outcome: JobOutcome, error: DispatchError | undefined, pump = true): void {
    if (job.state === "settled" || job.state === "new") return;
    const run = job.run;
    job.run = undefined;
    const w = job.worker;
    const now = this.clock.now();
    this.transition(job, "settled", now, { outcome, error });
    if (run !== undefined && outcome !== "ok" && outcome !== "error") run.abort(error);
    if (outcome === "ok") {
      const r = job.result!;
      job.result = undefined;
      job.resolve({
        payload: r,
        metadata: r.metadata,
        workerId: w.id,
        affinity: job.affinity,
        queueWaitMs: job.startedAt - job.admittedAt,
        executionMs: now - job.startedAt,
        attempts: job.attempt,
        timeToFirstChunkMs: job.firstChunkAt === 0 ? undefined : job.firstChunkAt - job.startedAt,
        chunks: job.chunks,
      });
    } else {
      job.reject(error!);
    }
    job.sink?.end(error);
    if (pump) this.pump(w, now);
    if (this.active === 0 && this.onIdle !== undefined) this.onIdle();
  }

  /** Starts queued jobs of `w` while it has free slots; a job whose deadline has passed is ended, never started. */
  pump(w: Worker<Job>, now: number): void {
    // The deadline check and the start read the same `now`: they agree on the instant.
    while (w.inflight < w.maxConcurrency && w.queue.length > 0) {
      const job = w.queue.peek(now)!;
      if (now >= job.deadline) {
        // Its timer has not run yet (timers fire late under load): the deadline has passed all the same.
        this.settle(job, "deadline_exceeded", deadlineError(job, "while queued"), false);
        continue;
      }
      if (w.limits !== undefined) {
        const g = this.gate.ask(w, job, now);
        if (g === "wait") break;
        if (g === "ended") continue;
      }
      this.startAttempt(job, now);
    }
  }

  /** Moves a queued job to running and calls its handler (src/core/attempt.ts). */
  startAttempt!: (job: Job, now: number) => void;
  /** Places a job whose backoff is over on a worker again (src/core/attempt.ts). */
  backoffOver!: (job: Job) => void;

  clientCancelled(job: Job): void {
    if (job.deadline - this.clock.now() <= CANCEL_AT_DEADLINE_MS) {
      // The client's own deadline (or the transport's timer for it) ended the call: it is a deadline, not a cancel.
      this.settle(job, "deadline_exceeded", deadlineError(job, job.state === "queued" ? "while queued" : "while running"));
      return;
    }
    this.settle(job, "cancelled", new DispatchError("cancelled", "the client cancelled the call", { abortReason: "cancel" }));
  }

  deadlinePassed(job: Job): void {
    if (job.state !== "queued" && job.state !== "running") return;
    this.settle(job, "deadline_exceeded", deadlineError(job, job.state === "queued" ? "while queued" : "while running"));
  }

  /** Arms `w`'s backend-timeout timer for its oldest running job (all of a worker's jobs share the backend's timeout). */
  private armTimeout(w: Worker<Job>, timeoutMs: number, now: number): void {
    const oldest = w.running.peek()!;
    w.timeoutTimer = this.clock.setTimer(this.sweepTimeouts, Math.max(1, oldest.startedAt + timeoutMs - now), w);
  }

  /** `w`'s timeout timer fired: its running jobs past the backend's timeout fail, oldest first; then it re-arms. */
  private timeoutsDue(w: Worker<Job>): void {
    w.timeoutTimer = undefined;
    const now = this.clock.now();
    for (let job = w.running.peek(); job !== undefined; job = w.running.peek()) {
      const timeoutMs = job.entry.timeoutMs;
      if (job.startedAt + timeoutMs - now > TIMER_SLACK_MS) break;
      if (now >= job.deadline) {
        // The client's deadline has passed too (its timer is late): that ends the call, and blames no upstream.
        this.settle(job, "deadline_exceeded", deadlineError(job, "while running"));
        continue;
      }
      const err = new DispatchError("deadline_exceeded", `backend "${job.backend}" handler timed out after ${timeoutMs} ms on ${w.id}`, {
        abortReason: "timeout",
      });
      this.settle(job, "timeout", err);
    }
    if (w.timeoutTimer === undefined && w.running.length > 0) this.armTimeout(w, w.running.peek()!.entry.timeoutMs, now);
  }

  /** Ends every job of the given workers and every job waiting to retry (close() out of grace). */
  abortAll(workers: Iterable<Worker<Job>>): void {
    const err = () => new DispatchError("unavailable", "the dispatcher shut down before the job finished", { abortReason: "shutdown" });
    const list = [...workers];
    // Queued jobs first: ending a running job would otherwise start the next queued one.
    const now = this.clock.now();
    for (const w of list) for (let j = w.queue.peek(now); j; j = w.queue.peek(now)) this.settle(j, "shutdown", err(), false);
    for (const w of list) for (let j = w.running.peek(); j; j = w.running.peek()) this.settle(j, "shutdown", err(), false);
    this.endBackoffs();
  }

  /** Jobs waiting to retry would find every worker draining: end them with what they were retrying from. */
  endBackoffs(): void {
    for (let j = this.backingOff.peek(); j; j = this.backingOff.peek()) {
      const msg = `the dispatcher is shutting down; the last attempt failed: ${j.lastError!.message}`;
      this.settle(j, "shutdown", new DispatchError("unavailable", msg, { abortReason: "shutdown" }), false);
    }
  }

  report(error: unknown, where: string): void {
    try {
      this.onError(error, where);
    } catch {
      // The reporter itself failed: nothing more can be done without risking the job.
    }
  }
}

export function deadlineError(job: Job, where: string): DispatchError {
  return new DispatchError("deadline_exceeded", `the call's deadline passed ${where} on ${job.worker.id}`, { abortReason: "deadline" });
}

/** The result a handler must return: a payload object. */
export function isResult(r: unknown): r is HandlerResult {
  return typeof r === "object" && r !== null && ("json" in r || "binary" in r);
}

export type { BackendEntry, JobOwner };
