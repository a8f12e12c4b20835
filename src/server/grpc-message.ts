import * as http2 from "node:http2";

/**
 * An Http2ServerResponse that re-encodes the `grpc-message` header and
 * trailer as the gRPC spec says (PROTOCOL-HTTP2.md: percent-encode only bytes
 * outside 0x20-0x7E, and "%"). Given to http2.createServer as its
 * `Http2ServerResponse` class, so that no response is patched one by one
 * (patching set two own properties on every response of the hot path).
 *
 * connect-node encodes it with encodeURIComponent, which also escapes
 * ",", ":", ";", "/"…, and grpc-js decodes with decodeURI, which leaves those
 * escaped: a grpc-js user would read "known backends%3A echo%2C http". Both
 * decode the spec's form correctly. Costs nothing on successful unary calls
 * (no grpc-message).
 */
export class SpecGrpcMessageResponse extends http2.Http2ServerResponse {
  override writeHead(status: number, a?: unknown, b?: unknown): this {
    const headers = typeof a === "object" && a !== null ? a : b;
    if (typeof headers === "object" && headers !== null) fix(headers as http2.OutgoingHttpHeaders);
    return (super.writeHead as WriteHead).call(this, status, a, b) as this;
  }

  override addTrailers(headers: http2.OutgoingHttpHeaders): void {
    fix(headers);
    super.addTrailers(headers);
  }
}

type WriteHead = (this: http2.Http2ServerResponse, status: number, a?: unknown, b?: unknown) => http2.Http2ServerResponse;

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

/** Printable ASCII but "%": the spec's encoding leaves such a message as it is. */
const PLAIN = /^[\x20-\x24\x26-\x7e]*$/;

export function encodeGrpcMessage(text: string): string {
  if (PLAIN.test(text)) return text;
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
