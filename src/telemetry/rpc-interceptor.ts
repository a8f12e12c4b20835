import {
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Histogram,
  type Meter,
  type Span,
  type TextMapGetter,
  type Tracer,
} from "@opentelemetry/api";
import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { METRIC_RPC_SERVER_CALL_DURATION } from "@opentelemetry/semantic-conventions";
import { fastHook, type FastCallInfo, type FastHookCall, type WithFastHook } from "../server/edge/fast-hooks.js";
import { traceParentKey } from "../server/trace-parent.js";
import { spanMs } from "./clock.js";
import { spanStarter, type SpanStarter } from "./lean-span.js";
import { SpanInContext } from "./span-context.js";
import * as n from "./names.js";

/** Services that are not traced: probes and tooling would drown the calls that matter (issue 4). */
const UNTRACED: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/** gRPC status OK, which connect's Code enum leaves out. */
const OK = 0;

/** gRPC metadata and Connect headers arrive alike as HTTP headers. */
const headerGetter: TextMapGetter<Headers> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};

/**
 * The status the client sees for what the implementation threw: connect
 * sends a ConnectError's code and "internal error" (INTERNAL) for anything
 * else, in all three protocols.
 */
export function statusOf(e: unknown): number {
  return e instanceof ConnectError ? e.code : Code.Internal;
}

function messageOf(e: unknown): string | undefined {
  if (e instanceof ConnectError) return e.rawMessage;
  return e instanceof Error ? e.message : undefined;
}

/**
 * One SERVER span per RPC, named "<package.Service>/<Method>", its parent
 * taken from the incoming W3C trace context; and the
 * `rpc.server.call.duration` histogram. For a streaming response the span
 * lasts the whole stream. The span's context reaches the implementation as
 * a value (traceParentKey; the fast path's FastHookCall.traceParent), which
 * the service hands to the core: it is not made the active context, since
 * on Node 20 that switches on async hooks for every promise in the process.
 */
export function createRpcInterceptor(tracer: Tracer | undefined, meter: Meter | undefined): Interceptor | undefined {
  if (tracer === undefined && meter === undefined) return undefined;
  const duration: Histogram | undefined = meter?.createHistogram(METRIC_RPC_SERVER_CALL_DURATION, {
    unit: "s",
    description: "Duration of incoming RPCs, to the end of the response stream",
    advice: { explicitBucketBoundaries: n.DURATION_BUCKETS_S },
  });
  const recorders: Recorders = { spans: tracer === undefined ? undefined : spanStarter(tracer), names: new Map(), duration, durationAttributes: new Map() };

  const interceptor: Interceptor & WithFastHook = (next) => async (req) => {
    const service = req.service.typeName;
    if (UNTRACED.has(service)) return next(req);
    const parent = recorders.spans === undefined ? undefined : propagation.extract(ROOT_CONTEXT, req.header, headerGetter);
    const call = new RpcCall(recorders, service, req.method.name, parent);
    if (call.traceParent !== undefined) req.contextValues.set(traceParentKey, call.traceParent);
    let res;
    try {
      res = await next(req);
    } catch (e) {
      call.end(statusOf(e), e);
      throw e;
    }
    if (!res.stream) {
      call.end(OK);
      return res;
    }
    return { ...res, message: reportingEnd(res.message, call) } satisfies StreamResponse;
  };
  // The edge's gRPC fast path: the same span and histogram, read from the raw request headers, without the chain.
  interceptor[fastHook] = {
    start(info: FastCallInfo) {
      if (UNTRACED.has(info.service)) return undefined;
      const parent = recorders.spans === undefined ? undefined : propagation.extract(ROOT_CONTEXT, info, fastHeaderGetter);
      return new RpcCall(recorders, info.service, info.method, parent);
    },
  };
  return interceptor;
}

interface Recorders {
  spans: SpanStarter | undefined;
  /** "<service>/<method>" per service and method, made once. */
  names: Map<string, Map<string, string>>;
  duration: Histogram | undefined;
  /** The histogram's attributes per method and status, made once. */
  durationAttributes: Map<string, Attributes>;
}

function spanName(r: Recorders, service: string, method: string): string {
  let methods = r.names.get(service);
  if (methods === undefined) r.names.set(service, (methods = new Map()));
  let name = methods.get(method);
  if (name === undefined) methods.set(method, (name = `${service}/${method}`));
  return name;
}

/** One call's span and timer (also the fast path's hook call); `end` records its status once. */
class RpcCall implements FastHookCall {
  /** The SERVER span's context: the parent of the job's spans. */
  readonly traceParent: Context | undefined = undefined;
  private readonly span: Span | undefined = undefined;
  /** For the duration histogram only: no clock read when metrics are off. */
  private readonly startedAt: number;
  private ended = false;

  constructor(
    private readonly recorders: Recorders,
    private readonly service: string,
    private readonly method: string,
    parent: Context | undefined,
  ) {
    this.startedAt = recorders.duration === undefined ? 0 : performance.now();
    if (recorders.spans !== undefined && parent !== undefined) {
      this.span = recorders.spans.start(
        spanName(recorders, service, method),
        SpanKind.SERVER,
        { [n.ATTR_RPC_SYSTEM]: "grpc", [n.ATTR_RPC_SERVICE]: service, [n.ATTR_RPC_METHOD]: method },
        parent,
        spanMs(),
      );
      this.traceParent = new SpanInContext(parent, this.span);
    }
  }

  end(code: number, error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    const span = this.span;
    if (span !== undefined) {
      span.setAttribute(n.ATTR_RPC_GRPC_STATUS_CODE, code);
      if (n.SERVER_ERROR_CODES.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(error) });
      span.end(spanMs());
    }
    const duration = this.recorders.duration;
    if (duration !== undefined) {
      const key = `${this.service}/${this.method}\0${code}`;
      let attributes = this.recorders.durationAttributes.get(key);
      if (attributes === undefined) {
        attributes = {
          [n.ATTR_RPC_SYSTEM]: "grpc",
          [n.ATTR_RPC_SERVICE]: this.service,
          [n.ATTR_RPC_METHOD]: this.method,
          [n.ATTR_RPC_GRPC_STATUS_CODE]: code,
        };
        this.recorders.durationAttributes.set(key, attributes);
      }
      duration.record((performance.now() - this.startedAt) / 1000, attributes);
    }
  }
}

/** Trace context from the fast path's raw headers. */
const fastHeaderGetter: TextMapGetter<FastCallInfo> = {
  get: (carrier, key) => carrier.header(key),
  keys: (carrier) => carrier.headerNames(),
};

/**
 * Reports how a response stream ended: OK when it is exhausted, the thrown
 * status when it fails, CANCELLED when the server stops reading it early
 * (the client went away).
 */
function reportingEnd<T>(stream: AsyncIterable<T>, call: RpcCall): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = stream[Symbol.asyncIterator]();
      return {
        async next() {
          try {
            const r = await it.next();
            if (r.done === true) call.end(OK);
            return r;
          } catch (e) {
            call.end(statusOf(e), e);
            throw e;
          }
        },
        async return(value?: unknown) {
          call.end(Code.Canceled);
          return it.return === undefined ? { done: true as const, value: value as never } : it.return(value);
        },
        async throw(e?: unknown) {
          call.end(statusOf(e), e);
          if (it.throw === undefined) throw e;
          return it.throw(e);
        },
      };
    },
  };
}
