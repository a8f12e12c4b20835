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
import { fastHook, type FastCallInfo, type WithFastHook } from "../server/edge/fast-hooks.js";
import { traceParentKey } from "../server/trace-parent.js";
import { spanTime } from "./clock.js";
import { spanStarter } from "./lean-span.js";
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
  const durationAttributes = new Map<string, Attributes>();
  const spans = tracer === undefined ? undefined : spanStarter(tracer);

  /** Starts one call's span and timer; `end` records its status once. */
  const begin = (service: string, method: string, parent: () => Context) => {
    const start = performance.now();
    let span: Span | undefined;
    let ctx: Context | undefined;
    if (spans !== undefined) {
      const p = parent();
      span = spans.start(
        `${service}/${method}`,
        SpanKind.SERVER,
        { [n.ATTR_RPC_SYSTEM]: "grpc", [n.ATTR_RPC_SERVICE]: service, [n.ATTR_RPC_METHOD]: method },
        p,
        spanTime(),
      );
      ctx = trace.setSpan(p, span);
    }

    let ended = false;
    const end = (code: number, error?: unknown): void => {
      if (ended) return;
      ended = true;
      if (span !== undefined) {
        span.setAttribute(n.ATTR_RPC_GRPC_STATUS_CODE, code);
        if (n.SERVER_ERROR_CODES.has(code)) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(error) });
        }
        span.end(spanTime());
      }
      if (duration !== undefined) {
        const key = `${service}/${method}\0${code}`;
        let attributes = durationAttributes.get(key);
        if (attributes === undefined) {
          attributes = {
            [n.ATTR_RPC_SYSTEM]: "grpc",
            [n.ATTR_RPC_SERVICE]: service,
            [n.ATTR_RPC_METHOD]: method,
            [n.ATTR_RPC_GRPC_STATUS_CODE]: code,
          };
          durationAttributes.set(key, attributes);
        }
        duration.record((performance.now() - start) / 1000, attributes);
      }
    };
    return { ctx, end };
  };

  const interceptor: Interceptor & WithFastHook = (next) => async (req) => {
    const service = req.service.typeName;
    if (UNTRACED.has(service)) return next(req);
    const { ctx, end } = begin(service, req.method.name, () => propagation.extract(ROOT_CONTEXT, req.header, headerGetter));
    if (ctx !== undefined) req.contextValues.set(traceParentKey, ctx);
    let res;
    try {
      res = await next(req);
    } catch (e) {
      end(statusOf(e), e);
      throw e;
    }
    if (!res.stream) {
      end(OK);
      return res;
    }
    return { ...res, message: reportingEnd(res.message, end) } satisfies StreamResponse;
  };
  // The edge's gRPC fast path: the same span and histogram, read from the raw request headers, without the chain.
  interceptor[fastHook] = {
    start(call: FastCallInfo) {
      if (UNTRACED.has(call.service)) return undefined;
      const { ctx, end } = begin(call.service, call.method, () => propagation.extract(ROOT_CONTEXT, call, fastHeaderGetter));
      return { traceParent: ctx, end };
    },
  };
  return interceptor;
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
function reportingEnd<T>(stream: AsyncIterable<T>, end: (code: number, error?: unknown) => void): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = stream[Symbol.asyncIterator]();
      return {
        async next() {
          try {
            const r = await it.next();
            if (r.done === true) end(OK);
            return r;
          } catch (e) {
            end(statusOf(e), e);
            throw e;
          }
        },
        async return(value?: unknown) {
          end(Code.Canceled);
          return it.return === undefined ? { done: true as const, value: value as never } : it.return(value);
        },
        async throw(e?: unknown) {
          end(statusOf(e), e);
          if (it.throw === undefined) throw e;
          return it.throw(e);
        },
      };
    },
  };
}
