import type { Attributes, Histogram, Meter, ObservableResult } from "@opentelemetry/api";
import { ATTR_ERROR_TYPE } from "@opentelemetry/semantic-conventions";
import type { AffinityOutcome, DispatchError, JobOutcome, JobState, JobView } from "../core/index.js";
import * as n from "./names.js";

/** A monotonic count with the attributes it is reported under. */
interface Count {
  readonly attributes: Attributes;
  value: number;
}

/** Counts keyed by a string built from their attributes; read by observable instruments at collection. */
class Tally {
  readonly entries = new Map<string, Count>();

  add(key: string, attributes: () => Attributes): void {
    let c = this.entries.get(key);
    if (c === undefined) {
      c = { attributes: attributes(), value: 0 };
      this.entries.set(key, c);
    }
    c.value++;
  }

  observe = (result: ObservableResult): void => {
    for (const c of this.entries.values()) result.observe(c.value, c.attributes);
  };
}

/** Per-worker state, found once per event by worker id. */
export class WorkerStats {
  queued = 0;
  inflight = 0;
  readonly completed: Count;
  readonly retries: Count;
  readonly chunks: Count;
  readonly tokens: Count;
  readonly runAttributes = new Map<JobOutcome, Attributes>();

  constructor(readonly attributes: Attributes) {
    this.completed = { attributes, value: 0 };
    this.retries = { attributes, value: 0 };
    this.chunks = { attributes, value: 0 };
    this.tokens = { attributes, value: 0 };
  }

  runAttributesFor(outcome: JobOutcome): Attributes {
    let a = this.runAttributes.get(outcome);
    if (a === undefined) {
      a = { ...this.attributes, [n.ATTR_OUTCOME]: outcome };
      this.runAttributes.set(outcome, a);
    }
    return a;
  }
}

/**
 * The dispatcher's metrics. Histograms are recorded as jobs start and end;
 * counts and gauges are plain numbers kept here and read by observable
 * instruments when a reader collects, so the submit path pays a Map lookup
 * and an increment for them, not an SDK call with attribute hashing.
 */
export class JobMetrics {
  private readonly workers = new Map<string, WorkerStats>();
  private readonly queueWait: Histogram;
  private readonly run: Histogram;
  private readonly errors = new Tally();
  private readonly cancelled = new Tally();
  private readonly rejected = new Tally();
  private readonly affinity = new Tally();
  private readonly displaced = new Tally();
  private readonly tenantRejected = new Tally();
  /** Queued jobs per worker and tier, from the events. */
  private readonly byPriority = new Map<string, { attributes: Attributes; value: number }>();
  /** Tenants given their own label, first come (at most TOP_TENANT_LABELS). */
  private readonly labelled = new Set<string>();
  private readonly ttft: Histogram;
  private readonly interChunk: Histogram;
  private readonly estimateError: Histogram;
  private readonly tierWait: Histogram;
  /** {backend, priority} attribute sets, made once each (backends × tiers: bounded). */
  private readonly tierAttrs = new Map<string, Attributes>();

