import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { ATTR_ERROR_TYPE } from "@opentelemetry/semantic-conventions";
import type { DispatchError, DispatchObserver, JobOutcome, JobView } from "../core/index.js";
import { spanMs, spanMsAt, spanTimeAt } from "./clock.js";
import type { JobMetrics, WorkerStats } from "./job-metrics.js";
import { spanStarter } from "./lean-span.js";
import { SpanInContext } from "./span-context.js";
import * as n from "./names.js";

/** What the observer keeps on a job (JobView.tag) between its events. */
class JobRecord {
  /** The context the job was submitted in: parent of its spans. */
  parent: Context | undefined = undefined;
  wait: Span | undefined = undefined;
  run: Span | undefined = undefined;
  /** `parent` with `run` as the active span: the handler's context, made when first asked for. */
  runContext: Context | undefined = undefined;
  /** The current attempt's worker: every count is charged to the worker the attempt was on. */
  stats: WorkerStats | undefined = undefined;
  /** Clock ms of the last chunk of a streaming attempt. */
  lastChunkAt = 0;
}

/**
 * Outcomes that make a job span an error. A client's cancel is not the
 * server's failure (as CANCELLED does not mark a gRPC SERVER span); the
 * outcome attribute still says what happened.
 */
function isFailure(outcome: JobOutcome): boolean {
  return outcome !== "ok" && outcome !== "cancelled";
}

function markFailed(span: Span, error: DispatchError): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  span.setAttribute(ATTR_ERROR_TYPE, error.code);
}

/**
 * The core's DispatchObserver on OpenTelemetry. Per job: a
 * `dispatcher.queue.wait` span from admission to start and a
 * `dispatcher.job.run` span from start to end, both children of the context
 * the job was submitted in (the RPC's SERVER span), captured at admission so
 * it holds however the job is later started (the RPC's context arrives as
 * JobView.traceParent; else the active one). The trace headers of a
 * backend's outgoing requests belong to the run span; for a backend with
 * ambientTrace (user code) the run span is also the active context of its
 * handler, so the spans it makes are children of it.
 *
 * Only the methods of enabled signals are defined: with neither, this is the
 * empty observer and the core calls nothing.
 */
