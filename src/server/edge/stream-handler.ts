import type * as http2 from "node:http2";
import { Code, ConnectError, createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Compression } from "@connectrpc/connect/protocol";
import { http2StreamKey } from "../frame-sink.js";
import { givingBack, HeldBytes, type ByteBudget } from "./budget.js";
import { connectionKey } from "./connection.js";
import { FastContext, joined, resetError } from "./context.js";
import { clampDeadlineHeaders, parseGrpcTimeout } from "./deadline.js";
import { runFastStream } from "./fast-stream.js";
import { answerError, hooksOf, runFastCall, type FastCall } from "./fast-unary.js";
import { createJsonTextScan } from "./json-scan.js";
import { prescanned } from "./prescan.js";
import { decodeTextRequest, encodeTextResponse, isGrpcWebText } from "../grpc-web-text.js";
import { buildRoutes, READ_OPTIONS, type EdgeRoute } from "./routes.js";
import { BAD_HOST } from "../request-url.js";
import { streamUrl, universalRequest, writeUniversalResponse } from "./universal.js";
import type { Watchdog, Watched } from "./watchdog.js";

export interface EdgeOptions {
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  readMaxBytes: number;
  /** Ceiling for incoming deadlines (deadline.ts). */
  deadlineCeilingMs: number;
  /** Calls being served at once, server-wide; more are refused before their body is read. 0 = no limit. */
  maxInflightCalls: number;
  budget: ByteBudget;
  watchdog: Watchdog;
  bodyIdleTimeoutMs: number;
  /** Per request path: a check on a fast-path request's bytes before they are decoded. */
  prechecks?: ReadonlyMap<string, (bytes: Uint8Array) => void>;
  /**
   * Per request path: an encoder for the messages a fast-path call answers
   * with, faster than the reflective one for those it knows (a SubmitStream
   * token); undefined for the others, which take the reflective one.
   */
  encoders?: ReadonlyMap<string, (message: unknown) => Uint8Array | undefined>;
  /** Limits for a Connect unary JSON body, checked as it arrives. */
  json?: { maxNodes: number; maxDepth: number };
  /** Serve every call through connect's handler (for comparisons). Default true. */
  fastPath?: boolean;
}

const compressions: Compression[] = [compressionGzip, compressionBrotli];
const GRPC_PROTO = /^application\/grpc(\+proto)?$/i;
const NGHTTP2_CANCEL = 8;

/** Response headers connect starts a gRPC answer with, one object per response compression: fast-path calls share them. */
const initialHeaders = new Map<string, Record<string, string>>();
function initialHeader(encoding: string | undefined): Record<string, string> {
  const key = encoding ?? "";
  let h = initialHeaders.get(key);
  if (h === undefined) {
    h = encoding === undefined ? { "content-type": "application/grpc+proto" } : { "content-type": "application/grpc+proto", "grpc-encoding": encoding };
    initialHeaders.set(key, h);
  }
  return h;
}

/**
 * Serves raw HTTP/2 streams: every call goes to connect's UniversalHandler
 * for its path, except gRPC unary and server-streaming calls with binary
 * protobuf, uncompressed, which take the fast path (fast-unary.ts,
 * fast-stream.ts). Before a body is read, calls
 * over the in-flight limit are refused; while it is read, its bytes count
 * against the server's budget and it must keep arriving (body idle timeout).
 */
