import type { Clock } from "./clock.js";
import type { Handler, Payload } from "./handler.js";
import { validateLimits, type LimitOptions, type ValidLimits } from "./limit-options.js";
import type { LimitStore } from "./limits.js";
import type { DispatchObserver } from "./observer.js";
import type { PinStore } from "./pins.js";
import { policyNames } from "./policy.js";
import { nonNegativeInt, nonNegativeNumber, positiveInt } from "./validate.js";
import { validateScheduling, type SchedulingOptions, type ValidSchedulingOptions } from "./scheduling-options.js";

export type { SchedulingOptions, ValidSchedulingOptions } from "./scheduling-options.js";
export { nonNegativeInt, nonNegativeNumber, positiveInt } from "./validate.js";

/** One worker of a backend, where the backend lists them one by one (e.g. one per endpoint). */
export interface WorkerOptions {
  /** Worker id suffix: the id becomes "<backend>/<name>". Default: the worker's index. */
  name?: string;
  /** Upstream URL handed to the handler. */
  endpoint?: string;
  /** Overrides the backend's maxConcurrency for this worker. */
  maxConcurrency?: number;
  /** Overrides the backend's queueCapacity for this worker. */
  queueCapacity?: number;
  /** Relative capacity in the load formula; a worker of weight 2 is chosen as if half as loaded. Default 1. */
  weight?: number;
  /** This worker's own rate and concurrency limits (its upstream key's), besides the backend's. */
  limits?: LimitOptions;
}

export interface BackendOptions {
  /** The name clients put in `SubmitRequest.backend`. Required. */
  name: string;
  /** Runs each job. Required. */
  handler: Handler;
  /** A worker count, or one entry per worker. Default 1. */
  workers?: number | WorkerOptions[];
  /** Jobs one worker runs at once. Default 4: a slow upstream rarely wants more per endpoint. */
  maxConcurrency?: number;
  /**
   * Jobs one worker holds waiting. Default 64: deep enough to absorb bursts,
   * shallow enough that a full queue is reported (RESOURCE_EXHAUSTED) rather
   * than turning into minutes of latency.
   */
  queueCapacity?: number;
  /**
   * Longest a handler may run, in ms; then its signal aborts and the caller
   * gets DEADLINE_EXCEEDED. Default 120000: LLM calls run for minutes, but a
   * handler that never settles must not hold a slot forever. 0 = no limit.
   */
  timeoutMs?: number;
  /**
   * Streaming handlers: longest wait for an attempt's first chunk, in ms; then
   * the attempt fails as a timeout and, while no chunk has reached the caller,
   * may fail over to another worker (with `retry`). Default 0: no limit but
   * timeoutMs.
   */
  firstChunkTimeoutMs?: number;
  /** Streaming handlers: longest wait for each later chunk once asked for, in ms. Default 0: no limit. */
  stallTimeoutMs?: number;
  /** Selection policy name. Default "least-loaded". */
  policy?: string;
  /** Session affinity. */
  affinity?: AffinityOptions;
  /** Runs failed jobs again. Default: none (every job runs once). */
  retry?: RetryOptions;
  /** Priority tiers and tenant fairness inside each worker's queue (DESIGN.md §10). */
  scheduling?: SchedulingOptions;
  /** Takes workers that keep failing out of selection for a while. Default: on, 5 consecutive failures. */
  outlier?: OutlierOptions;
  /** Rate and concurrency limits of all the backend's workers together (DESIGN.md §11). */
  limits?: LimitOptions;
  /** Tokens a request asks for (e.g. its max_tokens), reserved under token limits; undefined = use the estimate. */
  tokensFor?: (payload: Payload) => number | undefined;
  /**
   * Whether the handler runs inside the observer's context (runHandler: with
   * tracing on, the job's run span is the active span, so spans the handler
   * makes are its children). Default true. A handler that carries trace
   * context only through ctx.traceHeaders() sets false (the built-in kinds
   * do): on Node 20 an active context switches on async hooks for every
   * promise in the process, a third of a traced Submit's cost.
   */
  ambientTrace?: boolean;
  /**
   * Called once by the dispatcher's close(), after the backend's jobs have
   * settled: release connection pools and the like. Its errors are ignored.
   */
  close?: () => void | Promise<void>;
}

