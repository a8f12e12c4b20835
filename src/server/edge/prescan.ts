import { promisify } from "node:util";
import * as zlib from "node:zlib";
import { decodeBase64Stream } from "../grpc-web-text.js";
import { createJsonTextScan } from "./json-scan.js";

/**
 * Checks a request's messages before connect decodes them, in every protocol
 * and encoding connect serves: the edge's fast path checks uncompressed
 * binary gRPC itself (its precheck), but a compressed message (4 KiB of gzip
 * can hold a 4 MiB list of a million nulls), gRPC-Web, the Connect protocol
 * and HTTP/1.1 reach connect's own handler, which decodes whatever fits in
 * read_max_bytes. The body is held whole (one message: the methods checked
 * are unary or server-streaming), each message decompressed as connect
 * would, bounded by `readMaxBytes`, and checked: `binary` for protobuf,
 * `json` (a text scan) for JSON. A body over the bound, an encoding this
 * does not know or bytes that do not decompress are passed on unchecked:
 * connect refuses them itself, before decoding.
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
  /** The header naming the messages' encoding. */
  encodingHeader: string;
  /** gRPC-Web text: the body is base64. */
  base64: boolean;
}

/** How connect frames a request of this content type; undefined for one it does not serve (it refuses those). */
export function framingOf(contentType: string): Framing | undefined {
  const ct = contentType.split(";")[0]!.trim().toLowerCase();
  switch (ct) {
    case "application/grpc":
    case "application/grpc+proto":
    case "application/grpc-web":
    case "application/grpc-web+proto":
      return { enveloped: true, json: false, encodingHeader: "grpc-encoding", base64: false };
    case "application/grpc+json":
    case "application/grpc-web+json":
      return { enveloped: true, json: true, encodingHeader: "grpc-encoding", base64: false };
    case "application/grpc-web-text":
    case "application/grpc-web-text+proto":
      return { enveloped: true, json: false, encodingHeader: "grpc-encoding", base64: true };
    case "application/connect+proto":
      return { enveloped: true, json: false, encodingHeader: "connect-content-encoding", base64: false };
    case "application/connect+json":
      return { enveloped: true, json: true, encodingHeader: "connect-content-encoding", base64: false };
    case "application/proto":
      return { enveloped: false, json: false, encodingHeader: "content-encoding", base64: false };
    case "application/json":
      return { enveloped: false, json: true, encodingHeader: "content-encoding", base64: false };
    default:
      return undefined;
  }
}

/** `body`, checked whole before its first byte is handed on (the same chunks, in order). */
export async function* prescanned(
  body: AsyncIterable<Uint8Array>,
  contentType: string,
  header: (name: string) => string | undefined,
  check: MessageCheck,
  readMaxBytes: number,
): AsyncGenerator<Uint8Array> {
  const framing = framingOf(contentType);
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Envelope headers and base64 inflate a message a little; past this it is over read_max_bytes anyway.
  const bound = Math.ceil(readMaxBytes * 1.4) + 64;
  const it = body[Symbol.asyncIterator]();
  for (;;) {
    const r = await it.next();
    if (r.done === true) break;
    chunks.push(r.value);
    size += r.value.length;
    if (size > bound || framing === undefined) {
      // Too big to be checked (connect refuses it by size) or not a type connect serves: handed on as it is.
      yield* chunks;
      for (;;) {
        const rest = await it.next();
        if (rest.done === true) return;
        yield rest.value;
      }
    }
  }
  await checkBody(Buffer.concat(chunks), framing!, header(framing!.encodingHeader), check, readMaxBytes);
  yield* chunks;
}

async function checkBody(body: Buffer, framing: Framing, encoding: string | undefined, check: MessageCheck, readMaxBytes: number): Promise<void> {
  // As the translation decodes it (several padded segments may follow each other: Node's decoder stops at the first "=").
  const bytes = framing.base64 ? await base64Decoded(body) : body;
  if (!framing.enveloped) {
    const message = await decompressed(bytes, encoding, readMaxBytes);
    if (message !== undefined) checkMessage(message, framing, check);
    return;
  }
  for (let at = 0; at + 5 <= bytes.length; ) {
    const flags = bytes[at]!;
    const length = bytes.readUInt32BE(at + 1);
    const end = at + 5 + length;
    if (end > bytes.length) return;
    // Connect's end-of-stream message (0x02) and gRPC-Web trailers (0x80) carry no request.
    if ((flags & 0x82) === 0) {
      const raw = bytes.subarray(at + 5, end);
      const message = (flags & 0x01) === 0 ? raw : await decompressed(raw, encoding, readMaxBytes);
      if (message !== undefined) checkMessage(message, framing, check);
    }
    at = end;
  }
}

function checkMessage(message: Uint8Array, framing: Framing, check: MessageCheck): void {
  if (framing.json) createJsonTextScan(check.json.maxNodes, check.json.maxDepth)(message);
  else check.binary(message);
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

async function base64Decoded(text: Buffer): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const b of decodeBase64Stream((async function* () { yield text; })())) parts.push(b);
  return Buffer.concat(parts);
}
