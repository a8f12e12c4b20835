import { AsyncResource } from "node:async_hooks";
import { AffinityTable, withinLoadBound, type Pin } from "./affinity.js";
import { systemClock, type Clock, type TimerHandle } from "./clock.js";
import { clearEjection, noteFailure, noteSuccess } from "./ejection.js";
import { DispatchError } from "./errors.js";
import type { HandlerResult, Payload } from "./handler.js";
import { callHandler, JobRun } from "./job-run.js";
import { noopObserver, type AffinityOutcome, type DispatchObserver, type JobOutcome } from "./observer.js";
import { validateBackendOptions, nonNegativeInt, type BackendOptions, type DispatcherOptions } from "./options.js";
import { Job, onTimer, type BackendEntry } from "./job.js";
import { createPolicy } from "./policy.js";
import { JobQueue } from "./queue.js";
import { placeRetry, retryDelay, withinBudget, type RetryPolicy } from "./retry.js";
import { snapshotBackends, type WorkerSnapshot } from "./snapshot.js";
import { canAdmit, loadOf, Worker } from "./worker.js";

export interface SubmitOptions {
  backend: string;
  /** Affinity key; "" or undefined for none. */
  sessionId?: string;
  /** Default: JSON null. */
  payload?: Payload;
  metadata?: Record<string, string>;
  /** The caller's cancellation (client cancel or disconnect). */
  signal?: AbortSignal;
  /** The caller's deadline, relative, in ms. */
  timeoutMs?: number;
}

export interface JobResult {
  payload: HandlerResult;
  metadata: Record<string, string> | undefined;
  workerId: string;
  affinity: AffinityOutcome;
  queueWaitMs: number;
  executionMs: number;
  attempts: number;
}


export type { WorkerSnapshot } from "./snapshot.js";

export interface Dispatcher {
  /** Adds a backend; throws a TypeError naming a bad option, or if the name is taken. */
  register(backend: BackendOptions): void;
  /** Runs one job; rejects with a DispatchError. */
  submit(request: SubmitOptions): Promise<JobResult>;
  /** Current load of every worker, or of the named backends' workers. */
  snapshot(backends?: readonly string[]): WorkerSnapshot[];
  backendNames(): string[];
  readonly closing: boolean;
  /**
   * Stops admission (UNAVAILABLE), lets queued and running jobs finish for up
   * to `graceMs` (default: the dispatcher's shutdownGraceMs), then aborts the
   * rest with UNAVAILABLE. Idempotent: later calls return the same promise.
   */
  close(options?: { graceMs?: number }): Promise<void>;
}


class DispatcherImpl implements Dispatcher {
  private readonly entries = new Map<string, BackendEntry>();
  readonly observer: DispatchObserver;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly graceMs: number;
  private closePromise: Promise<void> | undefined;
  private onIdle: (() => void) | undefined;
  private graceTimer: TimerHandle | undefined;
  /** Jobs waiting out a retry backoff, so that close() can end them. */
  private readonly backingOff = new JobQueue<Job>();
  /** Jobs admitted and not yet settled, across all workers. */
  private active = 0;
  /** Runs whose handler returned or threw synchronously, settled together in one microtask. */
  private readonly returned: (JobRun | undefined)[] = [];
  private readonly settleReturned = () => this.drainReturned();
  private readonly sweepTimeouts = (w: Worker<Job>) => this.timeoutsDue(w);
  closing = false;

  constructor(options: DispatcherOptions) {
    this.observer = options.observer ?? noopObserver;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.graceMs = nonNegativeInt(options.shutdownGraceMs ?? 30_000, "shutdownGraceMs");
    for (const b of options.backends ?? []) this.register(b);
  }

  register(options: BackendOptions): void {
    if (this.closing) throw new DispatchError("unavailable", "the dispatcher is closing");
    const o = validateBackendOptions(options);
    if (this.entries.has(o.name)) throw new TypeError(`backend "${o.name}" is already registered`);
    const workers = o.workers.map(
      (w, i) =>
        new Worker<Job>(`${o.name}/${w.name ?? i}`, o.name, i, w.maxConcurrency, w.queueCapacity, w.weight, w.endpoint),
    );
    this.entries.set(o.name, {
      name: o.name,
      handler: o.handler,
      workers,
      policy: createPolicy(o.policy),
      affinity: o.ttlMs > 0 ? new AffinityTable(o.ttlMs, o.maxPins) : undefined,
      spillLoadFactor: o.spillLoadFactor,
      timeoutMs: o.timeoutMs,
      retry: o.retry,
      outlier: o.outlier,
      close: o.close,
      active: 0,
      retrying: 0,
    });
  }

