import { AsyncResource } from "node:async_hooks";
import { AffinityTable } from "./affinity.js";
import { Attempts } from "./attempt.js";
import { systemClock, type TimerHandle } from "./clock.js";
import { findDisplacement } from "./displace.js";
import { clearEjection } from "./ejection.js";
import { DispatchError } from "./errors.js";
import type { HandlerResult, Payload } from "./handler.js";
import { Job, type BackendEntry, type CancelSignal } from "./job.js";
import { Lifecycle } from "./lifecycle.js";
import { noopObserver, type AffinityOutcome } from "./observer.js";
import { nonNegativeNumber, validateBackendOptions, type BackendOptions, type DispatcherOptions } from "./options.js";
import { createPolicy } from "./policy.js";
import { rejectionWorker, selectWorker } from "./select.js";
import { snapshotBackends, type WorkerSnapshot } from "./snapshot.js";
import { StreamSink, type StreamEvent } from "./stream.js";
import { canAdmit, SERVICE_MIN_SAMPLES, Worker } from "./worker.js";
import { seedFromStore, type PinStore } from "./pins.js";
import { CapacityGate, limitMessage, newWorkerLimits, type WorkerLimits } from "./capacity.js";
import { LocalLimitStore } from "./local-limits.js";
import type { ValidLimits } from "./limit-options.js";

export interface SubmitOptions {
  backend: string;
  /** Affinity key; "" or undefined for none. */
  sessionId?: string;
  /** Default: JSON null. */
  payload?: Payload;
  metadata?: Record<string, string>;
  /** The caller's cancellation (client cancel or disconnect): an AbortSignal, or anything as little (CancelSignal). */
  signal?: CancelSignal;
  /** The caller's deadline, relative, in ms. */
  timeoutMs?: number;
  /** Tier, 0 = most urgent; undefined for the backend's default. Above the backend's last tier: held to the last. */
  priority?: number;
  /** Whose call this is, for fairness between tenants; "" or undefined for none. */
  tenant?: string;
  /**
   * The caller's trace context, opaque to the core: handed to observers
   * (JobView.traceParent, jobRejected), so that telemetry parents the job's
   * spans without an active async context (on Node 20 one switches on async
   * hooks for every promise in the process).
   */
  traceParent?: unknown;
}

/** What a refusal knows of its call once its tier and tenant are resolved. */
interface CallInfo {
  priority: number;
  tenant: string;
  traceParent: unknown;
}

/** Longest tenant name: tenants come from clients, and each queued tenant holds its name. */
export const MAX_TENANT_LENGTH = 128;

export interface JobStream {
  events: AsyncIterable<StreamEvent>;
  result: Promise<JobResult>;
}

export interface JobResult {
  payload: HandlerResult;
  metadata: Record<string, string> | undefined;
  workerId: string;
  affinity: AffinityOutcome;
  queueWaitMs: number;
  executionMs: number;
  attempts: number;
  /** Streamed answers: time from the last attempt's start to its first chunk, and how many chunks it had. */
  timeToFirstChunkMs: number | undefined;
  chunks: number;
}


export type { WorkerSnapshot } from "./snapshot.js";

export interface Dispatcher {
  /** Adds a backend; throws a TypeError naming a bad option, or if the name is taken. */
  register(backend: BackendOptions): void;
  /** Runs one job; rejects with a DispatchError. A streaming handler's chunks are collected into one answer. */
  submit(request: SubmitOptions): Promise<JobResult>;
  /**
   * Runs one job and streams its events (DESIGN.md §9): `started` for each
   * attempt, then the chunks, pulled from the handler no faster than `events`
   * is read; `result` settles when the stream ends (or with the job's error).
   * Leaving `events` early cancels the job. A handler that returns one
   * result streams it as one chunk.
   */
  submitStream(request: SubmitOptions): JobStream;
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
  private readonly life: Lifecycle;
  private readonly graceMs: number;
  private closePromise: Promise<void> | undefined;
  private graceTimer: TimerHandle | undefined;
  private readonly pinStore: PinStore | undefined;

  constructor(options: DispatcherOptions) {
    this.graceMs = nonNegativeNumber(options.shutdownGraceMs ?? 30_000, "shutdownGraceMs");
    const onError = options.onError ?? ((e: unknown, where: string) => process.emitWarning(`dispatcher observer ${where} threw: ${String(e)}`));
    this.pinStore = options.pinStore;
    this.life = new Lifecycle(options.observer ?? noopObserver, options.clock ?? systemClock, options.random ?? Math.random, onError);
    new Attempts(this.life);
    // Cheap to build: a gate and an empty map. Workers without limits never call it until an upstream 429 pauses them.
    this.life.gate = new CapacityGate(options.limitStore ?? new LocalLimitStore(this.life.clock), this.life);
    for (const b of options.backends ?? []) this.register(b);
  }

