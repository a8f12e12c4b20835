import type { Value } from "@bufbuild/protobuf/wkt";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { DispatcherService, type SubmitRequest, type WorkerMetricsRequest } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { DispatchError, type Dispatcher, type JobResult, type Payload, type SubmitOptions } from "../core/index.js";
import { accessEntry, type AccessLog } from "./access-log.js";
import { payloadFromProto, streamDoneToProto, streamEventToProto, submitResponseToProto } from "./convert.js";
import { toConnectError } from "./errors.js";
import { connectionKey } from "./edge/connection.js";
import { cancelSignalOf, requestHeaderValue } from "./edge/context.js";
import { frameSinkFor } from "./frame-sink.js";
import { effectiveTimeoutMs, type Limits } from "./limits.js";
import type { MetricsHub } from "./metrics-hub.js";
import { heldBytes, type PayloadBudget } from "./payload-budget.js";
import { traceParentOf } from "./trace-parent.js";

/** WorkerMetrics interval when the request sets none (DESIGN.md §3). */
const DEFAULT_INTERVAL_MS = 1_000;
/** Shortest interval: faster ticks cost every subscriber CPU and say little more. */
const MIN_INTERVAL_MS = 100;

/** The session as a request header, for an L7 proxy to hash on (docs/replicas.md). */
export const SESSION_HEADER = "dispatcher-session";
/** The replica that answered, as a response header of Submit and SubmitStream (cluster.replica_id). */
export const REPLICA_HEADER = "dispatcher-replica";

export function dispatcherRoutes(
  dispatcher: Dispatcher,
  hub: MetricsHub,
  limits: Limits,
  /** What the decoded requests of calls in progress hold (limits.maxHeldRequestBytes). */
  held: PayloadBudget,
  access?: AccessLog,
  replicaId?: string,
  /** More methods of the service (background jobs, src/jobs/service.ts); unset ones answer UNIMPLEMENTED. */
  more: Partial<ServiceImpl<typeof DispatcherService>> = {},
) {
  /** WorkerMetrics streams open per connection: one client must not take every subscriber slot. */
  const perConnection = new WeakMap<object, number>();
  return (router: ConnectRouter) =>
    router.service(
      DispatcherService,
      access === undefined
        ? { ...more, submit: (req, ctx) => submitOnce(req, ctx), submitStream: submitStreamOnce, workerMetrics: workerMetricsOnce }
        : {
            ...more,
            // The access log wraps the same implementations; without it, nothing is wrapped.
            async submit(req, ctx) {
              const started = performance.now();
              let result: JobResult | undefined;
              try {
                const out = await submitOnce(req, ctx, (r) => (result = r));
                access(accessEntry("Submit", req.backend, started, result, undefined));
                return out;
              } catch (e) {
                access(accessEntry("Submit", req.backend, started, undefined, e));
                throw e;
              }
            },
            async *submitStream(req, ctx) {
              const started = performance.now();
              let result: JobResult | undefined;
              try {
                yield* submitStreamOnce(req, ctx, (r) => (result = r));
                access(accessEntry("SubmitStream", req.backend, started, result, undefined));
              } catch (e) {
                access(accessEntry("SubmitStream", req.backend, started, undefined, e));
                throw e;
              }
            },
            async *workerMetrics(req, ctx) {
              const started = performance.now();
              try {
                yield* workerMetricsOnce(req, ctx);
              } finally {
                const ended = ctx.signal.aborted ? new ConnectError("stream ended", Code.Canceled) : undefined;
                access(accessEntry("WorkerMetrics", undefined, started, undefined, ended));
              }
            },
          },
    );

  /** A checked request → the core's SubmitOptions (Submit and SubmitStream alike). */
  function submitOptions(req: SubmitRequest, ctx: HandlerContext): SubmitOptions & { payload: Payload } {
    // First, so that refusals also name the replica that gave them.
    if (replicaId !== undefined) ctx.responseHeader.set(REPLICA_HEADER, replicaId);
    checkSubmit(req, limits);
    const sessionId = sessionOf(req, ctx, limits);
    let payload: Payload;
    try {
      payload = payloadFromProto(req.payload);
    } catch (e) {
      throw new ConnectError(`json: not a valid JSON value: ${(e as Error).message}`, Code.InvalidArgument);
    }
    return {
      backend: req.backend,
      sessionId,
      payload,
      metadata: req.metadata,
      signal: cancelSignalOf(ctx),
      timeoutMs: effectiveTimeoutMs(ctx.timeoutMs(), limits),
      priority: req.priority,
      tenant: req.tenant,
      traceParent: traceParentOf(ctx),
    };
  }

  /** `onResult` hears the core's result behind the answer (worker, queue wait, run time, attempts): the access log. */
  async function submitOnce(req: SubmitRequest, ctx: HandlerContext, onResult?: (r: JobResult) => void) {
    const options = submitOptions(req, ctx);
    const requestValue: Value | undefined = req.payload.case === "json" ? req.payload.value : undefined;
    const bytes = heldBytes(options.payload, req.metadata);
    held.take(bytes);
    try {
      const r = await dispatcher.submit(options);
      onResult?.(r);
      return submitResponseToProto(r, options.payload, requestValue);
    } catch (e) {
      throw callError(e, ctx);
    } finally {
      held.give(bytes);
    }
  }

  async function* submitStreamOnce(req: SubmitRequest, ctx: HandlerContext, onResult?: (r: JobResult) => void) {
    const options = submitOptions(req, ctx);
    const give = held.hold(heldBytes(options.payload, req.metadata), cancelSignalOf(ctx));
    try {
      const job = dispatcher.submitStream(options);
      // Each event is written before the next chunk is pulled from the backend (backpressure).
      for await (const e of job.events) yield streamEventToProto(e);
      const r = await job.result;
      onResult?.(r);
      yield streamDoneToProto(r);
    } catch (e) {
      throw callError(e, ctx);
    } finally {
      give();
    }
  }

  async function* workerMetricsOnce(req: WorkerMetricsRequest, ctx: HandlerContext) {
    const filter = metricsFilter(req, dispatcher);
    const intervalMs = metricsInterval(req);
    if (hub.subscribers >= limits.maxMetricsSubscribers) {
      throw new ConnectError(`WorkerMetrics: ${hub.subscribers} streams open, the server's limit`, Code.ResourceExhausted);
    }
    const conn = ctx.values.get(connectionKey);
    const mine = conn === undefined ? 0 : (perConnection.get(conn) ?? 0);
    if (conn !== undefined && mine >= limits.maxMetricsStreamsPerConnection) {
      throw new ConnectError(
        `WorkerMetrics: ${mine} streams open on this connection, the server's limit per connection`,
        Code.ResourceExhausted,
      );
    }
    if (conn !== undefined) perConnection.set(conn, mine + 1);
    const sub = hub.subscribe(intervalMs, filter, ctx.signal);
    try {
      // The first message goes out at once: stream headers travel with it (PLATFORM.md).
      yield hub.current(filter);
      // Resumed once that message is written: from here, ticks can go out as shared, pre-encoded frames.
      const sink = frameSinkFor(ctx);
      if (sink !== undefined) await sub.stream(sink);
      for (;;) {
        const next = await sub.next();
        ctx.signal.throwIfAborted();
        yield next;
      }
    } finally {
      sub.unsubscribe();
      if (conn !== undefined) perConnection.set(conn, (perConnection.get(conn) ?? 1) - 1);
    }
  }
}