  backendNames(): string[] {
    return [...this.entries.keys()];
  }

  submit(req: SubmitOptions): Promise<JobResult> {
    if (this.closing) return this.refuse(req.backend, undefined, new DispatchError("unavailable", "the dispatcher is shutting down"));
    const entry = this.entries.get(req.backend);
    if (entry === undefined) {
      const err =
        req.backend === "" || req.backend === undefined
          ? new DispatchError("invalid_argument", `backend: required; known backends: ${this.backendNames().join(", ")}`)
          : new DispatchError("not_found", `unknown backend "${req.backend}"; known backends: ${this.backendNames().join(", ")}`);
      return this.refuse(req.backend, undefined, err);
    }
    if (req.signal?.aborted) return this.refuse(req.backend, undefined, new DispatchError("cancelled", "the client cancelled the call"));
    const now = this.clock.now();
    let deadline = Infinity;
    if (req.timeoutMs !== undefined) {
      if (!(req.timeoutMs > 0)) {
        return this.refuse(req.backend, undefined, new DispatchError("deadline_exceeded", "the call's deadline had passed before it was admitted"));
      }
      deadline = now + req.timeoutMs;
    }

    // Selection and the reservation of a slot happen in this one synchronous step: no double booking.
    const sessionId = req.sessionId ?? "";
    let worker: Worker<Job> | undefined;
    let outcome: AffinityOutcome = "none";
    let pin: Pin<Worker<Job>> | undefined;
    if (sessionId !== "" && entry.affinity !== undefined) {
      pin = entry.affinity.lookup(sessionId, now);
      if (
        pin !== undefined &&
        canAdmit(pin.worker) &&
        (entry.spillLoadFactor === 0 || withinLoadBound(pin.worker, entry.workers, entry.spillLoadFactor))
      ) {
        worker = pin.worker;
        outcome = "hit";
      } else {
        const i = entry.policy.pick(entry.workers, this.random);
        if (i >= 0) {
          worker = entry.workers[i]!;
          outcome = pin === undefined ? "miss" : "spill";
        }
      }
      if (worker !== undefined) entry.affinity.pin(sessionId, worker, now, pin);
    } else {
      const i = entry.policy.pick(entry.workers, this.random);
      if (i >= 0) worker = entry.workers[i]!;
    }
    if (worker === undefined) return this.rejectFull(entry, pin?.worker);

    const job = new Job(this, entry, worker, outcome, sessionId, req.payload ?? { json: null },
      req.metadata ?? {}, req.signal, deadline, now);
    const promise = new Promise<JobResult>((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
    });
    this.active++;
    entry.active++;
    // A retry starts from a timer: keep the submitter's async context (tracing) for it.
    if (entry.retry !== undefined) job.context = new AsyncResource("dispatcher.job");
    if (job.clientSignal !== undefined) job.clientSignal.addEventListener("abort", job);
    if (deadline !== Infinity) job.timer = this.clock.setTimer(onTimer, deadline - now, job);
    this.observer.jobAdmitted?.(job);
    if (worker.inflight < worker.maxConcurrency && worker.queue.length === 0) {
      this.start(job, now);
    } else {
      // The handler will start from another job's completion: keep the submitter's async context (tracing).
      job.context ??= new AsyncResource("dispatcher.job");
      worker.queue.push(job);
    }
    return promise;
  }

  private refuse(backend: string, workerId: string | undefined, err: DispatchError): Promise<never> {
    this.observer.jobRejected?.(backend, workerId, err);
    return Promise.reject(err);
  }

  private rejectFull(entry: BackendEntry, pinned: Worker<Job> | undefined): Promise<never> {
    // Count the rejection on the worker that would have taken the job.
    let preferred = pinned;
    if (preferred === undefined) {
      for (const w of entry.workers) if (preferred === undefined || loadOf(w) < loadOf(preferred)) preferred = w;
    }
    preferred!.rejected++;
    const serving = entry.workers.filter((w) => w.state === "serving").length;
    const err = new DispatchError(
      "resource_exhausted",
      serving === 0
        ? `backend "${entry.name}" has no serving worker (${entry.workers.length} ejected or draining)`
        : `backend "${entry.name}" is at capacity: all ${serving} serving workers are busy and their queues full`,
    );
    return this.refuse(entry.name, preferred!.id, err);
  }