  constructor(meter: Meter) {
    const advice = { explicitBucketBoundaries: n.DURATION_BUCKETS_S };
    this.queueWait = meter.createHistogram(n.METRIC_QUEUE_WAIT, {
      unit: "s",
      description: "Time jobs spent in a worker's queue, from admission to start",
      advice,
    });
    this.run = meter.createHistogram(n.METRIC_JOB_RUN, {
      unit: "s",
      description: "Time jobs' handlers ran, from start to end, by outcome",
      advice,
    });
    this.ttft = meter.createHistogram(n.METRIC_TTFT, {
      unit: "s",
      description: "Time from a streaming attempt's start to its first chunk",
      advice,
    });
    this.interChunk = meter.createHistogram(n.METRIC_INTER_CHUNK, { unit: "s", description: "Time between a stream's chunks", advice });
    this.tierWait = meter.createHistogram(n.METRIC_QUEUE_WAIT_BY_PRIORITY, {
      unit: "s",
      description: "Time jobs spent queued, per backend and priority tier",
      advice,
    });
    this.estimateError = meter.createHistogram(n.METRIC_WAIT_ESTIMATE_ERROR, {
      unit: "s",
      description: "How far an admission's estimated queue wait was from the actual wait (absolute)",
      advice,
    });
    meter
      .createObservableCounter(n.METRIC_CHUNKS, { unit: "{chunk}", description: "Chunks streamed by handlers" })
      .addCallback((r) => {
        for (const w of this.workers.values()) r.observe(w.chunks.value, w.attributes);
      });
    meter
      .createObservableCounter(n.METRIC_TOKENS, { unit: "{token}", description: "Completion tokens of finished streams, from their usage metadata" })
      .addCallback((r) => {
        for (const w of this.workers.values()) r.observe(w.tokens.value, w.attributes);
      });
    meter
      .createObservableCounter(n.METRIC_DISPLACED, { unit: "{job}", description: "Queued jobs given up for a more urgent call on a full queue, by the tier they were in" })
      .addCallback(this.displaced.observe);
    meter
      .createObservableCounter(n.METRIC_TENANT_REJECTED, {
        unit: "{job}",
        description: "Calls refused at admission, by tenant (the first 10 tenants seen, the rest as (other))",
      })
      .addCallback(this.tenantRejected.observe);
    meter
      .createObservableGauge(n.METRIC_QUEUE_DEPTH_BY_PRIORITY, { unit: "{job}", description: "Jobs waiting in a worker's queue, by priority tier" })
      .addCallback((r) => {
        for (const c of this.byPriority.values()) r.observe(c.value, c.attributes);
      });
    meter
      .createObservableGauge(n.METRIC_QUEUE_DEPTH, { unit: "{job}", description: "Jobs waiting in a worker's queue" })
      .addCallback((r) => {
        for (const w of this.workers.values()) r.observe(w.queued, w.attributes);
      });
    meter
      .createObservableGauge(n.METRIC_INFLIGHT, { unit: "{job}", description: "Jobs running on a worker" })
      .addCallback((r) => {
        for (const w of this.workers.values()) r.observe(w.inflight, w.attributes);
      });
    meter
      .createObservableCounter(n.METRIC_COMPLETED, { unit: "{job}", description: "Jobs whose handler succeeded" })
      .addCallback((r) => {
        for (const w of this.workers.values()) r.observe(w.completed.value, w.attributes);
      });
    meter
      .createObservableCounter(n.METRIC_RETRIES, { unit: "{attempt}", description: "Failed attempts that were retried" })
      .addCallback((r) => {
        for (const w of this.workers.values()) r.observe(w.retries.value, w.attributes);
      });
    meter
      .createObservableCounter(n.METRIC_ERRORS, { unit: "{job}", description: "Attempts whose handler failed or timed out (retried ones included), by error.type" })
      .addCallback(this.errors.observe);
    meter
      .createObservableCounter(n.METRIC_CANCELLED, {
        unit: "{job}",
        description: "Jobs ended by the client: cancelled, deadline exceeded, or cut by shutdown (dispatcher.outcome)",
      })
      .addCallback(this.cancelled.observe);
    meter
      .createObservableCounter(n.METRIC_REJECTED, { unit: "{job}", description: "Submits refused before any worker took them, by error.type" })
      .addCallback(this.rejected.observe);
    meter
      .createObservableCounter(n.METRIC_AFFINITY, { unit: "{job}", description: "Worker selections by affinity outcome" })
      .addCallback(this.affinity.observe);
  }

  stats(job: JobView): WorkerStats {
    let w = this.workers.get(job.workerId);
    if (w === undefined) {
      w = new WorkerStats({ [n.ATTR_BACKEND]: job.backend, [n.ATTR_WORKER_ID]: job.workerId });
      this.workers.set(job.workerId, w);
    }
    return w;
  }

  private tierCount(job: JobView, w: WorkerStats, d: number): void {
    const key = `${job.workerId}\0${job.priority}`;
    let c = this.byPriority.get(key);
    if (c === undefined) {
      c = { attributes: { ...w.attributes, [n.ATTR_PRIORITY]: job.priority }, value: 0 };
      this.byPriority.set(key, c);
    }
    c.value += d;
  }