/** A client cancel that is really connect's deadline timer must still read as DEADLINE_EXCEEDED. */
function callError(e: unknown, ctx: HandlerContext): ConnectError {
  if (e instanceof DispatchError && e.code === "cancelled") {
    const reason: unknown = ctx.signal.reason;
    if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) {
      return new ConnectError("the call's deadline passed", Code.DeadlineExceeded);
    }
  }
  return toConnectError(e);
}

/**
 * The call's session: `session_id`, else the `dispatcher-session` header
 * (which a proxy can hash on without parsing the body). Both set and
 * different is a client bug: refused rather than one silently winning.
 */
function sessionOf(req: SubmitRequest, ctx: HandlerContext, limits: Limits): string {
  const header = requestHeaderValue(ctx, SESSION_HEADER);
  if (header === undefined || header === "") return req.sessionId;
  if (header.length > limits.maxSessionIdLength) {
    throw new ConnectError(
      `${SESSION_HEADER} header: ${header.length} characters, over the limit of ${limits.maxSessionIdLength}`,
      Code.InvalidArgument,
    );
  }
  if (req.sessionId !== "" && req.sessionId !== header) {
    throw new ConnectError(
      `session_id "${req.sessionId}" and the ${SESSION_HEADER} header "${header}" differ: send the session in one, or the same in both`,
      Code.InvalidArgument,
    );
  }
  return header;
}

export function checkSubmit(req: SubmitRequest, limits: Limits): void {
  if (req.backend === "") throw new ConnectError("backend: required", Code.InvalidArgument);
  if (req.sessionId.length > limits.maxSessionIdLength) {
    throw new ConnectError(
      `session_id: ${req.sessionId.length} characters, over the limit of ${limits.maxSessionIdLength}`,
      Code.InvalidArgument,
    );
  }
  let entries = 0;
  let size = 0;
  for (const k in req.metadata) {
    entries++;
    size += k.length + req.metadata[k]!.length;
  }
  if (entries > limits.maxMetadataEntries) {
    throw new ConnectError(`metadata: ${entries} entries, over the limit of ${limits.maxMetadataEntries}`, Code.InvalidArgument);
  }
  if (size > limits.maxMetadataSize) {
    throw new ConnectError(`metadata: ${size} characters of keys and values, over the limit of ${limits.maxMetadataSize}`, Code.InvalidArgument);
  }
}

function metricsFilter(req: WorkerMetricsRequest, dispatcher: Dispatcher): ReadonlySet<string> | undefined {
  if (req.backends.length === 0) return undefined;
  const known = dispatcher.backendNames();
  for (const b of req.backends) {
    if (!known.includes(b)) {
      throw new ConnectError(`backends: unknown backend "${b}"; known backends: ${known.join(", ")}`, Code.NotFound);
    }
  }
  return new Set(req.backends);
}

function metricsInterval(req: WorkerMetricsRequest): number {
  if (req.interval === undefined) return DEFAULT_INTERVAL_MS;
  const ms = durationMs(req.interval);
  if (!(ms >= 0)) throw new ConnectError(`interval: must not be negative, got ${ms} ms`, Code.InvalidArgument);
  if (ms === 0) return DEFAULT_INTERVAL_MS;
  return Math.max(MIN_INTERVAL_MS, Math.round(ms));
}