  private start(job: Job, now: number): void {
    const w = job.worker;
    job.state = "running";
    job.startedAt = now;
    w.running.push(job);
    w.inflight++;
    w.queueWait.record(now - job.queuedAt, now);
    this.observer.jobStarted?.(job);
    const run = new JobRun(job, w, now);
    job.controller = run;
    if (job.entry.timeoutMs > 0 && w.timeoutTimer === undefined) this.armTimeout(w, job.entry.timeoutMs, now);
    let out: Promise<HandlerResult> | HandlerResult;
    try {
      out = job.context !== undefined ? job.context.runInAsyncScope(callHandler, undefined, run) : callHandler(run);
    } catch (e) {
      this.returnedLater(run, e, true);
      return;
    }
    if (typeof (out as { then?: unknown } | null)?.then === "function") {
      Promise.resolve(out).then(
        (r) => this.succeed(run, r),
        (e: unknown) => this.runFailed(run, e),
      );
    } else {
      this.returnedLater(run, out, false);
    }
  }

  /**
   * Settles a run whose handler returned (or threw) synchronously in a
   * microtask, as if it had returned a promise, so that a synchronous
   * handler cannot re-enter pump(); one microtask serves every such run of
   * the turn instead of a promise and two closures each.
   */
  private returnedLater(run: JobRun, outcome: unknown, threw: boolean): void {
    run.outcome = outcome;
    run.threw = threw;
    if (this.returned.push(run) === 1) queueMicrotask(this.settleReturned);
  }

  private drainReturned(): void {
    const runs = this.returned;
    // Runs settled here may start others that return at once: they join this loop.
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i]!;
      runs[i] = undefined;
      const outcome = run.outcome;
      run.outcome = undefined;
      try {
        if (run.threw) this.runFailed(run, outcome);
        else this.succeed(run, outcome as HandlerResult);
      } catch (e) {
        // Observers must not throw; if one does, report it without stranding the other runs.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    runs.length = 0;
  }

  private runFailed(run: JobRun, e: unknown): void {
    const job = run.job;
    if (job.controller !== run) return;
    const err = DispatchError.from(e);
    if (job.entry.retry === undefined || !this.retryLater(job, job.entry.retry, err)) this.fail(job, "error", err);
  }

  /** Arms `w`'s backend-timeout timer for its oldest running job. */
  private armTimeout(w: Worker<Job>, timeoutMs: number, now: number): void {
    const oldest = w.running.peek()!;
    // At least 1 ms: timers are ms-grained, and a 0 ms re-arm could spin on a rounding difference.
    w.timeoutTimer = this.clock.setTimer(this.sweepTimeouts, Math.max(1, oldest.startedAt + timeoutMs - now), w);
  }

  /** `w`'s timeout timer fired: fails its running jobs past the backend's timeout, oldest first, and re-arms. */
  private timeoutsDue(w: Worker<Job>): void {
    w.timeoutTimer = undefined;
    const entry = this.entries.get(w.backend)!;
    const now = this.clock.now();
    // Within 1 ms counts as due (timer granularity): the timer was armed for the oldest job's expiry.
    for (let job = w.running.peek(); job !== undefined && job.startedAt + entry.timeoutMs - now < 1; job = w.running.peek()) {
      if (now >= job.deadline) {
        this.fail(job, "deadline_exceeded", new DispatchError("deadline_exceeded", `the call's deadline passed while running on ${w.id}`));
      } else {
        this.fail(job, "timeout", new DispatchError("deadline_exceeded", `backend "${job.backend}" handler timed out after ${entry.timeoutMs} ms on ${w.id}`));
      }
    }
    if (w.timeoutTimer === undefined && w.running.length > 0) this.armTimeout(w, entry.timeoutMs, now);
  }

  /** A job left `w`'s running list: with none left running, its timeout timer goes too. */
  private leftRunning(w: Worker<Job>): void {
    if (w.running.length === 0 && w.timeoutTimer !== undefined) {
      this.clock.clearTimer(w.timeoutTimer);
      w.timeoutTimer = undefined;
    }
  }

