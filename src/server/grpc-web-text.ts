import { Code, ConnectError } from "@connectrpc/connect";
import type { UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";

/**
 * gRPC-Web text mode (`application/grpc-web-text`, the default of Google's
 * grpc-web library): the same frames as binary gRPC-Web, base64-encoded in
 * both directions. connect-es does not speak it, so it is translated around
 * connect's handler: the request body is decoded and handed on as
 * `application/grpc-web+proto`; each chunk of the answer (frames, and the
 * trailer frame last) is encoded on its own, padding included, which is
 * what grpc-web clients decode.
 */
const TEXT = /^application\/grpc-web-text(\+proto)?\s*(;|$)/i;

export const GRPC_WEB_TEXT_CONTENT_TYPE = "application/grpc-web-text+proto";

export function isGrpcWebText(contentType: string | string[] | undefined): boolean {
  return typeof contentType === "string" && TEXT.test(contentType);
}

/** The request as connect's gRPC-Web protocol reads it: binary content type, decoded body. */
export function decodeTextRequest(req: UniversalServerRequest): UniversalServerRequest {
  const header = new Headers(req.header);
  header.set("content-type", "application/grpc-web+proto");
  header.delete("content-length");
  return { ...req, header, body: decodeBase64Stream(req.body as AsyncIterable<Uint8Array>) };
}

/** connect's gRPC-Web answer in text mode. Answers that are not gRPC-Web (a 404, say) go out as they are. */
export function encodeTextResponse(res: UniversalServerResponse): UniversalServerResponse {
  const header = new Headers(res.header);
  if (!/^application\/grpc-web/i.test(header.get("content-type") ?? "")) return res;
  header.set("content-type", GRPC_WEB_TEXT_CONTENT_TYPE);
  header.delete("content-length");
  return { ...res, header, body: res.body === undefined ? undefined : encodeBase64Stream(res.body) };
}

async function* encodeBase64Stream(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    if (chunk.byteLength === 0) continue;
    yield Buffer.from(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("base64"), "latin1");
  }
}

/**
 * Decodes base64 as it arrives, in whole 4-character groups. A client may
 * send several padded segments one after the other ("AAA=AAAA"), so text
 * with padding inside is decoded group by group: Node's decoder stops at the
 * first "=".
 */
export async function* decodeBase64Stream(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let rest = "";
  for await (const chunk of body) {
    const text = rest + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("latin1").replace(/[\r\n\t ]/g, "");
    const whole = text.length - (text.length % 4);
    rest = text.slice(whole);
    if (whole > 0) yield decode(text.slice(0, whole));
  }
  if (rest.length > 0) throw new ConnectError(`gRPC-Web text body: ${rest.length} base64 characters left over`, Code.InvalidArgument);
}

/** A whole base64 body as decodeBase64Stream reads it: white space ignored, padded segments one after the other. */
export function decodeBase64Text(text: string): Buffer {
  const t = text.replace(/[\r\n\t ]/g, "");
  const rest = t.length % 4;
  if (rest > 0) throw new ConnectError(`gRPC-Web text body: ${rest} base64 characters left over`, Code.InvalidArgument);
  return decode(t);
}

const BASE64 = /^[A-Za-z0-9+/]*$/;

const PADDED_GROUP = /^[A-Za-z0-9+/]{2}([A-Za-z0-9+/]=|==)$/;

/**
 * Whole 4-character groups of base64. Padding ends a segment: each segment
 * (up to and including its padded group) is decoded on its own, so the cost
 * stays one pass however many segments there are.
 */
function decode(text: string): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  for (let eq = text.indexOf("="); eq >= 0; eq = text.indexOf("=", start)) {
    // The groups are whole from the body's start: "=" ends the group it is in.
    const end = eq - (eq % 4) + 4;
    const segment = text.slice(start, end);
    if (!BASE64.test(segment.slice(0, -4)) || !PADDED_GROUP.test(segment.slice(-4))) {
      throw new ConnectError("gRPC-Web text body: not base64", Code.InvalidArgument);
    }
    parts.push(Buffer.from(segment, "base64"));
    start = end;
  }
  const rest = text.slice(start);
  if (!BASE64.test(rest)) throw new ConnectError("gRPC-Web text body: not base64", Code.InvalidArgument);
  if (parts.length === 0) return Buffer.from(rest, "base64");
  parts.push(Buffer.from(rest, "base64"));
  return Buffer.concat(parts);
}