  get closing(): boolean {
    return this.life.closing;
  }

  register(options: BackendOptions): void {
    if (this.closing) throw new DispatchError("unavailable", "the dispatcher is closing");
    const o = validateBackendOptions(options);
    if (this.entries.has(o.name)) throw new TypeError(`backend "${o.name}" is already registered`);
    const sched = o.scheduling;
    const fair = {
      levels: sched.priorityLevels,
      agingMs: sched.agingMs,
      weightOf: (tenant: string) => sched.tenantWeights.get(tenant) ?? sched.defaultTenantWeight,
    };
    const workers = o.workers.map(
      (w, i) =>
        new Worker<Job>(`${o.name}/${w.name ?? i}`, o.name, i, w.maxConcurrency, w.queueCapacity, w.weight, w.endpoint, fair),
    );
    for (const [i, w] of workers.entries()) {
      w.limits = workerLimits(o.workers[i]!.limits, o.limits);
      if (options.limits?.adaptiveConcurrency === true) w.adaptive = { ceiling: w.maxConcurrency, streak: 0, decreasedAt: -Infinity };
    }
    this.entries.set(o.name, {
      name: o.name,
      handler: o.handler,
      workers,
      policy: createPolicy(o.policy),
      affinity: o.ttlMs > 0 ? new AffinityTable(o.ttlMs, o.maxPins) : undefined,
      pinStore: o.ttlMs > 0 ? this.pinStore : undefined,
      spillLoadFactor: o.spillLoadFactor,
      timeoutMs: o.timeoutMs,
      retry: o.retry,
      outlier: o.outlier,
      scheduling: sched,
      firstChunkTimeoutMs: o.firstChunkTimeoutMs,
      stallTimeoutMs: o.stallTimeoutMs,
      close: o.close,
      tokensFor: o.tokensFor,
      ambientTrace: o.ambientTrace,
      active: 0,
      retrying: 0,
    });
  }

  backendNames(): string[] {
    return [...this.entries.keys()];
  }

  submit(req: SubmitOptions): Promise<JobResult> {
    return this.admit(req, undefined);
  }

  submitStream(req: SubmitOptions): JobStream {
    const sink = new StreamSink();
    const stop = new AbortController();
    let signal = stop.signal;
    if (req.signal instanceof AbortSignal) signal = AbortSignal.any([req.signal, stop.signal]);
    else if (req.signal?.aborted === true) stop.abort();
    else req.signal?.addEventListener("abort", { handleEvent: () => stop.abort() });
    const result = this.admit({ ...req, signal }, sink);
    // A refused call never reached a worker: its stream ends with the refusal.
    result.catch((e: unknown) => sink.end(DispatchError.from(e)));
    return { events: streamEvents(sink, stop), result };
  }

  private admit(req: SubmitOptions, sink: StreamSink | undefined): Promise<JobResult> {
    // Only with a pin store and a session: the other calls pay nothing for it.
    if (this.pinStore !== undefined && req.sessionId) {
      const entry = this.entries.get(req.backend);
      if (entry?.pinStore !== undefined && !this.closing && entry.affinity!.lookup(req.sessionId, this.life.clock.now()) === undefined) {
        return this.admitAfterLookup(entry, entry.pinStore, req, sink);
      }
    }
    return this.admitNow(req, sink);
  }

  /**
   * A local miss with a pin store: another replica may have pinned the
   * session. The store bounds the wait; the call's deadline counts it.
   */
  private async admitAfterLookup(entry: BackendEntry, store: PinStore, req: SubmitOptions, sink: StreamSink | undefined): Promise<JobResult> {
    const clock = this.life.clock;
    const started = clock.now();
    await seedFromStore(store, entry, req.sessionId!, () => clock.now());
    const timeoutMs = req.timeoutMs === undefined ? undefined : req.timeoutMs - (clock.now() - started);
    return this.admitNow(timeoutMs === req.timeoutMs ? req : { ...req, timeoutMs }, sink);
  }

