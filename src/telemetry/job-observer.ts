import { context, propagation, SpanStatusCode, trace, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { ATTR_ERROR_TYPE } from "@opentelemetry/semantic-conventions";
import type { DispatchError, DispatchObserver, JobOutcome, JobView } from "../core/index.js";
import { spanTime } from "./clock.js";
import type { JobMetrics, WorkerStats } from "./job-metrics.js";
import * as n from "./names.js";

/** What the observer keeps on a job (JobView.tag) between its events. */
class JobRecord {
  /** The context the job was submitted in: parent of its spans. */
  parent: Context | undefined = undefined;
  wait: Span | undefined = undefined;
  run: Span | undefined = undefined;
  /** `parent` with `run` as the active span: the handler's context. */
  runContext: Context | undefined = undefined;
  running = false;
  constructor(readonly stats: WorkerStats | undefined) {}
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
 * it holds however the job is later started. The run span is the active
 * context of the handler, so a backend's own spans and the trace headers of
 * its outgoing requests belong to it.
 *
 * Only the methods of enabled signals are defined: with neither, this is the
 * empty observer and the core calls nothing.
 */
export function createJobObserver(tracer: Tracer | undefined, metrics: JobMetrics | undefined): DispatchObserver {
  if (tracer === undefined && metrics === undefined) return {};

  const observer: DispatchObserver = {
    jobAdmitted(job) {
      const rec = new JobRecord(metrics?.stats(job));
      job.tag = rec;
      if (tracer !== undefined) {
        rec.parent = context.active();
        rec.wait = tracer.startSpan(
          n.SPAN_QUEUE_WAIT,
          {
            startTime: spanTime(),
            attributes: { [n.ATTR_BACKEND]: job.backend, [n.ATTR_WORKER_ID]: job.workerId, [n.ATTR_AFFINITY]: job.affinity },
          },
          rec.parent,
        );
      }
      if (rec.stats !== undefined) metrics!.admitted(job, rec.stats);
    },

    jobStarted(job) {
      const rec = job.tag as JobRecord;
      rec.running = true;
      if (tracer !== undefined) {
        const now = spanTime();
        rec.wait?.end(now);
        rec.wait = undefined;
        rec.run?.end(now); // a previous attempt's run, should the core start a job again
        rec.run = tracer.startSpan(
          n.SPAN_JOB_RUN,
          {
            startTime: now,
            attributes: {
              [n.ATTR_BACKEND]: job.backend,
              [n.ATTR_WORKER_ID]: job.workerId,
              [n.ATTR_AFFINITY]: job.affinity,
              [n.ATTR_ATTEMPT]: job.attempt,
            },
          },
          rec.parent,
        );
        rec.runContext = trace.setSpan(rec.parent!, rec.run);
      }
      if (rec.stats !== undefined) metrics!.started(job, rec.stats);
    },

    jobEnded(job, outcome, error) {
      const rec = job.tag as JobRecord;
      const span = rec.run ?? rec.wait;
      if (span !== undefined) {
        span.setAttribute(n.ATTR_OUTCOME, outcome);
        if (error !== undefined) {
          if (isFailure(outcome)) markFailed(span, error);
          else span.setAttribute(ATTR_ERROR_TYPE, error.code);
        }
        span.end(spanTime());
        rec.wait = rec.run = undefined;
      }
      if (rec.stats !== undefined) metrics!.ended(job, rec.stats, rec.running, outcome, error);
    },

    jobRejected(backend, workerId, error) {
      if (tracer !== undefined) {
        // No queue took the job: a zero-length queue-wait span says where and why, under the RPC's span.
        const now = spanTime();
        const span = tracer.startSpan(n.SPAN_QUEUE_WAIT, {
          startTime: now,
          attributes: { [n.ATTR_BACKEND]: backend, [n.ATTR_OUTCOME]: "rejected" },
        });
        if (workerId !== undefined) span.setAttribute(n.ATTR_WORKER_ID, workerId);
        markFailed(span, error);
        span.end(now);
      }
      metrics?.rejectedJob(backend, workerId, error);
    },
  };

  if (tracer !== undefined) {
    observer.runHandler = <T>(job: JobView, call: () => T): T => {
      const rec = job.tag as JobRecord;
      return rec.runContext === undefined ? call() : context.with(rec.runContext, call);
    };
    observer.injectHeaders = (job, carrier) => {
      const rec = job.tag as JobRecord | undefined;
      const ctx = rec?.runContext ?? rec?.parent;
      if (ctx !== undefined) propagation.inject(ctx, carrier);
    };
  }
  return observer;
}
