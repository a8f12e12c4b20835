import * as http2 from "node:http2";

/**
 * Re-encodes the `grpc-message` header and trailer as the gRPC spec says
 * (PROTOCOL-HTTP2.md: percent-encode only bytes outside 0x20-0x7E, and "%").
 *
 * connect-node encodes it with encodeURIComponent, which also escapes
 * ",", ":", ";", "/"…, and grpc-js decodes with decodeURI, which leaves those
 * escaped: a grpc-js user would read "known backends%3A echo%2C http". Both
 * decode the spec's form correctly. Costs nothing on successful unary calls
 * (no grpc-message).
 */
export function specGrpcMessage(res: http2.Http2ServerResponse): void {
  res.writeHead = writeHead as typeof res.writeHead;
  res.addTrailers = addTrailers;
}

const baseWriteHead = http2.Http2ServerResponse.prototype.writeHead;
const baseAddTrailers = http2.Http2ServerResponse.prototype.addTrailers;

type WriteHead = (this: http2.Http2ServerResponse, status: number, a?: unknown, b?: unknown) => http2.Http2ServerResponse;

function writeHead(this: http2.Http2ServerResponse, status: number, a?: unknown, b?: unknown): http2.Http2ServerResponse {
  const headers = typeof a === "object" && a !== null ? a : b;
  if (typeof headers === "object" && headers !== null) fix(headers as http2.OutgoingHttpHeaders);
  return (baseWriteHead as WriteHead).call(this, status, a, b);
}

function addTrailers(this: http2.Http2ServerResponse, headers: http2.OutgoingHttpHeaders): void {
  fix(headers);
  baseAddTrailers.call(this, headers);
}

function fix(headers: http2.OutgoingHttpHeaders): void {
  const m = headers["grpc-message"];
  if (typeof m !== "string") return;
  let text: string;
  try {
    text = decodeURIComponent(m);
  } catch {
    return;
  }
  headers["grpc-message"] = encodeGrpcMessage(text);
}

export function encodeGrpcMessage(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
