import type * as http2 from "node:http2";
import type { DescMethodServerStreaming, DescMethodUnary, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import { http2StreamKey } from "../frame-sink.js";
import type { AbortListener, CancelSignal } from "../../core/index.js";
import { requestUrl } from "../request-url.js";
import { connectionKey } from "./connection.js";

const RST_NAMES: Record<number, string> = {
  1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
  11: "ENHANCE_YOUR_CALM",
};
const RST_CODES: Record<number, Code> = {
  1: Code.Internal, 2: Code.Internal, 3: Code.Internal, 7: Code.Unavailable, 8: Code.Canceled, 11: Code.ResourceExhausted,
};

/** What connect-node reports for a stream the client reset (its connectErrorFromH2ResetCode). */
export function resetError(rstCode: number): ConnectError | undefined {
  const code = RST_CODES[rstCode];
  if (code === undefined) return undefined;
  return new ConnectError(`http/2 stream closed with error code ${RST_NAMES[rstCode]} (0x${rstCode.toString(16)})`, code);
}

/**
 * connect's HandlerContext for one fast-path call, with every costly part
 * made on first use: the AbortController (and so no listener or timer when
 * the implementation never reads `signal`), the request and response
 * Headers, the context values, the URL. connect's own context builds all of
 * them, plus a deadline timer, on every call.
 *
 * The deadline is not armed as a timer here: `timeoutMs()` reports it and
 * the implementation passes it on (the dispatcher's core enforces it).
 */
export class FastContext implements HandlerContext {
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  private controller: AbortController | undefined;
  private reqHeader: Headers | undefined;
  private resHeader: Headers | undefined;
  private resTrailer: Headers | undefined;
  private ctxValues: ContextValues | undefined;
  private readonly deadline: number | undefined;
  private cancelSource: CallCancel | undefined;
  /** A hook's FastHookCall.traceParent (read through traceParentOf). */
  traceParent: unknown = undefined;
  /** Set when the stream closed before the call ended. */
  closedWith: unknown;
  closed = false;

  constructor(
    readonly method: DescMethodUnary | DescMethodServerStreaming,
    readonly stream: http2.ServerHttp2Stream,
    readonly headers: http2.IncomingHttpHeaders,
    timeoutMs: number | undefined,
    /** Response headers connect would start with: content-type, and grpc-encoding when negotiated. */
    private readonly initialHeader: Record<string, string>,
  ) {
    this.deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  }

  get service(): DescService {
    return this.method.parent;
  }

  get url(): string {
    const scheme = (this.stream.session?.socket as { encrypted?: boolean } | undefined)?.encrypted === true ? "https" : "http";
    const path = this.headers[":path"] ?? "/";
    // An authority the URL parser refuses (the universal path answers 400 for it): the path under localhost.
    return requestUrl(scheme, this.headers[":authority"] ?? "localhost", path) ?? (requestUrl(scheme, "localhost", path) as string);
  }

  timeoutMs(): number | undefined {
    return this.deadline === undefined ? undefined : this.deadline - Date.now();
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.closed) this.controller.abort(this.closedWith);
    }
    return this.controller.signal;
  }

  get requestHeader(): Headers {
    if (this.reqHeader === undefined) {
      const h = new Headers();
      for (const k in this.headers) {
        if (k.charCodeAt(0) === 58 /* ":" */) continue;
        const v = this.headers[k];
        if (typeof v === "string") h.append(k, v);
        else if (Array.isArray(v)) for (const e of v) h.append(k, e);
      }
      this.reqHeader = h;
    }
    return this.reqHeader;
  }

  get responseHeader(): Headers {
    return (this.resHeader ??= new Headers(this.initialHeader));
  }

  get responseTrailer(): Headers {
    return (this.resTrailer ??= new Headers({ "grpc-status": "0" }));
  }

  /** Response headers as an HTTP/2 header object; the shared initial object when nobody touched them. */
  headerObject(): Record<string, string> {
    return this.resHeader === undefined ? this.initialHeader : toObject(this.resHeader);
  }

  /** Trailers, set by an interceptor or the implementation, or undefined for none. */
  trailerHeaders(): Headers | undefined {
    return this.resTrailer;
  }

  /** Whether any context value was set (or read): values the interceptor chain set live there. */
  get hasValues(): boolean {
    return this.ctxValues !== undefined || Object.hasOwn(this, "values");
  }

  get values(): ContextValues {
    if (this.ctxValues === undefined) {
      this.ctxValues = createContextValues();
      this.ctxValues.set(http2StreamKey, this.stream);
      this.ctxValues.set(connectionKey, this.stream.session);
    }
    return this.ctxValues;
  }

  /**
   * The call's deadline passed: its signal aborts, as connect's deadline
   * timer aborts it, but the stream is still open for the answer.
   */
  expire(): void {
    if (this.closed) return;
    (this.controller ??= new AbortController()).abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  }

  /** The client's cancel as the core takes it, without the AbortController `signal` costs. */
  get cancel(): CancelSignal {
    return (this.cancelSource ??= new CallCancel(this.closed));
  }

  abort(reason?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.closedWith = reason;
    this.controller?.abort(reason);
    this.cancelSource?.fire();
  }
}

const ABORT_EVENT = new Event("abort");

/** A CancelSignal for one call: aborted once, when its stream closes unanswered. */
class CallCancel implements CancelSignal {
  private listeners: AbortListener[] | undefined;
  constructor(public aborted: boolean) {}

  addEventListener(_type: "abort", listener: AbortListener): void {
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: AbortListener): void {
    const i = this.listeners?.indexOf(listener) ?? -1;
    if (i >= 0) this.listeners!.splice(i, 1);
  }

  fire(): void {
    if (this.aborted) return;
    this.aborted = true;
    const ls = this.listeners;
    this.listeners = undefined;
    if (ls !== undefined) for (const l of ls) l.handleEvent(ABORT_EVENT);
  }
}

/** The call's cancellation for the core: the fast path's light one, else connect's signal. */
export function cancelSignalOf(ctx: HandlerContext): CancelSignal {
  return ctx instanceof FastContext ? ctx.cancel : ctx.signal;
}

/**
 * One request header's value (lower-case `name`), on every path: read from the
 * raw HTTP/2 headers on the fast path, so that asking builds no Headers object.
 */
export function requestHeaderValue(ctx: HandlerContext, name: string): string | undefined {
  if (ctx instanceof FastContext) return joined(ctx.headers[name]);
  return ctx.requestHeader.get(name) ?? undefined;
}

/** A raw header's value, multiple values joined with ", " (as Headers joins them). */
export function joined(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}

export function toObject(h: Headers): Record<string, string> {
  const o: Record<string, string> = {};
  h.forEach((v, k) => {
    o[k] = v;
  });
  return o;
}