  private admitNow(req: SubmitOptions, sink: StreamSink | undefined): Promise<JobResult> {
    if (this.closing) return this.refuse(req.backend, undefined, new DispatchError("unavailable", "the dispatcher is shutting down"), req.traceParent);
    const entry = this.entries.get(req.backend);
    if (entry === undefined) {
      const err =
        req.backend === "" || req.backend === undefined
          ? new DispatchError("invalid_argument", `backend: required; known backends: ${this.backendNames().join(", ")}`)
          : new DispatchError("not_found", `unknown backend "${req.backend}"; known backends: ${this.backendNames().join(", ")}`);
      return this.refuse(req.backend, undefined, err, req.traceParent);
    }
    if (req.signal?.aborted) return this.refuse(req.backend, undefined, new DispatchError("cancelled", "the client cancelled the call"), req.traceParent);
    const life = this.life;
    const now = life.clock.now();
    let deadline = Infinity;
    if (req.timeoutMs !== undefined) {
      if (!(req.timeoutMs > 0)) {
        return this.refuse(req.backend, undefined, new DispatchError("deadline_exceeded", "the call's deadline had passed before it was admitted"), req.traceParent);
      }
      deadline = now + req.timeoutMs;
    }
    const sched = entry.scheduling;
    let priority = req.priority ?? sched.defaultPriority;
    if (!Number.isInteger(priority) || priority < 0) {
      return this.refuse(req.backend, undefined, new DispatchError("invalid_argument", `priority: expected an integer ≥ 0 (0 = most urgent), got ${priority}`), req.traceParent);
    }
    priority = Math.min(priority, sched.priorityLevels - 1);
    const tenant = req.tenant || (sched.tenantMetadataKey !== undefined ? req.metadata?.[sched.tenantMetadataKey] : undefined) || "";
    if (tenant.length > MAX_TENANT_LENGTH) {
      return this.refuse(req.backend, undefined, new DispatchError("invalid_argument", `tenant: longer than ${MAX_TENANT_LENGTH} characters`), req.traceParent);
    }
    const call: CallInfo = { priority, tenant, traceParent: req.traceParent };
    // Selection and the reservation of a slot happen in this one synchronous step: no double booking.
    const sessionId = req.sessionId ?? "";
    const sel = selectWorker(entry, sessionId, now, life.random, undefined);
    let w = sel.worker;
    if (w === undefined && sched.displace) w = this.displaceFor(entry, priority, tenant);
    if (w === undefined) return this.rejectFull(entry, sel.pinned, call);
    let affinity = sel.affinity;
    if (w.limits !== undefined && deadline !== Infinity && CapacityGate.blockedUntil(w, now) >= deadline) {
      // Its limits refuse starts past this call's deadline: another worker whose limits allow it sooner, or a refusal now.
      const other = entry.workers.find((o) => o !== w && canAdmit(o) && CapacityGate.blockedUntil(o, now) < deadline);
      if (other === undefined) {
        return this.rejectOn(w, call, `${limitMessage(w, now)}, past the call's deadline in ${Math.round(deadline - now)} ms`);
      }
      w = other;
      if (affinity === "hit") affinity = "spill";
    }
    // A worker with limits may hold the job for capacity even with a free slot.
    const queues = w.inflight >= w.maxConcurrency || w.queue.length > 0 || w.limits !== undefined;
    if (queues && sched.tenantQueueShare < 1) {
      const cap = Math.max(1, Math.floor(w.queueCapacity * sched.tenantQueueShare));
      if (w.queue.queuedBy(tenant) >= cap) {
        return this.rejectOn(w, call, `tenant "${tenant}" holds its cap of ${cap} queued calls on ${w.id} (${Math.round(sched.tenantQueueShare * 100)} % of the queue)`);
      }
    }
    // A job that starts at once waits nothing; only one that queues needs the estimate.
    const estimate = queues ? w.estimateWaitMs(priority) : w.serviceSamples >= SERVICE_MIN_SAMPLES ? 0 : undefined;
    if (sched.deadlineAware && estimate !== undefined && deadline !== Infinity && estimate > deadline - now) {
      const left = Math.round(deadline - now);
      return this.rejectOn(w, call, `estimated queue wait on ${w.id} is ${Math.round(estimate)} ms, more than the ${left} ms left before the call's deadline`);
    }

    const job = new Job(life, entry, w, affinity, sessionId, req.payload ?? { json: null },
      req.metadata ?? {}, req.signal, deadline, now, priority, tenant);
    job.predictedWaitMs = estimate;
    job.sink = sink;
    job.traceParent = req.traceParent;
    const promise = new Promise<JobResult>((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
    });
    life.active++;
    entry.active++;
    // A job that queues, or may retry, starts from another job's completion or a timer: keep the
    // submitter's async context for a handler that may read it (ambientTrace; the built-in kinds do not).
    if (entry.ambientTrace && (entry.retry !== undefined || queues)) job.context = new AsyncResource("dispatcher.job");
    if (job.clientSignal !== undefined) job.clientSignal.addEventListener("abort", job);
    life.transition(job, "queued", now);
    life.pump(w, now);
    return promise;
  }

