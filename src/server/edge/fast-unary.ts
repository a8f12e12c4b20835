import type * as http2 from "node:http2";
import { create, fromBinary, isMessage, toBinary, type DescMethodServerStreaming, type DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type Interceptor, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { encodeGrpcMessage } from "../grpc-message.js";
import { FastContext, toObject } from "./context.js";
import { fastHook, type FastCallInfo, type FastHook, type FastHookCall, type WithFastHook } from "./fast-hooks.js";
import { READ_OPTIONS, type UnaryImpl } from "./routes.js";

/** connect's default: smaller responses are not worth compressing. */
export const COMPRESS_MIN_BYTES = 1024;

export interface FastCall {
  readonly method: DescMethodUnary | DescMethodServerStreaming;
  /** The implementation; a server-streaming one returns an async iterable (fast-stream.ts). */
  readonly impl: UnaryImpl;
  /** The request message, one complete uncompressed envelope's payload. */
  bytes: Uint8Array;
  readonly ctx: FastContext;
  readonly compression: Compression | null;
  /** Runs on the bytes before they are decoded; throws a ConnectError to refuse them. */
  readonly precheck: ((bytes: Uint8Array) => void) | undefined;
  /** EdgeOptions.encoders' entry for the call's path: a direct encoding, or undefined for the reflective one. */
  readonly encoder: ((message: unknown) => Uint8Array | undefined) | undefined;
  /** Called once the message is decoded (or failed to): the request bytes' budget is released. */
  readonly decoded: () => void;
  /** Set by the hooks: told the call's status once it is answered. */
  ended?: FastHookCall | undefined;
}

type Next = (req: UnaryRequest) => Promise<UnaryResponse>;

/**
 * One gRPC unary call with a binary protobuf request, without connect's
 * per-call async-iterable pipeline: decode, call the implementation (through
 * the interceptors when there are any), answer with headers, one DATA frame
 * and trailers. The answer is the one connect's gRPC handler gives (the
 * conformance tests compare them byte for byte): the same headers,
 * compression, status trailers and error mapping.
 *
 * A synchronous implementation and no interceptors are answered without a
 * single promise.
 */
export function runFastCall(call: FastCall, interceptors: readonly Interceptor[]): void {
  if (interceptors.length === 0) return runPlain(call);
  const hooks = hooksOf(interceptors);
  if (hooks !== undefined) return runHooked(call, hooks, runPlain);
  // The innermost step: one response object, its headers read lazily from the context.
  const response = new FastResponse(call);
  let next: Next = async (req) => {
    const ctx = req === request ? call.ctx : merged(call.ctx, req);
    response.message = await call.impl(req.message, ctx);
    return response as unknown as UnaryResponse;
  };
  for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i]!(next as never) as Next;
  const request = new FastRequest(call) as unknown as UnaryRequest;
  next(request).then(
    (res) => {
      if (res !== (response as unknown)) adoptHeaders(call.ctx, res);
      answer(call, res.message);
    },
    (e: unknown) => answerError(call, e),
  );
}

/** The implementation alone: a synchronous result is answered without a promise. */
function runPlain(call: FastCall): void {
  let out: unknown;
  try {
    out = call.impl(decode(call), call.ctx);
  } catch (e) {
    answerError(call, e);
    return;
  }
  if (isThenable(out)) {
    out.then(
      (m) => answer(call, m),
      (e: unknown) => answerError(call, e),
    );
  } else answer(call, out);
}

const hookCache = new WeakMap<readonly Interceptor[], FastHook[] | null>();

/** The interceptors' hooks, or undefined when one of them has none (the chain runs then). */
export function hooksOf(interceptors: readonly Interceptor[]): FastHook[] | undefined {
  let hooks = hookCache.get(interceptors);
  if (hooks === undefined) {
    const found = interceptors.map((i) => (i as WithFastHook)[fastHook]);
    hooks = found.every((h) => h !== undefined) ? (found as FastHook[]) : null;
    hookCache.set(interceptors, hooks);
  }
  return hooks ?? undefined;
}

/** What a call's hooks read of it: the raw headers, read on demand. */
class HookCallInfo implements FastCallInfo {
  readonly service: string;
  readonly method: string;
  private readonly headers: http2.IncomingHttpHeaders;

