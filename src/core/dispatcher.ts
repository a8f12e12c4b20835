import { AsyncLocalStorage } from "node:async_hooks";
import { AffinityTable, type Pin } from "./affinity.js";
import { systemClock, type Clock, type TimerHandle } from "./clock.js";
import { DispatchError } from "./errors.js";
import type { Handler, HandlerContext, HandlerResult, Payload } from "./handler.js";
import { noopObserver, type AffinityOutcome, type DispatchObserver, type JobOutcome, type JobView } from "./observer.js";
import { validateBackendOptions, nonNegativeInt, type BackendOptions, type DispatcherOptions } from "./options.js";
import { createPolicy, pickLeastLoaded, type SelectionPolicy } from "./policy.js";
import type { QueueNode } from "./queue.js";
import { canAdmit, loadOf, Worker, type WorkerState } from "./worker.js";

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

export interface WorkerSnapshot {
  workerId: string;
  backend: string;
  endpoint: string | undefined;
  state: WorkerState;
  inflight: number;
  queued: number;
  queueCapacity: number;
  maxConcurrency: number;
  load: number;
  completed: number;
  errors: number;
  rejected: number;
  cancelled: number;
  ejections: number;
  sessions: number;
  queueWaitP50Ms: number;
  queueWaitP99Ms: number;
  executionP50Ms: number;
  executionP99Ms: number;
}

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

/** Samples older than this are left out of the percentiles of a snapshot. */
const PERCENTILE_WINDOW_MS = 60_000;
/** Expired pins removed per backend per snapshot, so `sessions` stays current when traffic stops. */
const SNAPSHOT_SWEEP = 10_000;

interface BackendEntry {
  name: string;
  handler: Handler;
  workers: Worker<Job>[];
  policy: SelectionPolicy;
  affinity: AffinityTable<Worker<Job>> | undefined;
  timeoutMs: number;
}

type JobState = "queued" | "running" | "done";

/**
 * One Submit from admission to result. A class so that it can be its own
 * queue node, abort listener (handleEvent) and timer argument: the submit
 * path allocates no closures for those.
 */
class Job implements JobView, QueueNode {
  prev: QueueNode | null = null;
  next: QueueNode | null = null;
  state: JobState = "queued";
  attempt = 1;
  startedAt = 0;
  endedAt = 0;
  tag: unknown = undefined;
  timer: TimerHandle | undefined = undefined;
  controller: AbortController | undefined = undefined;
  /** Runs a function in the async context the job was submitted from; set only when it had to queue. */
  restore: (<R>(fn: () => R) => R) | undefined = undefined;
  resolve!: (r: JobResult) => void;
  reject!: (e: DispatchError) => void;

