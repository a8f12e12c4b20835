import type * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  COMPRESS_MIN_BYTES,
  OK_TRAILERS,
  decode,
  encode,
  envelope,
  errorTrailers,
  report,
  respond,
  runHooked,
  specTrailers,
  type FastCall,
} from "./fast-unary.js";
import type { FastHook } from "./fast-hooks.js";

/**
 * One gRPC server-streaming call with a binary protobuf request, without
 * connect's async-iterable pipeline: decode, call the implementation, write
 * each message it yields as one DATA frame, then the trailers. The answer is
 * the one connect's gRPC handler gives (headers with the first message,
 * messages compressed as connect compresses them, the status in trailers;
 * an error before any message still gets headers, then trailers), compared
 * by the conformance tests.
 *
 * Backpressure: the next message is pulled from the implementation only
 * while the stream holds less than its high-water mark and fewer than
 * MAX_PENDING_WRITES unsent messages, so a client that reads slowly holds
 * the implementation (and so the backend's upstream) back within a few
 * messages.
 *
 * `timeoutMs` arms the call's deadline as connect does: the signal aborts
 * with DEADLINE_EXCEEDED, the implementation decides what to answer.
 */
export function runFastStream(call: FastCall, hooks: readonly FastHook[] | undefined, timeoutMs: number | undefined): void {
  if (hooks !== undefined && hooks.length > 0) runHooked(call, hooks, (c) => void pump(c, timeoutMs));
  else void pump(call, timeoutMs);
}

async function pump(call: FastCall, timeoutMs: number | undefined): Promise<void> {
  const { ctx, method } = call;
  const stream = ctx.stream;
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => ctx.expire(), Math.max(0, timeoutMs));
  let it: AsyncIterator<unknown> | undefined;
  let done = false;
  const writes = new PendingWrites();
  try {
    it = (call.impl(decode(call), ctx) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    for (;;) {
      const r = await it.next();
      if (r.done === true) {
        done = true;
        break;
      }
      if (ctx.closed || stream.destroyed) break;
      let bytes = call.encoder?.(r.value) ?? encode(method, r.value);
      let flags = 0;
      if (call.compression !== null && bytes.byteLength >= COMPRESS_MIN_BYTES) {
        bytes = await call.compression.compress(bytes);
        flags = 1;
      }
      if (ctx.closed || stream.destroyed) break;
      if (!stream.headersSent) stream.respond({ ...ctx.headerObject(), ":status": 200 }, { waitForTrailers: true });
      writes.pending++;
      stream.write(envelope(flags, bytes), writes.done);
      while ((stream.writableNeedDrain || writes.pending >= MAX_PENDING_WRITES) && !stream.destroyed) await writes.settled(stream);
    }
    if (done) finish(call, undefined);
  } catch (e) {
    done = true;
    finish(call, e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e));
  } finally {
    clearTimeout(timer);
    // The client went away with the implementation suspended at a `yield`: its `finally` blocks run now.
    if (!done) {
      report(call, Code.Canceled);
      it?.return?.(undefined).catch(() => {});
    }
  }
}

/** Trailers (after headers when no message went out), or nothing when the client is gone. */
function finish(call: FastCall, err: ConnectError | undefined): void {
  const { ctx } = call;
  const stream = ctx.stream;
  if (ctx.closed || stream.destroyed) {
    report(call, Code.Canceled);
    return;
  }
  report(call, err === undefined ? 0 : err.code, err);
  let trailers: http2.OutgoingHttpHeaders;
  if (err !== undefined) trailers = errorTrailers(call, err);
  else {
    const set = ctx.trailerHeaders();
    trailers = set === undefined ? OK_TRAILERS : specTrailers(set);
  }
  ctx.closed = true;
  if (!stream.headersSent) {
    respond(stream, ctx.headerObject(), trailers, undefined);
    return;
  }
  stream.once("wantTrailers", () => {
    if (!stream.destroyed) stream.sendTrailers({ ...trailers });
  });
  stream.end();
}

/**
 * Messages written but not yet sent (flow control holds them). Bounded by
 * count as well as by the stream's buffer in bytes: each write is also a
 * request object in the HTTP/2 layer, and 16 KiB of token-sized messages
 * would be hundreds of them per stream.
 */
const MAX_PENDING_WRITES = 8;

class PendingWrites {
  pending = 0;
  private wake: (() => void) | undefined;
  readonly done = (): void => {
    this.pending--;
    this.wake?.();
  };

  /** Resolves after the next write completes, the buffer drains, or the stream closes. */
  settled(stream: http2.ServerHttp2Stream): Promise<void> {
    return new Promise((resolve) => {
      const go = () => {
        this.wake = undefined;
        stream.off("drain", go);
        stream.off("close", go);
        resolve();
      };
      this.wake = go;
      stream.once("drain", go);
      stream.once("close", go);
    });
  }
}
