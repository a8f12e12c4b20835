import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { context, propagation, type Context } from "@opentelemetry/api";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import {
  ChunkSchema,
  JobEventSchema,
  JobSchema,
  SubmitRequestSchema,
  SubmitResponseSchema,
  type CancelJobRequest,
  type EnqueueRequest,
  type EnqueueResponse,
  type GetJobRequest,
  type Job,
  type JobEvent,
  type WatchJobRequest,
} from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { isTerminal, type AsyncJob, type Dispatcher, type ErrorCode, type JobStore } from "../core/index.js";
import { checkSubmit } from "../server/dispatcher-service.js";
import { jobStateToProto } from "../server/convert.js";
import { statusOfCode } from "../server/errors.js";
import type { Limits } from "../server/limits.js";
import { traceParentOf } from "../server/trace-parent.js";

/** `jobs:` config (docs/jobs.md). */
export interface JobsSettings {
  /** Most queued background jobs per backend. */
  maxQueued: number;
  /** Timeout of a job whose Enqueue sets none, and the longest one may set, ms. */
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
}

const MAX_KEY_LENGTH = 128;
/** Job ids are UUIDs: anything else is a client's mistake, refused before the store is asked. */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Events per store read while watching, and how often a live watch looks for more, ms. */
const PAGE = 100;
const POLL_MS = 50;
/** WatchJob streams one replica serves at once: each polls the store, so a client must not open them without bound. */
export const MAX_WATCHES = 1_000;


/** The four RPCs of background jobs (DESIGN.md §12), over a JobStore; the runner (runner.ts) runs what they accept. */
export function jobMethods(dispatcher: Dispatcher, store: JobStore, settings: JobsSettings, limits: Limits, maxWatches = MAX_WATCHES) {
  let watching = 0;
  return {
    async enqueue(req: EnqueueRequest, ctx: HandlerContext): Promise<EnqueueResponse> {
      const r = req.request;
      if (r === undefined) throw new ConnectError("request: required (the SubmitRequest to run)", Code.InvalidArgument);
      checkSubmit(r, limits);
      if (!dispatcher.backendNames().includes(r.backend)) {
        throw new ConnectError(`unknown backend "${r.backend}"; known backends: ${dispatcher.backendNames().join(", ")}`, Code.NotFound);
      }
      if (req.idempotencyKey.length > MAX_KEY_LENGTH) {
        throw new ConnectError(`idempotency_key: ${req.idempotencyKey.length} characters, over the limit of ${MAX_KEY_LENGTH}`, Code.InvalidArgument);
      }
      let timeoutMs = settings.defaultTimeoutMs;
      if (req.timeout !== undefined) {
        timeoutMs = Number(req.timeout.seconds) * 1000 + req.timeout.nanos / 1e6;
        if (!(timeoutMs > 0) || timeoutMs > settings.maxTimeoutMs) {
          throw new ConnectError(`timeout: expected more than 0 and at most ${settings.maxTimeoutMs} ms (jobs.max_timeout), got ${timeoutMs} ms`, Code.InvalidArgument);
        }
      }
      if (dispatcher.closing) throw new ConnectError("the service is shutting down", Code.Unavailable);
      const out = await store
        .enqueue({ backend: r.backend, request: toBinary(SubmitRequestSchema, r), idempotencyKey: req.idempotencyKey, deadline: Date.now() + timeoutMs, traceparent: traceparentOf(ctx) }, settings.maxQueued)
        .catch(storeDown);
      if ("refused" in out) throw new ConnectError(out.refused, Code.ResourceExhausted);
      return { $typeName: "dispatcher.v1.EnqueueResponse", jobId: out.id, created: out.created };
    },

    async getJob(req: GetJobRequest): Promise<Job> {
      const job = await store.get(checkId(req.jobId)).catch(storeDown);
      if (job === undefined) throw notFound(req.jobId);
      return jobToProto(job);
    },

    async cancelJob(req: CancelJobRequest): Promise<Job> {
      const job = await store.cancel(checkId(req.jobId)).catch(storeDown);
      if (job === undefined) throw notFound(req.jobId);
      return jobToProto(job);
    },

    async *watchJob(req: WatchJobRequest, ctx: HandlerContext): AsyncGenerator<JobEvent> {
      const id = checkId(req.jobId);
      let after = req.afterEventId === "" ? undefined : req.afterEventId;
      if (after !== undefined && !store.validEventId(after)) {
        throw new ConnectError(`after_event_id: "${after.slice(0, 64)}" is not an event id of this service`, Code.InvalidArgument);
      }
      if (watching >= maxWatches) {
        throw new ConnectError(`${watching} WatchJob streams are open, the most this replica serves; poll GetJob or try again`, Code.ResourceExhausted);
      }
      watching++;
      try {
        yield* watch(id, after, ctx);
      } finally {
        watching--;
      }
    },
  };

  async function* watch(id: string, after: string | undefined, ctx: HandlerContext): AsyncGenerator<JobEvent> {
    for (;;) {
      const page = await store.events(id, after, PAGE).catch(storeDown);
      if (page === undefined) throw notFound(id);
      for (const e of page.events) {
        after = e.id;
        const ev = create(JobEventSchema, { eventId: e.id, time: timestampFromMs(e.time) });
        if (e.chunk !== undefined) ev.event = { case: "chunk", value: fromBinary(ChunkSchema, e.chunk) };
        else if (e.state !== undefined) {
          ev.event = { case: "state", value: jobStateToProto(e.state) };
          if (isTerminal(e.state)) ev.job = jobToProto(page.job);
        }
        yield ev;
        if (e.state !== undefined && isTerminal(e.state)) return;
      }
      if (page.events.length === PAGE) continue;
      // Resumed after the terminal event: nothing more will come.
      if (isTerminal(page.job.state)) return;
      await sleepUnless(POLL_MS, ctx.signal);
    }
  }
}