  constructor(call: FastCall) {
    this.service = call.method.parent.typeName;
    this.method = call.method.name;
    this.headers = call.ctx.headers;
  }

  header(name: string): string | undefined {
    const v = this.headers[name];
    return Array.isArray(v) ? v.join(", ") : v;
  }

  headerNames(): string[] {
    return Object.keys(this.headers).filter((k) => k.charCodeAt(0) !== 58);
  }
}

/** Two or more started hooks, told the end in reverse order (one is kept as it is). */
class StartedHooks implements FastHookCall {
  constructor(readonly list: FastHookCall[]) {}

  end(code: number, error?: unknown): void {
    for (let i = this.list.length - 1; i >= 0; i--) this.list[i]!.end(code, error);
  }
}

/** Starts each hook (any may refuse the call), then runs `body`. */
export function runHooked(call: FastCall, hooks: readonly FastHook[], body: (call: FastCall) => void): void {
  const info = new HookCallInfo(call);
  let started: FastHookCall | undefined;
  try {
    for (const h of hooks) {
      const c = h.start(info);
      if (c === undefined) continue;
      if (started === undefined) started = c;
      else if (started instanceof StartedHooks) started.list.push(c);
      else started = new StartedHooks([started, c]);
      if (c.traceParent !== undefined) call.ctx.traceParent = c.traceParent;
    }
  } catch (e) {
    // The hooks already started hear how the refusal ended.
    call.ended = started;
    answerError(call, e);
    return;
  }
  call.ended = started;
  body(call);
}

/** Tells the hooks how the call ended, once. */
export function report(call: FastCall, code: number, error?: unknown): void {
  const ended = call.ended;
  call.ended = undefined;
  ended?.end(code, error);
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}

/** Decodes once; the error is connect's for a message that does not parse. */
export function decode(call: FastCall): unknown {
  try {
    call.precheck?.(call.bytes);
    try {
      return fromBinary(call.method.input, call.bytes, READ_OPTIONS);
    } catch (e) {
      throw new ConnectError(`parse binary: ${e instanceof Error ? e.message : String(e)}`, Code.Internal);
    }
  } finally {
    call.decoded();
  }
}

/** connect's UnaryRequest, each costly field made on first read; `message` decodes after the interceptors ahead of it (auth) passed. */
class FastRequest {
  readonly stream = false;
  readonly requestMethod = "POST";
  private decodedMessage: unknown;
  private done = false;
  constructor(private readonly call: FastCall) {}
  get method() {
    return this.call.method;
  }
  get service() {
    return this.call.method.parent;
  }
  get url(): string {
    return this.call.ctx.url;
  }
  get signal(): AbortSignal {
    return this.call.ctx.signal;
  }
  get header(): Headers {
    return this.call.ctx.requestHeader;
  }
  get contextValues(): ContextValues {
    return this.call.ctx.values;
  }
  get message(): unknown {
    if (!this.done) {
      this.done = true;
      this.decodedMessage = decode(this.call);
    }
    return this.decodedMessage;
  }
}

class FastResponse {
  readonly stream = false;
  message: unknown;
  constructor(private readonly call: FastCall) {}
  get method() {
    return this.call.method;
  }
  get service() {
    return this.call.method.parent;
  }
  get header(): Headers {
    return this.call.ctx.responseHeader;
  }
  get trailer(): Headers {
    return this.call.ctx.responseTrailer;
  }
}

/** connect's mergeRequest: an interceptor may have passed on a request with other headers, signal or values. */
function merged(ctx: FastContext, req: UnaryRequest): FastContext {
  return Object.create(ctx, {
    requestHeader: { value: req.header },
    signal: { value: req.signal },
    values: { value: req.contextValues },
  }) as FastContext;
}

/** connect's copyHeaders: a response an interceptor rebuilt replaces the context's headers and trailers. */
function adoptHeaders(ctx: FastContext, res: UnaryResponse): void {
  replace(ctx.responseHeader, res.header);
  replace(ctx.responseTrailer, res.trailer);
}

function replace(to: Headers, from: Headers): void {
  if (from === to) return;
  for (const k of [...to.keys()]) to.delete(k);
  from.forEach((v, k) => to.set(k, v));
}

