import { promisify } from "node:util";
import * as zlib from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodeBase64Text } from "../grpc-web-text.js";
import { createJsonTextScan } from "./json-scan.js";

/**
 * Checks a request's message before connect decodes it, in every protocol
 * and encoding connect serves: the edge's fast path checks uncompressed
 * binary gRPC itself (its precheck), but a compressed message (4 KiB of gzip
 * can hold a 4 MiB list of a million nulls), gRPC-Web, the Connect protocol
 * and HTTP/1.1 reach connect's own handler, which decodes whatever fits in
 * read_max_bytes. The methods checked are unary or server-streaming: their
 * request is one message, and a body with room for more than one is refused.
 * The body is held whole; the message connect would decode (the first
 * envelope it does not skip) is decompressed as connect would, bounded by
 * `readMaxBytes`, and checked: `binary` for protobuf, `json` (a text scan)
 * for JSON. An envelope that declares more than `readMaxBytes`, or bytes
 * that do not decompress, are left to connect, which refuses them before
 * decoding.
 */
export interface MessageCheck {
  /** Throws a ConnectError for a binary message over the limits. */
  binary(bytes: Uint8Array): void;
  /** A JSON message's limits: values and nesting. */
  json: { maxNodes: number; maxDepth: number };
}

const gunzip = promisify(zlib.gunzip);
const brotli = promisify(zlib.brotliDecompress);

interface Framing {
  enveloped: boolean;
  json: boolean;
  /** The header naming the message's encoding. */
  encodingHeader: string;
  /** gRPC-Web text: the body is base64. */
  base64: boolean;
  /** Envelopes connect skips in this protocol (gRPC-Web trailers, Connect's end of stream); gRPC skips none. */
  skipFlag: number;
}

/** How connect frames a request of this content type; undefined for one it does not serve (it refuses those). */
export function framingOf(contentType: string): Framing | undefined {
  const ct = contentType.split(";")[0]!.trim().toLowerCase();
  const grpc = { enveloped: true, encodingHeader: "grpc-encoding", base64: false, skipFlag: 0 };
  const web = { ...grpc, skipFlag: 0x80 };
  const connect = { enveloped: true, encodingHeader: "connect-content-encoding", base64: false, skipFlag: 0x02 };
  const unary = { enveloped: false, encodingHeader: "content-encoding", base64: false, skipFlag: 0 };
  switch (ct) {
    case "application/grpc":
    case "application/grpc+proto":
      return { ...grpc, json: false };
    case "application/grpc+json":
      return { ...grpc, json: true };
    case "application/grpc-web":
    case "application/grpc-web+proto":
      return { ...web, json: false };
    case "application/grpc-web+json":
      return { ...web, json: true };
    case "application/grpc-web-text":
    case "application/grpc-web-text+proto":
      return { ...web, json: false, base64: true };
    case "application/connect+proto":
      return { ...connect, json: false };
    case "application/connect+json":
      return { ...connect, json: true };
    case "application/proto":
      return { ...unary, json: false };
    case "application/json":
      return { ...unary, json: true };
    default:
      return undefined;
  }
}

/** The longest body of one request message of at most `readMaxBytes`, as this framing sends it. */
function bodyLimit(f: Framing, readMaxBytes: number): number {
  if (!f.enveloped) return readMaxBytes;
  // The message's envelope, and room for a skipped envelope beside it (Connect's end of stream, say).
  const binary = 5 + readMaxBytes + 1024;
  // base64 (4 characters per 3 bytes, padding per segment) and the line breaks a client may put in.
  return f.base64 ? Math.ceil((binary * 4) / 3) + 64 * 1024 : binary;
}

/** `body`, checked whole before its first byte is handed on (the same chunks, in order). */
export async function* prescanned(
  body: AsyncIterable<Uint8Array>,
  contentType: string,
  header: (name: string) => string | undefined,
  check: MessageCheck,
  readMaxBytes: number,
  /** Takes bytes the check holds beyond the body's own (a decompressed or base64-decoded copy); throws if they do not fit. */
  hold?: (bytes: number) => void,
): AsyncGenerator<Uint8Array> {
  const framing = framingOf(contentType);
  if (framing === undefined) {
    // Not a type connect serves: it refuses the call without reading the body.
    yield* body;
    return;
  }
  const limit = bodyLimit(framing, readMaxBytes);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      throw new ConnectError(`request body over ${limit} bytes: the method takes one message of at most ${readMaxBytes} bytes`, Code.ResourceExhausted);
    }
    chunks.push(chunk);
  }
  const whole = Buffer.concat(chunks);
  const message = await messageOf(whole, framing, header(framing.encodingHeader), readMaxBytes);
  if (message !== undefined) {
    // A decompressed copy is held until connect has decoded the message (it decompresses its own then):
    // in the server's budget too, or many small compressed bodies would each hold up to readMaxBytes uncounted.
    if (message.buffer !== whole.buffer) hold?.(message.byteLength);
    if (framing.json) createJsonTextScan(check.json.maxNodes, check.json.maxDepth)(message);
    else check.binary(message);
  }
  // Whole: connect's envelope decoder sums its buffered chunks on each one it is given, so a body of thousands
  // of one-byte DATA frames handed over as they came cost it time quadratic in their number.
  chunks.length = 0;
  yield whole;
}

/** The message connect would decode from this body, decompressed; undefined where connect refuses the body itself. */
async function messageOf(body: Buffer, framing: Framing, encoding: string | undefined, readMaxBytes: number): Promise<Uint8Array | undefined> {
  if (!framing.enveloped) return decompressed(body, encoding, readMaxBytes);
  // As the translation decodes it: several padded segments may follow each other.
  const bytes = framing.base64 ? decodeBase64Text(body.toString("latin1")) : body;
  for (let at = 0; at + 5 <= bytes.length; ) {
    const flags = bytes[at]!;
    const length = bytes.readUInt32BE(at + 1);
    // Over read_max_bytes, or cut short: connect refuses it from its header.
    if (length > readMaxBytes || at + 5 + length > bytes.length) return undefined;
    const end = at + 5 + length;
    if ((flags & framing.skipFlag) === 0) {
      const raw = bytes.subarray(at + 5, end);
      return (flags & 0x01) === 0 ? raw : decompressed(raw, encoding, readMaxBytes);
    }
    at = end;
  }
  return undefined;
}

/** The bytes as connect would decompress them, or undefined when it would not (it refuses those itself). */
async function decompressed(bytes: Uint8Array, encoding: string | undefined, readMaxBytes: number): Promise<Uint8Array | undefined> {
  const name = (encoding ?? "identity").trim().toLowerCase();
  try {
    if (name === "identity" || name === "") return bytes;
    if (name === "gzip") return await gunzip(bytes, { maxOutputLength: Math.max(1, readMaxBytes) });
    if (name === "br") return await brotli(bytes, { maxOutputLength: Math.max(1, readMaxBytes) });
  } catch {
    // Corrupt, or past read_max_bytes: connect's own decompression refuses it.
  }
  return undefined;
}