export function jobToProto(j: AsyncJob): Job {
  const ts = (ms: number) => (ms > 0 ? timestampFromMs(ms) : undefined);
  return create(JobSchema, {
    jobId: j.id,
    backend: j.backend,
    state: jobStateToProto(j.state),
    result: j.result === undefined ? undefined : fromBinary(SubmitResponseSchema, j.result),
    error: j.errorCode === "" ? undefined : { code: statusOfCode(j.errorCode as ErrorCode), message: j.errorMessage },
    createdAt: ts(j.createdAt),
    startedAt: ts(j.startedAt),
    finishedAt: ts(j.finishedAt),
    attempts: j.attempts,
    workerId: j.workerId,
    idempotencyKey: j.idempotencyKey,
    deadline: ts(j.deadline),
  });
}

/** The Enqueue call's own trace context (its server span, when tracing is on), for the run's span to link to. */
function traceparentOf(ctx: HandlerContext): string {
  const carrier: Record<string, string> = {};
  propagation.inject((traceParentOf(ctx) as Context | undefined) ?? context.active(), carrier);
  return carrier["traceparent"] ?? "";
}

function checkId(id: string): string {
  if (!JOB_ID.test(id)) throw new ConnectError(`job_id: "${id.slice(0, 64)}" is not a job id (a UUID from Enqueue)`, Code.InvalidArgument);
  return id;
}

function notFound(id: string): ConnectError {
  return new ConnectError(`no job "${id}" (unknown, or ended longer ago than jobs.result_ttl)`, Code.NotFound);
}

/** The store failed (Redis down): the client may retry; the cause stays in the server's log, not the answer. */
function storeDown(e: unknown): never {
  if (e instanceof ConnectError) throw e;
  throw new ConnectError("the job store is unavailable; try again", Code.Unavailable);
}

function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new ConnectError("the client cancelled the call", Code.Canceled));
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new ConnectError("the client cancelled the call", Code.Canceled));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