function answer(call: FastCall, out: unknown): void {
  const { ctx, method } = call;
  if (ctx.closed) {
    report(call, Code.Canceled);
    return;
  }
  let bytes: Uint8Array;
  try {
    bytes = encode(method, out);
  } catch (e) {
    answerError(call, e);
    return;
  }
  if (call.compression !== null && bytes.byteLength >= COMPRESS_MIN_BYTES) {
    call.compression.compress(bytes).then(
      (z) => send(call, envelope(1, z)),
      (e: unknown) => answerError(call, e),
    );
    return;
  }
  send(call, envelope(0, bytes));
}

/** A response message (or its init object) in binary; the error is connect's for one that does not serialise. */
export function encode(method: DescMethodUnary | DescMethodServerStreaming, out: unknown): Uint8Array {
  const message = isMessage(out, method.output) ? out : create(method.output, out as never);
  try {
    return toBinary(method.output, message);
  } catch (e) {
    throw new ConnectError(`serialize binary: ${e instanceof Error ? e.message : String(e)}`, Code.Internal);
  }
}

export function envelope(flags: number, bytes: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + bytes.byteLength);
  frame[0] = flags;
  frame.writeUInt32BE(bytes.byteLength, 1);
  frame.set(bytes, 5);
  return frame;
}

function send(call: FastCall, frame: Buffer | undefined): void {
  const { ctx } = call;
  const stream = ctx.stream;
  if (ctx.closed || stream.destroyed || stream.headersSent) {
    report(call, Code.Canceled);
    return;
  }
  ctx.closed = true;
  report(call, 0);
  const set = ctx.trailerHeaders();
  const trailers = set === undefined ? OK_TRAILERS : specTrailers(set);
  respond(stream, ctx.headerObject(), trailers, frame);
}

export const OK_TRAILERS = { "grpc-status": "0" } as const;

export function respond(
  stream: http2.ServerHttp2Stream,
  header: Record<string, string>,
  trailers: http2.OutgoingHttpHeaders,
  frame: Buffer | undefined,
): void {
  try {
    stream.respond({ ...header, ":status": 200 }, { waitForTrailers: true });
    stream.once("wantTrailers", () => {
      if (!stream.destroyed) stream.sendTrailers({ ...trailers });
    });
    if (frame === undefined) stream.end();
    else stream.end(frame);
  } catch {
    // The stream closed between the check and the write: nobody is listening.
    stream.destroy();
  }
}

/** What connect's gRPC handler sends for an error: headers, no message, the status in trailers. */
export function answerError(call: FastCall, e: unknown): void {
  const { ctx } = call;
  const err = e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
  report(call, ctx.closed ? Code.Canceled : err.code, e);
  if (ctx.closed) return;
  const trailers = errorTrailers(call, err);
  ctx.closed = true;
  if (ctx.stream.destroyed || ctx.stream.headersSent) return;
  respond(ctx.stream, ctx.headerObject(), trailers, undefined);
}

/** The trailers connect sends for an error: its status added to whatever trailers were set. */
export function errorTrailers(call: FastCall, err: ConnectError): http2.OutgoingHttpHeaders {
  const { ctx } = call;
  return ctx.trailerHeaders() === undefined && err.details.length === 0 ? plainErrorTrailers(err) : specTrailers(setTrailerStatus(ctx.responseTrailer, err));
}

/**
 * setTrailerStatus's trailers for an error without details when nothing
 * else set trailers, built without a Headers object: overload answers
 * (RESOURCE_EXHAUSTED) are the hot error path.
 */
function plainErrorTrailers(err: ConnectError): http2.OutgoingHttpHeaders {
  const o: Record<string, string> = {};
  err.metadata.forEach((v, k) => {
    o[k] = v;
  });
  o["grpc-status"] = String(err.code);
  o["grpc-message"] = encodeGrpcMessage(err.rawMessage);
  return o;
}

/** Trailers with `grpc-message` in the spec's percent-encoding (see grpc-message.ts). */
export function specTrailers(h: Headers): http2.OutgoingHttpHeaders {
  const o = toObject(h);
  const m = o["grpc-message"];
  if (m !== undefined) {
    try {
      o["grpc-message"] = encodeGrpcMessage(decodeURIComponent(m));
    } catch {
      // Not connect's encoding: leave it.
    }
  }
  return o;
}