  private succeed(run: JobRun, r: HandlerResult): void {
    const job = run.job;
    if (job.controller !== run || job.state !== "running") return;
    if (r === undefined || r === null) r = { json: null };
    if (typeof r !== "object" || (!("json" in r) && !("binary" in r))) {
      this.fail(job, "error", new DispatchError("internal", `backend "${job.backend}" handler returned no payload (expected { json } or { binary })`));
      return;
    }
    const now = this.settle(job);
    job.worker.completed++;
    noteSuccess(job.worker);
    this.observer.jobEnded?.(job, "ok", undefined);
    job.resolve({
      payload: r,
      metadata: r.metadata,
      workerId: job.worker.id,
      affinity: job.affinity,
      queueWaitMs: job.startedAt - job.admittedAt,
      executionMs: now - job.startedAt,
      attempts: job.attempt,
    });
    this.afterSettle(job.worker);
  }

  /** Settles `job` with an error, once; aborts its handler if it is running. */
  fail(job: Job, outcome: JobOutcome, err: DispatchError): void {
    if (job.state === "done") return;
    const wasRunning = job.state === "running";
    // settle() unlinks the controller; keep it to abort the handler.
    const controller = job.controller;
    this.settle(job);
    const w = job.worker;
    if (outcome === "error" || outcome === "timeout") {
      // A job failing from its retry backoff had its failed run counted when it ran.
      if (wasRunning) {
        w.errors++;
        if (job.entry.outlier !== undefined) noteFailure(w, job.entry.workers, job.entry.outlier, err, this.clock);
      }
    } else {
      w.cancelled++;
    }
    // Abort after settling, so a handler reacting synchronously to the abort finds the job done.
    if (controller !== undefined && outcome !== "error") controller.abort(err);
    this.observer.jobEnded?.(job, outcome, err);
    job.reject(err);
    this.afterSettle(w);
  }

  timerFired(job: Job): void {
    if (job.state === "done") return;
    if (job.state === "backoff") {
      this.retryNow(job);
      return;
    }
    if (this.clock.now() >= job.deadline) {
      const where = job.state === "queued" ? "while queued" : "while running";
      this.fail(job, "deadline_exceeded", new DispatchError("deadline_exceeded", `the call's deadline passed ${where} on ${job.worker.id}`));
    } else {
      this.fail(job, "timeout", new DispatchError("deadline_exceeded", `backend "${job.backend}" handler timed out after ${job.entry.timeoutMs} ms on ${job.worker.id}`));
    }
  }

  /**
   * Takes a job whose run failed off its worker and schedules its next
   * attempt, if the policy, the budget and the deadline allow; false if not.
   */
  private retryLater(job: Job, p: RetryPolicy, err: DispatchError): boolean {
    const entry = job.entry;
    if (this.closing) return false;
    const delay = retryDelay(p, job.attempt, err, this.random);
    if (delay < 0) return false;
    const now = this.clock.now();
    // A retry that cannot finish before the deadline would only turn the real error into DEADLINE_EXCEEDED.
    if (now + delay >= job.deadline) return false;
    // A job's first retry takes a share of the budget; its later ones already hold it.
    if (job.attempt === 1 && !withinBudget(p, entry.retrying, entry.active)) return false;
    const w = job.worker;
    w.running.remove(job);
    this.leftRunning(w);
    w.inflight--;
    w.execution.record(now - job.startedAt, now);
    w.errors++;
    if (entry.outlier !== undefined) noteFailure(w, entry.workers, entry.outlier, err, this.clock);
    if (job.timer !== undefined) this.clock.clearTimer(job.timer);
    job.controller = undefined;
    job.state = "backoff";
    job.lastError = err;
    if (job.attempt === 1) entry.retrying++;
    job.attempt++;
    this.backingOff.push(job);
    job.timer = this.clock.setTimer(onTimer, delay, job);
    this.observer.jobRetrying?.(job, err, delay);
    this.afterSettle(w);
    return true;
  }

  /** The backoff of `job` is over: place it on a worker again. */
  private retryNow(job: Job): void {
    const now = this.clock.now();
    if (now >= job.deadline) {
      this.fail(job, "deadline_exceeded", new DispatchError("deadline_exceeded", `the call's deadline passed while waiting to retry: ${job.lastError!.message}`));
      return;
    }
    const w = this.closing ? undefined : placeRetry(job, now, this.random);
    if (w === undefined) {
      // No worker can take it (queues full, or closing): the caller hears why the last attempt failed.
      this.fail(job, "error", job.lastError!);
      return;
    }
    this.backingOff.remove(job);
    job.worker = w;
    job.state = "queued";
    job.queuedAt = now;
    if (job.deadline !== Infinity) job.timer = this.clock.setTimer(onTimer, job.deadline - now, job);
    if (w.inflight < w.maxConcurrency && w.queue.length === 0) this.start(job, now);
    else w.queue.push(job);
  }