export function createJobObserver(tracer: Tracer | undefined, metrics: JobMetrics | undefined): DispatchObserver {
  if (tracer === undefined && metrics === undefined) return {};
  const spans = tracer === undefined ? undefined : spanStarter(tracer);

  const attributes = (job: JobView) => ({
    [n.ATTR_BACKEND]: job.backend,
    [n.ATTR_WORKER_ID]: job.workerId,
    [n.ATTR_AFFINITY]: job.affinity,
    [n.ATTR_ATTEMPT]: job.attempt,
  });

  const observer: DispatchObserver = {
    jobQueued(job) {
      let rec = job.tag as JobRecord | undefined;
      if (rec === undefined) {
        rec = new JobRecord();
        job.tag = rec;
        // The submitter's context (the RPC's span, handed over as a value; else the active one);
        // a retry is queued from a timer, so it keeps the first attempt's.
        if (spans !== undefined) rec.parent = (job.traceParent as Context | undefined) ?? context.active();
      }
      if (spans !== undefined) {
        rec.wait = spans.start(n.SPAN_QUEUE_WAIT, SpanKind.INTERNAL, attributes(job), rec.parent!, spanMsAt(job.queuedAt));
      }
      if (metrics !== undefined) {
        rec.stats = metrics.stats(job);
        metrics.queued(job, rec.stats);
      }
    },

    jobStarted(job) {
      const rec = job.tag as JobRecord;
      if (spans !== undefined) {
        // The core's own times: the spans last what the client is told (queue_wait, execution).
        const now = spanMsAt(job.startedAt);
        rec.wait?.setAttribute(n.ATTR_OUTCOME, "started");
        rec.wait?.end(now);
        rec.wait = undefined;
        rec.run = spans.start(n.SPAN_JOB_RUN, SpanKind.INTERNAL, attributes(job), rec.parent!, now);
      }
      if (rec.stats !== undefined) metrics!.started(job, rec.stats);
    },

    jobChunk(job) {
      const rec = job.tag as JobRecord;
      const now = job.chunks === 1 ? job.firstChunkAt : performance.now();
      if (job.chunks === 1) rec.run?.addEvent(n.EVENT_FIRST_CHUNK, { "dispatcher.time_to_first_chunk": (now - job.startedAt) / 1000 }, spanTimeAt(now));
      if (rec.stats !== undefined) metrics!.chunk(job, rec.stats, job.chunks === 1 ? now - job.startedAt : now - rec.lastChunkAt);
      rec.lastChunkAt = now;
    },

    jobRetrying(job, error, delayMs) {
      const rec = job.tag as JobRecord;
      if (rec.run !== undefined) {
        // The failed attempt's span ends when it failed: the backoff is no part of its run.
        rec.run.setAttribute(n.ATTR_OUTCOME, "error");
        rec.run.setAttribute(n.ATTR_RETRY_DELAY, delayMs / 1000);
        markFailed(rec.run, error);
        rec.run.end(spanMsAt(job.endedAt));
        rec.run = rec.runContext = undefined;
      }
      if (rec.stats !== undefined) metrics!.attemptEnded(job, rec.stats, "running", "error", error, true);
    },

    jobEnded(job, outcome, error, from) {
      const rec = job.tag as JobRecord;
      const span = rec.run ?? rec.wait;
      if (span !== undefined) {
        span.setAttribute(n.ATTR_OUTCOME, outcome);
        if (error !== undefined) {
          if (isFailure(outcome)) markFailed(span, error);
          else span.setAttribute(ATTR_ERROR_TYPE, error.code);
        }
        span.end(spanMsAt(job.endedAt));
        rec.wait = rec.run = rec.runContext = undefined;
      }
      if (rec.stats !== undefined) {
        metrics!.attemptEnded(job, rec.stats, from, outcome, error, false);
        const tokens = job.chunks > 0 ? Number(job.result?.metadata?.["completion_tokens"]) : NaN;
        if (tokens > 0) metrics!.tokens(rec.stats, tokens);
      }
    },

    jobRejected(backend, workerId, error, call, traceParent) {
      if (spans !== undefined) {
        // No queue took the job: a zero-length queue-wait span says where and why, under the RPC's span.
        const now = spanMs();
        const span = spans.start(
          n.SPAN_QUEUE_WAIT,
          SpanKind.INTERNAL,
          { [n.ATTR_BACKEND]: backend, [n.ATTR_OUTCOME]: "rejected" },
          (traceParent as Context | undefined) ?? context.active(),
          now,
        );
        if (workerId !== undefined) span.setAttribute(n.ATTR_WORKER_ID, workerId);
        markFailed(span, error);
        span.end(now);
      }
      metrics?.rejectedJob(backend, workerId, error, call);
    },
  };

  if (spans !== undefined) {
    /** The run span's context, made only for a handler that runs in it or sends its trace headers. */
    const runContext = (rec: JobRecord): Context | undefined => {
      if (rec.run === undefined) return rec.parent;
      return (rec.runContext ??= new SpanInContext(rec.parent!, rec.run));
    };
    observer.runHandler = <T>(job: JobView, call: () => T): T => {
      const rec = job.tag as JobRecord;
      const ctx = rec.run === undefined ? undefined : runContext(rec);
      return ctx === undefined ? call() : context.with(ctx, call);
    };
    observer.injectHeaders = (job, carrier) => {
      const rec = job.tag as JobRecord | undefined;
      const ctx = rec === undefined ? undefined : runContext(rec);
      if (ctx !== undefined) propagation.inject(ctx, carrier);
    };
  }
  return observer;
}
