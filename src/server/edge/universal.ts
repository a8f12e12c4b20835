import type * as http2 from "node:http2";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import type { UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { encodeGrpcMessage } from "../grpc-message.js";
import { requestUrl } from "../request-url.js";
import { resetError } from "./context.js";

/**
 * connect's UniversalServerRequest for a raw HTTP/2 stream: what
 * connect-node builds from the compat layer's request, without it.
 */
export function universalRequest(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  url: string,
  body: AsyncIterable<Uint8Array>,
  contextValues: ContextValues,
): UniversalServerRequest {
  const abort = new AbortController();
  stream.once("close", () => abort.abort(resetError(stream.rstCode)));
  const header = new Headers();
  for (const k in headers) {
    if (k.charCodeAt(0) === 58 /* ":" */) continue;
    const v = headers[k];
    if (typeof v === "string") header.append(k, v);
    else if (Array.isArray(v)) for (const e of v) header.append(k, e);
  }
  return {
    httpVersion: "2.0",
    method: headers[":method"] ?? "",
    url,
    header,
    body,
    signal: abort.signal,
    contextValues,
  };
}

/** The URL of a request on `stream`, or undefined when its :authority does not make one (requestUrl). */
export function streamUrl(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): string | undefined {
  const scheme = (stream.session?.socket as { encrypted?: boolean } | undefined)?.encrypted === true ? "https" : "http";
  return requestUrl(scheme, headers[":authority"] ?? "localhost", headers[":path"] ?? "/");
}

/**
 * Writes connect's response to the stream, as connect-node's
 * universalResponseToNodeResponse does through the compat layer: headers
 * once the first body chunk is ready (so that the implementation can still
 * set them), each chunk with backpressure, then trailers. `grpc-message` is
 * re-encoded as the gRPC spec says (grpc-message.ts).
 */
export async function writeUniversalResponse(res: UniversalServerResponse, stream: http2.ServerHttp2Stream): Promise<void> {
  const it = res.body?.[Symbol.asyncIterator]();
  let writeError = false;
  try {
    let chunk = it === undefined ? undefined : await it.next();
    if (stream.destroyed) return;
    const trailers = res.trailer === undefined ? undefined : nodeHeaders(res.trailer);
    stream.respond({ ...nodeHeaders(res.header), ":status": res.status }, { waitForTrailers: trailers !== undefined });
    if (trailers !== undefined) {
      stream.once("wantTrailers", () => {
        if (!stream.destroyed) stream.sendTrailers(nodeHeaders(res.trailer));
      });
    }
    for (; chunk !== undefined && chunk.done !== true; chunk = await it!.next()) {
      writeError = true;
      if (stream.destroyed) throw new ConnectError("the client went away", Code.Aborted);
      if (!stream.write(chunk.value)) await drained(stream);
      writeError = false;
    }
    if (!stream.destroyed) stream.end();
  } catch (e) {
    if (writeError) it?.throw?.(e).catch(() => {});
    if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
  } finally {
    it?.return?.().catch(() => {});
  }
}

const http2Constants = { NGHTTP2_INTERNAL_ERROR: 2 };

function drained(stream: http2.ServerHttp2Stream): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", closed);
      resolve();
    };
    const closed = () => {
      stream.off("drain", done);
      reject(new ConnectError("the client went away", Code.Aborted));
    };
    stream.once("drain", done);
    stream.once("close", closed);
  });
}

/** Headers → an HTTP/2 header object, `grpc-message` in the spec's encoding. */
function nodeHeaders(h: ConstructorParameters<typeof Headers>[0] | undefined): Record<string, string | string[]> {
  const o: Record<string, string | string[]> = {};
  if (h === undefined) return o;
  const headers = h instanceof Headers ? h : new Headers(h);
  headers.forEach((v, k) => {
    if (k === "set-cookie") o[k] = headers.getSetCookie();
    else o[k] = v;
  });
  const m = o["grpc-message"];
  if (typeof m === "string") {
    try {
      o["grpc-message"] = encodeGrpcMessage(decodeURIComponent(m));
    } catch {
      // Not connect's encoding: leave it.
    }
  }
  return o;
}