/**
 * Retries of jobs whose handler failed with a retryable DispatchError
 * (`retryable: true`, e.g. upstream 5xx, reset, 429). Backoff is "full
 * jitter": a uniform random wait in [0, min(maxBackoffMs, initialBackoffMs ×
 * multiplier^(n-1))] before retry n; an error's `retryAfterMs` replaces it.
 */
export interface RetryOptions {
  /** Most runs of one job, the first included. Default 3. 1 disables retries. */
  maxAttempts?: number;
  /** Backoff ceiling before the first retry, in ms. Default 200. */
  initialBackoffMs?: number;
  /**
   * Backoff ceiling, in ms. Default 10000. An upstream asking (Retry-After)
   * for a longer wait than this is not retried: its error goes to the caller.
   */
  maxBackoffMs?: number;
  /** Growth of the ceiling per retry. Default 2. */
  multiplier?: number;
  /**
   * Retries in progress may be at most this percentage of the backend's
   * active jobs, so that retries cannot multiply an outage. Default 20 (Envoy's retry budget).
   */
  budgetPercent?: number;
  /** Retries in progress always allowed whatever the budget, so that a quiet backend can still retry. Default 3. */
  minRetryConcurrency?: number;
}

/**
 * Outlier ejection: a worker whose attempts fail `consecutiveFailures` times
 * in a row with an upstream fault (UNAVAILABLE, INTERNAL, UNKNOWN,
 * DEADLINE_EXCEEDED, any retryable error, or the backend's timeout) leaves
 * selection for baseEjectionMs × (ejections in a row), capped at
 * maxEjectionMs, then serves again. Client cancels and client deadlines say
 * nothing of the upstream and never count. The last serving worker of a
 * backend is never ejected.
 */
export interface OutlierOptions {
  /** Failures in a row that eject a worker. Default 5. 0 disables ejection. */
  consecutiveFailures?: number;
  /** First ejection time, in ms. Default 30000 (Envoy's base_ejection_time). */
  baseEjectionMs?: number;
  /** Longest ejection, in ms. Default 300000 (Envoy's max_ejection_time). */
  maxEjectionMs?: number;
  /**
   * Most workers of a backend ejected at once, as a percentage; at least one
   * may go, never the last serving. Default 10 (Envoy's max_ejection_percent):
   * a fault shared by every upstream (a bad deploy, an expired key) must not
   * empty the backend.
   */
  maxEjectionPercent?: number;
}

export interface AffinityOptions {
  /**
   * Sliding pin lifetime in ms, refreshed on every hit. Default 600000 (10 min),
   * about as long as an upstream keeps a conversation's prompt cache. 0 disables affinity.
   */
  ttlMs?: number;
  /** Most live pins; the least recently used is evicted past it. Default 100000 (~20 MB with 64-byte keys: 142 B per pin beyond its key, BENCHMARKS.md). */
  maxPins?: number;
  /**
   * Bounded-load affinity (consistent hashing with bounded loads, Mirrokni et
   * al. 2018): a hit spills to the least-loaded worker when the pinned worker's
   * load, counting this job, would exceed this multiple of the backend's mean
   * load. Default 0 = off: a pin spills only when its worker cannot admit, so
   * a session keeps its upstream cache for as long as possible. Otherwise ≥ 1
   * (e.g. 1.25).
   */
  spillLoadFactor?: number;
}

export interface DispatcherOptions {
  /** Backends to register at once; more can be added with `register()`. */
  backends?: BackendOptions[];
  /** Telemetry hooks. Default: none. */
  observer?: DispatchObserver;
  /** Time source. Default: performance.now() and unref'd timers. */
  clock?: Clock;
  /** Uniform [0,1) random numbers for tie-breaks. Default Math.random. */
  random?: () => number;
  /** How long close() lets queued and running jobs finish before aborting them, in ms. Default 30000. */
  shutdownGraceMs?: number;
  /**
   * Told of an observer that threw (the job goes on regardless). Default:
   * a process warning. The service logs it.
   */
  onError?: (error: unknown, where: string) => void;
  /**
   * Where session pins are also kept, for other replicas (pins.ts): written
   * through, and read on a local miss. Default: none (pins live in this process).
   */
  pinStore?: PinStore;
  /**
   * Where limits are counted (limits.ts). Default: in this process
   * (local-limits.ts), created when some backend has limits.
   */
  limitStore?: LimitStore;
}