  /** Every queue is full: the place of a queued job this call may displace (displace.ts), its victim answered at once. */
  private displaceFor(entry: BackendEntry, priority: number, tenant: string): Worker<Job> | undefined {
    const d = findDisplacement(entry, priority, tenant);
    if (d === undefined) return undefined;
    this.life.settle(d.victim, "displaced", new DispatchError("resource_exhausted", d.message), false);
    return d.target;
  }

  /** Refuses a call `w` would have taken: counted on `w` and its tier. */
  private rejectOn(w: Worker<Job>, call: CallInfo, message: string): Promise<never> {
    w.rejectedByTier[call.priority]!++;
    return this.refuse(w.backend, w.id, new DispatchError("resource_exhausted", message), call.traceParent, call);
  }

  private refuse(backend: string, workerId: string | undefined, err: DispatchError, traceParent: unknown, call?: CallInfo): Promise<never> {
    const o = this.life.observer;
    if (o.jobRejected !== undefined) {
      try {
        o.jobRejected(backend, workerId, err, call, traceParent);
      } catch (e) {
        this.life.report(e, "jobRejected");
      }
    }
    return Promise.reject(err);
  }

  private rejectFull(entry: BackendEntry, pinned: Worker<Job> | undefined, call: CallInfo): Promise<never> {
    // Count the rejection on the worker that would have taken the job.
    const preferred = rejectionWorker(entry, pinned);
    const serving = entry.workers.filter((w) => w.state === "serving").length;
    return this.rejectOn(
      preferred,
      call,
      serving === 0
        ? `backend "${entry.name}" has no serving worker (${entry.workers.length} ejected or draining)`
        : `backend "${entry.name}" is at capacity: all ${serving} serving workers are busy and their queues full`,
    );
  }

  snapshot(backends?: readonly string[]): WorkerSnapshot[] {
    return snapshotBackends(this.entries, backends, this.life.clock.now(), this.life.gate.status);
  }

  close(options: { graceMs?: number } = {}): Promise<void> {
    if (this.closePromise !== undefined) return this.closePromise;
    // Checked before anything changes: a bad argument must not leave a dispatcher that admits nothing and never drains.
    const graceMs = nonNegativeNumber(options.graceMs ?? this.graceMs, "graceMs");
    const life = this.life;
    life.closing = true;
    for (const entry of this.entries.values()) {
      for (const w of entry.workers) {
        clearEjection(w, life.clock);
        w.state = "draining";
      }
    }
    this.closePromise = new Promise<void>((resolve) => {
      life.onIdle = () => {
        life.onIdle = undefined;
        if (this.graceTimer !== undefined) life.clock.clearTimer(this.graceTimer);
        for (const entry of this.entries.values()) entry.affinity?.clear();
        resolve();
      };
    }).then(() => this.closeBackends());
    life.endBackoffs();
    if (life.active === 0) life.onIdle?.();
    else this.graceTimer = life.clock.setTimer((self) => self.abortAll(), graceMs, this);
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

  private abortAll(): void {
    this.graceTimer = undefined;
    this.life.abortAll([...this.entries.values()].flatMap((e) => e.workers));
  }
}

/** The caller's view of a sink; leaving early (break, return, throw) cancels the job. */
async function* streamEvents(sink: StreamSink, stop: AbortController): AsyncGenerator<StreamEvent> {
  let finished = false;
  try {
    for (let e = await sink.next(); e !== undefined; e = await sink.next()) yield e;
    finished = true;
  } finally {
    if (!finished) stop.abort();
  }
}

export function createDispatcher(options: DispatcherOptions = {}): Dispatcher {
  return new DispatcherImpl(options);
}

/** A worker's limits: its own first (the narrower key), then its backend's; undefined when neither has any. */
function workerLimits(own: ValidLimits | undefined, backend: ValidLimits | undefined): WorkerLimits | undefined {
  const set = [own, backend].filter((l): l is ValidLimits => l !== undefined);
  if (set.length === 0) return undefined;
  return newWorkerLimits(set.map((l) => l.spec), own?.tokenEstimate || backend?.tokenEstimate || 0);
}