  /** An attempt joined `w`'s queue. */
  queued(job: JobView, w: WorkerStats): void {
    w.queued++;
    this.tierCount(job, w, 1);
    const a: AffinityOutcome = job.affinity;
    this.affinity.add(`${job.workerId}\0${a}`, () => ({ ...w.attributes, [n.ATTR_AFFINITY]: a }));
  }

  started(job: JobView, w: WorkerStats): void {
    w.queued--;
    this.tierCount(job, w, -1);
    w.inflight++;
    // This attempt's wait: a retry's queue wait starts when it was queued again, not at admission.
    const waited = job.startedAt - job.queuedAt;
    this.queueWait.record(waited / 1000, w.attributes);
    this.tierWait.record(waited / 1000, this.tierAttributes(job));
    if (job.attempt === 1 && job.predictedWaitMs !== undefined) this.estimateError.record(Math.abs(waited - job.predictedWaitMs) / 1000, w.attributes);
  }

  private tierAttributes(job: JobView): Attributes {
    const key = `${job.backend}\0${job.priority}`;
    let a = this.tierAttrs.get(key);
    if (a === undefined) {
      a = { [n.ATTR_BACKEND]: job.backend, [n.ATTR_PRIORITY]: job.priority };
      this.tierAttrs.set(key, a);
    }
    return a;
  }

  /** A chunk of a streaming attempt: `gapMs` since the attempt's start (the first) or the previous chunk. */
  chunk(job: JobView, w: WorkerStats, gapMs: number): void {
    w.chunks.value++;
    (job.chunks === 1 ? this.ttft : this.interChunk).record(Math.max(0, gapMs) / 1000, w.attributes);
  }

  /** Completion tokens a finished stream reported. */
  tokens(w: WorkerStats, n: number): void {
    w.tokens.value += n;
  }

  /**
   * An attempt on `w` ended, from the state it was in ("backoff": the job
   * ended while waiting to retry, with no attempt live: nothing to charge).
   */
  attemptEnded(
    job: JobView,
    w: WorkerStats,
    from: JobState,
    outcome: JobOutcome,
    error: DispatchError | undefined,
    retrying: boolean,
  ): void {
    if (from === "running") {
      w.inflight--;
      this.run.record((job.endedAt - job.startedAt) / 1000, w.runAttributesFor(outcome));
    } else if (from === "queued") {
      w.queued--;
      this.tierCount(job, w, -1);
    } else {
      return;
    }
    if (retrying) w.retries.value++;
    if (outcome === "ok") {
      w.completed.value++;
    } else if (outcome === "displaced") {
      this.displaced.add(`${job.workerId}\0${job.priority}`, () => ({ ...w.attributes, [n.ATTR_PRIORITY]: job.priority }));
    } else if (outcome === "error" || outcome === "timeout") {
      const type = error?.code ?? "unknown";
      this.errors.add(`${job.workerId}\0${type}`, () => ({ ...w.attributes, [ATTR_ERROR_TYPE]: type }));
    } else {
      this.cancelled.add(`${job.workerId}\0${outcome}`, () => ({ ...w.attributes, [n.ATTR_OUTCOME]: outcome }));
    }
  }

  rejectedJob(requested: string, workerId: string | undefined, error: DispatchError, call?: { priority: number; tenant: string }): void {
    if (call !== undefined && workerId !== undefined) {
      let tenant = call.tenant;
      if (!this.labelled.has(tenant)) {
        if (this.labelled.size < n.TOP_TENANT_LABELS) this.labelled.add(tenant);
        else tenant = n.OTHER_TENANT;
      }
      const p = call.priority;
      this.tenantRejected.add(`${requested}\0${tenant}\0${p}`, () => ({ [n.ATTR_BACKEND]: requested, [n.ATTR_TENANT]: tenant, [n.ATTR_PRIORITY]: p }));
    }
    // An unknown or missing backend name is the client's text: not a label, or clients could mint series.
    const backend = error.code === "not_found" || error.code === "invalid_argument" ? undefined : requested;
    this.rejected.add(`${backend ?? ""}\0${workerId ?? ""}\0${error.code}`, () => {
      const a: Attributes = { [ATTR_ERROR_TYPE]: error.code };
      if (backend !== undefined) a[n.ATTR_BACKEND] = backend;
      if (workerId !== undefined) a[n.ATTR_WORKER_ID] = workerId;
      return a;
    });
  }
}
