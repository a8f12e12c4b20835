import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  WorkerMetricsResponseSchema,
  type WorkerMetric,
  type WorkerMetricsResponse,
} from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { WorkerSnapshot } from "../core/index.js";
import { workerMetricToProto } from "./convert.js";

/**
 * Fans metrics out to WorkerMetrics streams. One timer and one snapshot per
 * distinct interval per tick, shared by every subscriber of that interval;
 * responses are memoised per backend filter, so subscribers with the same
 * filter share one message.
 */
export interface MetricsHub {
  /** A fresh message now, for a stream's first response. */
  current(filter: ReadonlySet<string> | undefined): WorkerMetricsResponse;
  subscribe(intervalMs: number, filter: ReadonlySet<string> | undefined, signal: AbortSignal): Subscription;
  readonly subscribers: number;
  /** Ends every stream with UNAVAILABLE and stops all timers. Idempotent. */
  close(): void;
}

export interface Subscription {
  /** The next tick's message; rejects when the stream's signal aborts or the hub closes. */
  next(): Promise<WorkerMetricsResponse>;
  unsubscribe(): void;
}

interface Tick {
  time: ReturnType<typeof timestampNow>;
  workers: WorkerMetric[];
  byFilter: Map<ReadonlySet<string> | undefined, WorkerMetricsResponse>;
}

interface Ticker {
  timer: ReturnType<typeof setInterval>;
  subs: Set<Sub>;
}

class Sub implements Subscription {
  pending: Tick | undefined = undefined;
  wake: (() => void) | undefined = undefined;
  failure: unknown = undefined;

  constructor(
    private readonly hub: Hub,
    readonly intervalMs: number,
    readonly filter: ReadonlySet<string> | undefined,
    readonly signal: AbortSignal,
  ) {
    signal.addEventListener("abort", this);
  }

  handleEvent(): void {
    this.fail(this.signal.reason);
  }

  fail(reason: unknown): void {
    if (this.failure === undefined) this.failure = reason ?? new ConnectError("stream ended", Code.Canceled);
    this.wake?.();
  }

  deliver(tick: Tick): void {
    this.pending = tick;
    this.wake?.();
  }

  async next(): Promise<WorkerMetricsResponse> {
    while (this.pending === undefined && this.failure === undefined) {
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
    if (this.failure !== undefined) throw this.failure;
    const tick = this.pending!;
    this.pending = undefined;
    return responseFor(tick, this.filter);
  }

  unsubscribe(): void {
    this.signal.removeEventListener("abort", this);
    this.hub.remove(this);
  }
}

function responseFor(tick: Tick, filter: ReadonlySet<string> | undefined): WorkerMetricsResponse {
  let r = tick.byFilter.get(filter);
  if (r === undefined) {
    const workers = filter === undefined ? tick.workers : tick.workers.filter((w) => filter.has(w.backend));
    r = create(WorkerMetricsResponseSchema, { time: tick.time, workers });
    tick.byFilter.set(filter, r);
  }
  return r;
}

class Hub implements MetricsHub {
  private readonly tickers = new Map<number, Ticker>();
  private closed = false;
  subscribers = 0;

  constructor(private readonly snapshot: () => WorkerSnapshot[]) {}

  private take(): Tick {
    return { time: timestampNow(), workers: this.snapshot().map(workerMetricToProto), byFilter: new Map() };
  }

  current(filter: ReadonlySet<string> | undefined): WorkerMetricsResponse {
    return responseFor(this.take(), filter);
  }

  subscribe(intervalMs: number, filter: ReadonlySet<string> | undefined, signal: AbortSignal): Subscription {
    const sub = new Sub(this, intervalMs, filter, signal);
    if (this.closed) {
      sub.fail(shutdownError());
      return sub;
    }
    let ticker = this.tickers.get(intervalMs);
    if (ticker === undefined) {
      const subs = new Set<Sub>();
      const timer = setInterval(() => {
        const tick = this.take();
        for (const s of subs) s.deliver(tick);
      }, intervalMs);
      ticker = { timer, subs };
      this.tickers.set(intervalMs, ticker);
    }
    ticker.subs.add(sub);
    this.subscribers++;
    return sub;
  }

  remove(sub: Sub): void {
    const ticker = this.tickers.get(sub.intervalMs);
    if (ticker === undefined || !ticker.subs.delete(sub)) return;
    this.subscribers--;
    if (ticker.subs.size === 0) {
      clearInterval(ticker.timer);
      this.tickers.delete(sub.intervalMs);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ticker of this.tickers.values()) {
      clearInterval(ticker.timer);
      for (const s of ticker.subs) s.fail(shutdownError());
    }
  }
}

function shutdownError(): ConnectError {
  return new ConnectError("the server is shutting down; reconnect to another instance", Code.Unavailable);
}

export function createMetricsHub(snapshot: () => WorkerSnapshot[]): MetricsHub {
  return new Hub(snapshot);
}