  constructor(
    readonly owner: DispatcherImpl,
    readonly entry: BackendEntry,
    readonly worker: Worker<Job>,
    readonly affinity: AffinityOutcome,
    readonly sessionId: string,
    readonly payload: Payload,
    readonly metadata: Record<string, string>,
    readonly clientSignal: AbortSignal | undefined,
    /** Clock ms; Infinity for none. */
    readonly deadline: number,
    readonly admittedAt: number,
  ) {}

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

function onTimer(job: Job): void {
  job.timer = undefined;
  job.owner.timerFired(job);
}

class DispatcherImpl implements Dispatcher {
  private readonly entries = new Map<string, BackendEntry>();
  private readonly observer: DispatchObserver;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly graceMs: number;
  private closePromise: Promise<void> | undefined;
  private onIdle: (() => void) | undefined;
  private graceTimer: TimerHandle | undefined;
  /** Jobs admitted and not yet settled, across all workers. */
  private active = 0;
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
      timeoutMs: o.timeoutMs,
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
      if (pin !== undefined && canAdmit(pin.worker)) {
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
    if (job.clientSignal !== undefined) job.clientSignal.addEventListener("abort", job);
    if (deadline !== Infinity) job.timer = this.clock.setTimer(onTimer, deadline - now, job);
    this.observer.jobAdmitted?.(job);
    if (worker.inflight < worker.maxConcurrency && worker.queue.length === 0) {
      this.start(job, now);
    } else {
      // The handler will start from another job's completion: keep the submitter's async context (tracing).
      job.restore = AsyncLocalStorage.snapshot();
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
    w.queueWait.record(now - job.admittedAt, now);
    this.observer.jobStarted?.(job);
    const controller = new AbortController();
    job.controller = controller;
    const timeoutAt = job.entry.timeoutMs > 0 ? now + job.entry.timeoutMs : Infinity;
    if (timeoutAt < job.deadline) {
      if (job.timer !== undefined) this.clock.clearTimer(job.timer);
      job.timer = this.clock.setTimer(onTimer, timeoutAt - now, job);
    }
    const ctx: HandlerContext = {
      signal: controller.signal,
      workerId: w.id,
      endpoint: w.endpoint,
      sessionId: job.sessionId,
      metadata: job.metadata,
      deadline: job.deadline === Infinity ? undefined : Date.now() + (job.deadline - now),
      attempt: job.attempt,
      traceHeaders: () => {
        const carrier: Record<string, string> = {};
        this.observer.injectHeaders?.(job, carrier);
        return carrier;
      },
    };
    const call = (): Promise<HandlerResult> | HandlerResult => {
      const run = () => job.entry.handler(job.payload, ctx);
      return this.observer.runHandler ? this.observer.runHandler(job, run) : run();
    };
    let out: Promise<HandlerResult> | HandlerResult;
    try {
      out = job.restore ? job.restore(call) : call();
    } catch (e) {
      out = Promise.reject(e);
    }
    // Always settle asynchronously, so that a synchronous handler cannot re-enter pump().
    Promise.resolve(out).then(
      (r) => this.succeed(job, controller, r),
      (e: unknown) => {
        if (job.controller === controller) this.fail(job, "error", DispatchError.from(e));
      },
    );
  }

  private succeed(job: Job, controller: AbortController, r: HandlerResult): void {
    if (job.controller !== controller || job.state !== "running") return;
    if (r === undefined || r === null) r = { json: null };
    if (typeof r !== "object" || (!("json" in r) && !("binary" in r))) {
      this.fail(job, "error", new DispatchError("internal", `backend "${job.backend}" handler returned no payload (expected { json } or { binary })`));
      return;
    }
    const now = this.settle(job);
    job.worker.completed++;
    job.worker.consecutiveFailures = 0;
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
    // settle() forgets the controller: keep it to abort the handler below.
    const controller = job.state === "running" ? job.controller : undefined;
    this.settle(job);
    const w = job.worker;
    if (outcome === "error" || outcome === "timeout") {
      w.errors++;
      w.consecutiveFailures++;
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
    if (this.clock.now() >= job.deadline) {
      const where = job.state === "queued" ? "while queued" : "while running";
      this.fail(job, "deadline_exceeded", new DispatchError("deadline_exceeded", `the call's deadline passed ${where} on ${job.worker.id}`));
    } else {
      this.fail(job, "timeout", new DispatchError("deadline_exceeded", `backend "${job.backend}" handler timed out after ${job.entry.timeoutMs} ms on ${job.worker.id}`));
    }
  }

  /** Unlinks a job from its worker and timers; returns the clock time. */
  private settle(job: Job): number {
    const now = this.clock.now();
    const w = job.worker;
    if (job.state === "queued") {
      w.queue.remove(job);
    } else {
      w.running.remove(job);
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
    const now = this.clock.now();
    const since = now - PERCENTILE_WINDOW_MS;
    const out: WorkerSnapshot[] = [];
    const names = backends === undefined || backends.length === 0 ? this.entries.keys() : backends;
    for (const name of names) {
      const entry = this.entries.get(name);
      if (entry === undefined) continue;
      entry.affinity?.sweep(now, SNAPSHOT_SWEEP);
      for (const w of entry.workers) {
        const [qw50, qw99] = w.queueWait.percentiles([0.5, 0.99], since);
        const [ex50, ex99] = w.execution.percentiles([0.5, 0.99], since);
        out.push({
          workerId: w.id,
          backend: w.backend,
          endpoint: w.endpoint,
          state: w.state,
          inflight: w.inflight,
          queued: w.queue.length,
          queueCapacity: w.queueCapacity,
          maxConcurrency: w.maxConcurrency,
          load: loadOf(w),
          completed: w.completed,
          errors: w.errors,
          rejected: w.rejected,
          cancelled: w.cancelled,
          ejections: w.ejections,
          sessions: w.sessions,
          queueWaitP50Ms: qw50!,
          queueWaitP99Ms: qw99!,
          executionP50Ms: ex50!,
          executionP99Ms: ex99!,
        });
      }
    }
    return out;
  }

  close(options: { graceMs?: number } = {}): Promise<void> {
    if (this.closePromise !== undefined) return this.closePromise;
    this.closing = true;
    for (const entry of this.entries.values()) for (const w of entry.workers) w.state = "draining";
    const graceMs = nonNegativeInt(options.graceMs ?? this.graceMs, "graceMs");
    this.closePromise = new Promise<void>((resolve) => {
      this.onIdle = () => {
        this.onIdle = undefined;
        if (this.graceTimer !== undefined) this.clock.clearTimer(this.graceTimer);
        for (const entry of this.entries.values()) entry.affinity?.clear();
        resolve();
      };
    });
    if (this.active === 0) this.onIdle!();
    else this.graceTimer = this.clock.setTimer((self) => self.abortAll(), graceMs, this);
    return this.closePromise;
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
    const list = job.state === "queued" ? job.worker.queue : job.worker.running;
    list.push(job);
    this.fail(job, "shutdown", err);
  }
}

export function createDispatcher(options: DispatcherOptions = {}): Dispatcher {
  return new DispatcherImpl(options);
}