export function createStreamHandler(o: EdgeOptions): { onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void; readonly inflight: number } {
  const table = buildRoutes(
    { interceptors: o.interceptors, readMaxBytes: o.readMaxBytes, acceptCompression: compressions, binaryOptions: READ_OPTIONS },
    o.routes,
  );
  const fastPath = o.fastPath ?? true;
  // Streaming calls take the fast path only when every interceptor has a hook (the chain is not run around a stream).
  const streamHooks = hooksOf(o.interceptors);
  let inflight = 0;

  const onStream = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void => {
    const path = headers[":path"] ?? "";
    const q = path.indexOf("?");
    const route = table.get(q < 0 ? path : path.slice(0, q));
    stream.on("error", () => {});
    if (route === undefined) {
      // connect-node's fallback for a path no route serves.
      stream.respond({ ":status": 404 }, { endStream: true });
      stream.resume();
      return;
    }
    clampDeadlineHeaders(headers as Record<string, unknown>, o.deadlineCeilingMs);
    inflight++;
    stream.once("close", () => inflight--);
    const refuse =
      o.maxInflightCalls > 0 && inflight > o.maxInflightCalls
        ? new ConnectError(`server busy: ${inflight - 1} calls in progress, the server's limit`, Code.ResourceExhausted)
        : undefined;
    if (fastPath && fastEligible(headers) && (route.unary !== undefined || (route.serverStream !== undefined && streamHooks !== undefined))) {
      serveFast(route, stream, headers, refuse);
    } else {
      serveUniversal(route, stream, headers, refuse);
    }
  };

  function serveFast(route: EdgeRoute, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, refuse: ConnectError | undefined): void {
    const target = (route.unary ?? route.serverStream)!;
    const compression = responseCompression(joined(headers["grpc-accept-encoding"]));
    const timeout = parseGrpcTimeout(joined(headers["grpc-timeout"]));
    const ctx = new FastContext(target.method, stream, headers, timeout, initialHeader(compression?.name));
    const call: FastCall = {
      method: target.method,
      impl: target.impl,
      bytes: EMPTY,
      ctx,
      compression,
      precheck: o.prechecks?.get(route.handler.requestPath),
      encoder: o.encoders?.get(route.handler.requestPath),
      decoded: () => release(),
    };
    if (refuse !== undefined) {
      stream.resume();
      answerError(call, refuse);
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let held = 0;
    let fallen = false;
    const release = () => {
      o.budget.give(held);
      held = 0;
    };
    const watched: Watched = { expiresAt: 0, expire: () => stream.close(NGHTTP2_CANCEL) };
    o.watchdog.watch(watched, o.bodyIdleTimeoutMs);
    const stop = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      o.watchdog.unwatch(watched);
    };
    // Anything but one whole uncompressed envelope within the limit goes to connect, with the bytes read so far:
    // its answers to bad framing are the reference.
    const fallBack = () => {
      fallen = true;
      stop();
      stream.pause();
      release();
      serveUniversal(route, stream, headers, undefined, chunks);
    };
    /** The envelope's declared length, once its first 5 bytes are in. */
    let declared = -1;
    const onData = (chunk: Buffer) => {
      watched.expiresAt = o.watchdog.now + o.bodyIdleTimeoutMs;
      if (!o.budget.take(chunk.length)) {
        stop();
        release();
        stream.resume();
        answerError(call, o.budget.busy());
        return;
      }
      held += chunk.length;
      chunks.push(chunk);
      received += chunk.length;
      if (declared < 0 && received >= 5) {
        // Read once: joining every chunk again on each of thousands of one-byte DATA frames was quadratic.
        const head = chunks[0]!.length >= 5 ? chunks[0]! : Buffer.concat(chunks);
        const length = head.readUInt32BE(1);
        if (head[0] !== 0 || length > o.readMaxBytes) return fallBack();
        declared = length;
      }
      if (declared >= 0 && received > 5 + declared) fallBack();
    };
    const onEnd = () => {
      stop();
      if (fallen) return;
      if (received < 5) return fallBack();
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (body.length !== 5 + body.readUInt32BE(1)) return fallBack();
      call.bytes = body.subarray(5);
      stream.once("close", () => {
        release();
        ctx.abort(resetError(stream.rstCode));
      });
      if (route.unary !== undefined) {
        // The body's watch (stopped above; its 'close' unwatches it) now watches the answer.
        watchAnswer(stream, watched);
        runFastCall(call, o.interceptors);
      } else runFastStream(call, streamHooks, timeout);
    };
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.once("close", () => {
      stop();
      release();
    });
  }

  function serveUniversal(
    route: EdgeRoute,
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    refuse: ConnectError | undefined,
    prefix: Buffer[] = [],
  ): void {
    const url = streamUrl(stream, headers);
    if (url === undefined) {
      if (!stream.destroyed) stream.respond({ ":status": 400, "content-type": "text/plain; charset=utf-8" }, { endStream: false });
      if (!stream.destroyed) stream.end(BAD_HOST);
      return;
    }
    const ct = headers["content-type"] ?? "";
    // gRPC-Web text mode: connect serves the binary protocol, translated around it; frames written
    // straight to the stream (frame-sink.ts) would skip the translation, so the stream is not offered.
    const text = isGrpcWebText(ct);
    const values = createContextValues();
    if (!text) values.set(http2StreamKey, stream);
    values.set(connectionKey, stream.session);
    const check = o.prechecks?.get(route.handler.requestPath);
    let body: AsyncIterable<Uint8Array>;
    if (refuse !== undefined) body = refusing(stream, refuse);
    else if (check !== undefined && o.json !== undefined) {
      // Its messages are checked whole before connect decodes them, in whatever protocol and encoding (prescan.ts).
      const header = (name: string) => joined(headers[name]);
      // Its bytes stay counted until connect has the checked message, not only until they are read.
      const held = new HeldBytes(o.budget);
      body = givingBack(prescanned(budgeted(stream, prefix, undefined, held), ct, header, { binary: check, json: o.json }, o.readMaxBytes, (n) => held.hold(n)), held);
    } else {
      const scan = o.json !== undefined && /^application\/json/i.test(ct) ? createJsonTextScan(o.json.maxNodes, o.json.maxDepth) : undefined;
      body = budgeted(stream, prefix, scan);
    }
    if (route.unary !== undefined) {
      const watched = watchAnswer(stream);
      stream.once("close", () => o.watchdog.unwatch(watched));
    }
    const req = universalRequest(stream, headers, url, body, values);
    route.handler(text ? decodeTextRequest(req) : req).then(
      (res) => writeUniversalResponse(text ? encodeTextResponse(res) : res, stream),
      () => {
        if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
      },
    );
  }

  /**
   * A unary call's answer is written whole, and a client that opens its flow-control window no further would keep
   * it in memory for as long as it keeps the stream (1,000 streams a connection, a 4 MiB answer each, from 4 KiB
   * of compressed requests). While an answer is waiting to be sent and none of it goes out for body_idle_timeout,
   * the stream is cancelled, as a request body that stalls is. A call still running (nothing to send) is not
   * touched. Streaming answers are bounded per stream by their backpressure instead. `watched` (the fast path's
   * body watch, reused) or a new one; whoever holds it unwatches it when the stream closes.
   */
  function watchAnswer(stream: http2.ServerHttp2Stream, watched: Watched = { expiresAt: 0, expire: () => {} }): Watched {
    let last = 0;
    watched.expire = () => {
      if (stream.destroyed) return;
      const pending = stream.bufferSize;
      if (pending > 0 && pending === last) {
        stream.close(NGHTTP2_CANCEL);
        return;
      }
      last = pending;
      o.watchdog.watch(watched, o.bodyIdleTimeoutMs);
    };
    o.watchdog.watch(watched, o.bodyIdleTimeoutMs);
    return watched;
  }

  /**
   * The stream's body (after bytes already read), its bytes held in the budget until connect has parsed them;
   * given `held`, held there for the caller to give back (givingBack).
   */
  async function* budgeted(stream: http2.ServerHttp2Stream, prefix: Buffer[], scan: ((c: Uint8Array) => void) | undefined, given?: HeldBytes) {
    const held = given ?? new HeldBytes(o.budget);
    const watched: Watched = { expiresAt: 0, expire: () => stream.close(NGHTTP2_CANCEL) };
    o.watchdog.watch(watched, o.bodyIdleTimeoutMs);
    try {
      for (const chunk of prefix) {
        scan?.(chunk);
        yield chunk;
      }
      // Not destroyed when connect stops reading early (an error): the answer still has to go out on it.
      for await (const chunk of stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        watched.expiresAt = o.watchdog.now + o.bodyIdleTimeoutMs;
        if (!held.take(chunk.length)) throw o.budget.busy();
        scan?.(chunk);
        yield chunk;
      }
    } finally {
      o.watchdog.unwatch(watched);
      stream.resume();
      if (given === undefined) held.give();
    }
  }

  return {
    onStream,
    get inflight() {
      return inflight;
    },
  };
}

const EMPTY = new Uint8Array(0);

/** A body that fails at once: connect answers the error in the call's own protocol, before any byte is read. */
// eslint-disable-next-line require-yield
async function* refusing(stream: http2.ServerHttp2Stream, e: ConnectError): AsyncGenerator<Uint8Array> {
  stream.resume();
  throw e;
}

/** gRPC, binary protobuf, uncompressed request, a deadline connect would accept: what the fast path serves. */
function fastEligible(h: http2.IncomingHttpHeaders): boolean {
  if (h[":method"] !== "POST") return false;
  if (!GRPC_PROTO.test(h["content-type"] ?? "")) return false;
  const enc = h["grpc-encoding"];
  if (enc !== undefined && enc !== "identity") return false;
  const t = parseGrpcTimeout(joined(h["grpc-timeout"]));
  return !Number.isNaN(t);
}

/** connect's negotiation (compressionNegotiate) for an uncompressed request: the first accepted encoding it supports. */
function responseCompression(accepted: string | undefined): Compression | null {
  if (accepted === undefined || accepted === "") return null;
  for (const name of accepted.split(",")) {
    const found = compressions.find((c) => c.name === name.trim());
    if (found !== undefined) return found;
  }
  return null;
}
