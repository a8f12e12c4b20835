import type * as http from "node:http";
import type * as http2 from "node:http2";
import { createContextKey, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import type { FrameSink } from "./metrics-hub.js";

/**
 * The HTTP/2 stream under a call (undefined over HTTP/1.1), so that a
 * server-streaming handler can write frames it encoded once for many streams
 * instead of having connect serialise the same message once per stream.
 */
export const http2StreamKey = createContextKey<http2.ServerHttp2Stream | undefined>(undefined, { description: "HTTP/2 stream" });

/** For connectNodeAdapter's `contextValues`. */
export function http2StreamValues(req: http.IncomingMessage | http2.Http2ServerRequest): ContextValues {
  const values = createContextValues();
  if ("stream" in req) values.set(http2StreamKey, req.stream);
  return values;
}

/** Response content types whose messages are binary protobuf in the shared envelope (FrameSink). */
const BINARY = new Set(["application/grpc+proto", "application/grpc-web+proto", "application/connect+proto"]);

/**
 * A sink that writes frames straight to the call's HTTP/2 stream, or
 * undefined when connect must encode each message itself: HTTP/1.1, a JSON
 * codec, or a compressed response.
 *
 * Only valid once connect has written the stream's first message (headers
 * go out with it): a server-streaming handler is resumed after its first
 * `yield` only when that message has been written. Trailers stay connect's:
 * the handler ends by throwing or returning as usual.
 *
 * A frame is dropped, not queued, while the stream's buffer is over its
 * high-water mark (a client that does not keep up, or is gone): it gets the
 * next tick once it has caught up, as connect's own writes would pause.
 */
export function frameSinkFor(ctx: HandlerContext): FrameSink | undefined {
  const stream = ctx.values.get(http2StreamKey);
  if (stream === undefined) return undefined;
  if (!BINARY.has(ctx.responseHeader.get("content-type") ?? "")) return undefined;
  const encoding = ctx.responseHeader.get("grpc-encoding") ?? ctx.responseHeader.get("connect-content-encoding");
  if (encoding !== null && encoding !== "identity") return undefined;
  return {
    write(frame) {
      if (stream.destroyed || stream.writableEnded || stream.writableNeedDrain) return;
      stream.write(frame);
    },
  };
}
