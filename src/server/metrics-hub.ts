import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ClusterMetricSchema,
  JobCountSchema,
  type JobCount,
  WorkerMetricsResponseSchema,
  type ClusterMetric,
  type WorkerMetric,
  type WorkerMetricsResponse,
} from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { ClusterSnapshot } from "../cluster/redis-health.js";
import type { AsyncJobState, WorkerSnapshot } from "../core/index.js";
import type { JobCounts } from "../jobs/counts.js";
import { durationOf, jobStateToProto, workerMetricToProto } from "./convert.js";

/**
 * Fans metrics out to WorkerMetrics streams. One timer and one snapshot per
 * distinct interval per tick, shared by every subscriber of that interval
 * (DESIGN.md §8); per backend filter (equal filters share, whatever Set holds
 * them) one response message and, for streams that take bytes, one encoded
 * frame written as is to every such stream.
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
  /**
   * From now on, writes each tick to `sink` as an enveloped frame (see
   * `FrameSink`) instead of through `next()`; a tick that arrived since the
   * subscription started is written at once. Rejects when the stream's signal
   * aborts or the hub closes; never resolves.
   */
  stream(sink: FrameSink): Promise<never>;
  unsubscribe(): void;
}

/**
 * A stream that takes each tick as a ready-made frame: flag byte 0, 4-byte
 * big-endian length, the binary WorkerMetricsResponse. gRPC, gRPC-Web and
 * the Connect streaming protocol frame an uncompressed message alike. The
 * same bytes go to every sink of a filter: a sink must not modify them.
 */
export interface FrameSink {
  write(frame: Uint8Array): void;
}

interface Tick {
  time: ReturnType<typeof timestampNow>;
  workers: WorkerMetric[];
  cluster: ClusterMetric | undefined;
  jobs: JobCount[];
  byFilter: Map<string, Shared>;
}

/** What subscribers of one filter share in one tick. */
interface Shared {
  message: WorkerMetricsResponse;
  frame: Uint8Array | undefined;
}

interface Ticker {
  timer: ReturnType<typeof setTimeout> | undefined;
  /** When the next tick is due (performance.now()). */
  due: number;
  subs: Set<Sub>;
}

/** Key of the "no filter" entry; a backend name is never empty. */
const ALL = "";

class Sub implements Subscription {
  pending: Tick | undefined = undefined;
  wake: (() => void) | undefined = undefined;
  failure: unknown = undefined;
  sink: FrameSink | undefined = undefined;
  ended: ((reason: unknown) => void) | undefined = undefined;

  constructor(
    private readonly hub: Hub,
    readonly intervalMs: number,
    readonly filter: ReadonlySet<string> | undefined,
    readonly key: string,
    readonly signal: AbortSignal,
  ) {
    signal.addEventListener("abort", this);
  }

  handleEvent(): void {
    this.fail(this.signal.reason);
  }

  fail(reason: unknown): void {
    if (this.failure === undefined) this.failure = reason ?? new ConnectError("stream ended", Code.Canceled);
    this.sink = undefined;
    this.wake?.();
    this.ended?.(this.failure);
  }

  deliver(tick: Tick): void {
    if (this.sink !== undefined) {
      this.sink.write(frameFor(tick, this.filter, this.key));
      return;
    }
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
    return sharedFor(tick, this.filter, this.key).message;
  }

  stream(sink: FrameSink): Promise<never> {
    return new Promise<never>((_, reject) => {
      if (this.failure !== undefined) return reject(this.failure);
      this.ended = reject;
      this.sink = sink;
      const tick = this.pending;
      this.pending = undefined;
      if (tick !== undefined) this.deliver(tick);
    });
  }

  unsubscribe(): void {
    this.signal.removeEventListener("abort", this);
    this.sink = undefined;
    this.hub.remove(this);
  }
}

function filterKey(filter: ReadonlySet<string> | undefined): string {
  return filter === undefined ? ALL : [...filter].sort().join("\n");
}

function sharedFor(tick: Tick, filter: ReadonlySet<string> | undefined, key: string): Shared {
  let s = tick.byFilter.get(key);
  if (s === undefined) {
    const workers = filter === undefined ? tick.workers : tick.workers.filter((w) => filter.has(w.backend));
    s = { message: create(WorkerMetricsResponseSchema, { time: tick.time, workers, cluster: tick.cluster, jobs: tick.jobs }), frame: undefined };
    tick.byFilter.set(key, s);
  }
  return s;
}