  /** Unlinks a job from its worker and timers; returns the clock time. */
  private settle(job: Job): number {
    const now = this.clock.now();
    const w = job.worker;
    if (job.state === "queued") {
      w.queue.remove(job);
    } else if (job.state === "backoff") {
      this.backingOff.remove(job);
    } else {
      w.running.remove(job);
      this.leftRunning(w);
      w.inflight--;
      w.execution.record(now - job.startedAt, now);
    }
    job.state = "done";
    job.endedAt = now;
    job.controller = undefined;
    if (job.timer !== undefined) {
      this.clock.clearTimer(job.timer);
      job.timer = undefined;
    }
    job.clientSignal?.removeEventListener("abort", job);
    this.active--;
    job.entry.active--;
    if (job.attempt > 1) job.entry.retrying--;
    return now;
  }

  private afterSettle(w: Worker<Job>): void {
    if (w.inflight < w.maxConcurrency && w.queue.length > 0) {
      const now = this.clock.now();
      while (w.inflight < w.maxConcurrency && w.queue.length > 0) this.start(w.queue.shift()!, now);
    }
    if (this.active === 0 && this.onIdle !== undefined) this.onIdle();
  }

  snapshot(backends?: readonly string[]): WorkerSnapshot[] {
    return snapshotBackends(this.entries, backends, this.clock.now());
  }

  close(options: { graceMs?: number } = {}): Promise<void> {
    if (this.closePromise !== undefined) return this.closePromise;
    this.closing = true;
    for (const entry of this.entries.values()) {
      for (const w of entry.workers) {
        clearEjection(w, this.clock);
        w.state = "draining";
      }
    }
    const graceMs = nonNegativeInt(options.graceMs ?? this.graceMs, "graceMs");
    this.closePromise = new Promise<void>((resolve) => {
      this.onIdle = () => {
        this.onIdle = undefined;
        if (this.graceTimer !== undefined) this.clock.clearTimer(this.graceTimer);
        for (const entry of this.entries.values()) entry.affinity?.clear();
        resolve();
      };
    }).then(() => this.closeBackends());
    // Jobs waiting to retry would find every worker draining: end them now, with what they were retrying from.
    for (let j = this.backingOff.shift(); j; j = this.backingOff.shift()) {
      this.failUnlinked(j, new DispatchError("unavailable", `the dispatcher is shutting down; the last attempt failed: ${j.lastError!.message}`));
    }
    if (this.active === 0) this.onIdle?.();
    else this.graceTimer = this.clock.setTimer((self) => self.abortAll(), graceMs, this);
    return this.closePromise;
  }

  /** Runs every backend's close hook once its jobs are done; one failing hook does not stop the others. */
  private async closeBackends(): Promise<void> {
    const hooks: Promise<void>[] = [];
    for (const entry of this.entries.values()) {
      const close = entry.close;
      if (close !== undefined) hooks.push(Promise.resolve().then(close));
    }
    await Promise.allSettled(hooks);
  }

  abortAll(): void {
    this.graceTimer = undefined;
    const err = new DispatchError("unavailable", "the dispatcher shut down before the job finished");
    // Queued jobs first: failing a running job would otherwise start the next queued one.
    for (const entry of this.entries.values()) {
      for (const w of entry.workers) for (let j = w.queue.shift(); j; j = w.queue.shift()) this.failUnlinked(j, err);
    }
    for (const entry of this.entries.values()) {
      for (const w of entry.workers) for (let j = w.running.shift(); j; j = w.running.shift()) this.failUnlinked(j, err);
    }
  }

  /** fail() for a job already taken off its list. */
  private failUnlinked(job: Job, err: DispatchError): void {
    const list = job.state === "queued" ? job.worker.queue : job.state === "backoff" ? this.backingOff : job.worker.running;
    list.push(job);
    this.fail(job, "shutdown", err);
  }
}

export function createDispatcher(options: DispatcherOptions = {}): Dispatcher {
  return new DispatcherImpl(options);
}