export interface ValidBackendOptions {
  name: string;
  scheduling: ValidSchedulingOptions;
  firstChunkTimeoutMs: number;
  stallTimeoutMs: number;
  handler: Handler;
  workers: ValidWorkerOptions[];
  timeoutMs: number;
  policy: string;
  ttlMs: number;
  maxPins: number;
  /** Undefined when the backend does not retry. */
  retry: Required<RetryOptions> | undefined;
  /** Undefined when ejection is off. */
  outlier: Required<OutlierOptions> | undefined;
  close: (() => void | Promise<void>) | undefined;
  spillLoadFactor: number;
  limits: ValidLimits | undefined;
  tokensFor: ((payload: Payload) => number | undefined) | undefined;
  ambientTrace: boolean;
}

export interface ValidWorkerOptions {
  name: string | undefined;
  endpoint: string | undefined;
  maxConcurrency: number;
  queueCapacity: number;
  weight: number;
  limits: ValidLimits | undefined;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Returns complete options or throws naming the option and the value received. */
export function validateBackendOptions(o: BackendOptions): ValidBackendOptions {
  if (typeof o !== "object" || o === null) throw new TypeError(`backend: expected an object, got ${String(o)}`);
  if (typeof o.name !== "string" || !NAME.test(o.name)) {
    throw new TypeError(`backend name: expected letters, digits, ".", "_" or "-" (1-63 chars), got ${JSON.stringify(o.name)}`);
  }
  const at = `backend "${o.name}"`;
  if (typeof o.handler !== "function") throw new TypeError(`${at}: handler must be a function, got ${typeof o.handler}`);
  const maxConcurrency = positiveInt(o.maxConcurrency ?? 4, `${at}: maxConcurrency`);
  const queueCapacity = nonNegativeInt(o.queueCapacity ?? 64, `${at}: queueCapacity`);
  const timeoutMs = nonNegativeInt(o.timeoutMs ?? 120_000, `${at}: timeoutMs`);
  const policy = o.policy ?? "least-loaded";
  if (!policyNames().includes(policy)) {
    throw new TypeError(`${at}: policy: unknown "${policy}"; known: ${policyNames().join(", ")}`);
  }
  const ttlMs = nonNegativeInt(o.affinity?.ttlMs ?? 600_000, `${at}: affinity.ttlMs`);
  const maxPins = positiveInt(o.affinity?.maxPins ?? 100_000, `${at}: affinity.maxPins`);
  const spillLoadFactor = o.affinity?.spillLoadFactor ?? 0;
  if (typeof spillLoadFactor !== "number" || !Number.isFinite(spillLoadFactor) || (spillLoadFactor !== 0 && spillLoadFactor < 1)) {
    throw new TypeError(`${at}: affinity.spillLoadFactor: expected 0 (off) or a number ≥ 1, got ${JSON.stringify(spillLoadFactor)}`);
  }
  const list = o.workers ?? 1;
  let workers: ValidWorkerOptions[];
  if (typeof list === "number") {
    const n = positiveInt(list, `${at}: workers`);
    workers = Array.from({ length: n }, () => ({
      name: undefined, endpoint: undefined, maxConcurrency, queueCapacity, weight: 1, limits: undefined,
    }));
  } else if (Array.isArray(list) && list.length > 0) {
    const seen = new Set<string>();
    workers = list.map((w, i) => {
      const wat = `${at}: workers[${i}]`;
      if (w.name !== undefined && (typeof w.name !== "string" || !NAME.test(w.name))) {
        throw new TypeError(`${wat}.name: expected letters, digits, ".", "_" or "-", got ${JSON.stringify(w.name)}`);
      }
      const id = w.name ?? String(i);
      if (seen.has(id)) throw new TypeError(`${wat}.name: duplicate worker name "${id}"`);
      seen.add(id);
      if (w.endpoint !== undefined && typeof w.endpoint !== "string") {
        throw new TypeError(`${wat}.endpoint: expected a string, got ${typeof w.endpoint}`);
      }
      const weight = w.weight ?? 1;
      if (typeof weight !== "number" || !(weight > 0) || !Number.isFinite(weight)) {
        throw new TypeError(`${wat}.weight: expected a positive number, got ${String(weight)}`);
      }
      return {
        name: w.name,
        endpoint: w.endpoint,
        maxConcurrency: positiveInt(w.maxConcurrency ?? maxConcurrency, `${wat}.maxConcurrency`),
        queueCapacity: nonNegativeInt(w.queueCapacity ?? queueCapacity, `${wat}.queueCapacity`),
        weight,
        limits: validateLimits(w.limits, `worker:${o.name}/${id}`, `${wat}.limits`),
      };
    });
  } else {
    throw new TypeError(`${at}: workers: expected a positive count or a non-empty list, got ${JSON.stringify(list)}`);
  }
  if (o.close !== undefined && typeof o.close !== "function") throw new TypeError(`${at}: close must be a function, got ${typeof o.close}`);
  return {
    name: o.name, handler: o.handler, workers, timeoutMs, policy, ttlMs, maxPins, spillLoadFactor,
    scheduling: validateScheduling(o.scheduling, `${at}: scheduling`),
    firstChunkTimeoutMs: nonNegativeNumber(o.firstChunkTimeoutMs ?? 0, `${at}: firstChunkTimeoutMs`),
    stallTimeoutMs: nonNegativeNumber(o.stallTimeoutMs ?? 0, `${at}: stallTimeoutMs`),
    retry: validateRetry(o.retry, `${at}: retry`),
    outlier: validateOutlier(o.outlier, `${at}: outlier`),
    close: o.close,
    limits: validateLimits(o.limits, `backend:${o.name}`, `${at}: limits`),
    tokensFor: o.tokensFor,
    ambientTrace: o.ambientTrace ?? true,
  };
}

function validateRetry(r: RetryOptions | undefined, at: string): Required<RetryOptions> | undefined {
  if (r === undefined) return undefined;
  if (typeof r !== "object" || r === null) throw new TypeError(`${at}: expected an object, got ${JSON.stringify(r)}`);
  const v: Required<RetryOptions> = {
    maxAttempts: positiveInt(r.maxAttempts ?? 3, `${at}.maxAttempts`),
    initialBackoffMs: nonNegativeNumber(r.initialBackoffMs ?? 200, `${at}.initialBackoffMs`),
    maxBackoffMs: nonNegativeNumber(r.maxBackoffMs ?? 10_000, `${at}.maxBackoffMs`),
    multiplier: nonNegativeNumber(r.multiplier ?? 2, `${at}.multiplier`),
    budgetPercent: nonNegativeNumber(r.budgetPercent ?? 20, `${at}.budgetPercent`),
    minRetryConcurrency: nonNegativeInt(r.minRetryConcurrency ?? 3, `${at}.minRetryConcurrency`),
  };
  if (v.multiplier < 1) throw new TypeError(`${at}.multiplier: expected a number ≥ 1, got ${v.multiplier}`);
  if (v.budgetPercent > 100) throw new TypeError(`${at}.budgetPercent: expected a percentage 0-100, got ${v.budgetPercent}`);
  return v.maxAttempts > 1 ? v : undefined;
}

function validateOutlier(r: OutlierOptions | undefined, at: string): Required<OutlierOptions> | undefined {
  if (r !== undefined && (typeof r !== "object" || r === null)) throw new TypeError(`${at}: expected an object, got ${JSON.stringify(r)}`);
  const v: Required<OutlierOptions> = {
    consecutiveFailures: nonNegativeInt(r?.consecutiveFailures ?? 5, `${at}.consecutiveFailures`),
    baseEjectionMs: nonNegativeNumber(r?.baseEjectionMs ?? 30_000, `${at}.baseEjectionMs`),
    maxEjectionMs: nonNegativeNumber(r?.maxEjectionMs ?? 300_000, `${at}.maxEjectionMs`),
    maxEjectionPercent: nonNegativeNumber(r?.maxEjectionPercent ?? 10, `${at}.maxEjectionPercent`),
  };
  if (v.maxEjectionPercent > 100) {
    throw new TypeError(`${at}.maxEjectionPercent: expected a percentage 0-100, got ${v.maxEjectionPercent}`);
  }
  if (v.maxEjectionMs < v.baseEjectionMs) {
    throw new TypeError(`${at}.maxEjectionMs: expected ≥ baseEjectionMs (${v.baseEjectionMs}), got ${v.maxEjectionMs}`);
  }
  return v.consecutiveFailures > 0 ? v : undefined;
}