function frameFor(tick: Tick, filter: ReadonlySet<string> | undefined, key: string): Uint8Array {
  const s = sharedFor(tick, filter, key);
  if (s.frame === undefined) {
    const bytes = toBinary(WorkerMetricsResponseSchema, s.message);
    const frame = Buffer.allocUnsafe(5 + bytes.byteLength);
    frame[0] = 0;
    frame.writeUInt32BE(bytes.byteLength, 1);
    frame.set(bytes, 5);
    s.frame = frame;
  }
  return s.frame;
}

class Hub implements MetricsHub {
  private readonly tickers = new Map<number, Ticker>();
  private closed = false;
  subscribers = 0;

  constructor(
    private readonly snapshot: () => WorkerSnapshot[],
    private readonly cluster: (() => ClusterSnapshot) | undefined,
    private readonly jobs: (() => JobCounts) | undefined,
  ) {}

  private take(): Tick {
    const c = this.cluster?.();
    return {
      time: timestampNow(),
      workers: this.snapshot().map(workerMetricToProto),
      cluster: c === undefined ? undefined : clusterMetricToProto(c),
      jobs: this.jobs === undefined ? [] : jobCountsToProto(this.jobs()),
      byFilter: new Map(),
    };
  }

  current(filter: ReadonlySet<string> | undefined): WorkerMetricsResponse {
    return sharedFor(this.take(), filter, filterKey(filter)).message;
  }

  subscribe(intervalMs: number, filter: ReadonlySet<string> | undefined, signal: AbortSignal): Subscription {
    const sub = new Sub(this, intervalMs, filter, filterKey(filter), signal);
    if (this.closed) {
      sub.fail(shutdownError());
      return sub;
    }
    let ticker = this.tickers.get(intervalMs);
    if (ticker === undefined) {
      ticker = { timer: undefined, due: performance.now() + intervalMs, subs: new Set() };
      this.tickers.set(intervalMs, ticker);
      this.schedule(ticker, intervalMs);
    }
    ticker.subs.add(sub);
    this.subscribers++;
    return sub;
  }

  /**
   * Ticks are kept on a fixed grid (start + k × interval) rather than by
   * setInterval, which re-arms from the time its callback ran: every late
   * wake-up (a busy event loop, a tick's own work) then stretched the period
   * and subscribers lost ticks for good. A tick more than a whole interval
   * late is skipped, not bunched up with the next one.
   */
  private schedule(ticker: Ticker, intervalMs: number): void {
    const now = performance.now();
    if (ticker.due <= now - intervalMs) ticker.due += Math.floor((now - ticker.due) / intervalMs) * intervalMs;
    ticker.timer = setTimeout(() => {
      const tick = this.take();
      for (const s of ticker.subs) s.deliver(tick);
      ticker.due += intervalMs;
      this.schedule(ticker, intervalMs);
    }, Math.max(0, ticker.due - now));
  }

  remove(sub: Sub): void {
    const ticker = this.tickers.get(sub.intervalMs);
    if (ticker === undefined || !ticker.subs.delete(sub)) return;
    this.subscribers--;
    if (ticker.subs.size === 0) {
      clearTimeout(ticker.timer);
      this.tickers.delete(sub.intervalMs);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ticker of this.tickers.values()) {
      clearTimeout(ticker.timer);
      for (const s of ticker.subs) s.fail(shutdownError());
    }
  }
}

function shutdownError(): ConnectError {
  return new ConnectError("the server is shutting down; reconnect to another instance", Code.Unavailable);
}

export function createMetricsHub(snapshot: () => WorkerSnapshot[], cluster?: () => ClusterSnapshot, jobs?: () => JobCounts): MetricsHub {
  return new Hub(snapshot, cluster, jobs);
}



function jobCountsToProto(counts: JobCounts): JobCount[] {
  const out: JobCount[] = [];
  for (const [backend, byState] of Object.entries(counts)) {
    for (const [state, n] of Object.entries(byState)) {
      out.push(create(JobCountSchema, { backend, state: jobStateToProto(state as AsyncJobState), count: BigInt(n ?? 0) }));
    }
  }
  return out;
}

function clusterMetricToProto(c: ClusterSnapshot): ClusterMetric {
  return create(ClusterMetricSchema, {
    redisUp: c.redisUp,
    redisRttP50: durationOf(c.rttP50Ms),
    redisRttP99: durationOf(c.rttP99Ms),
    redisErrors: BigInt(c.errors),
    replicas: c.replicas,
  });
}
