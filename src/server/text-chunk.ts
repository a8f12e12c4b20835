import type { SubmitStreamResponse } from "../../gen/dispatcher/v1/dispatcher_pb.js";

/**
 * The binary of the commonest message the service sends, a SubmitStream
 * token: a SubmitStreamResponse whose Chunk carries text and nothing else,
 * written directly. protobuf-es's reflective encoder walks the schema for
 * every token (~2 µs a message on this machine, in a loop). Anything else gives
 * undefined and takes the reflective encoder; the test compares the two
 * byte for byte.
 */
export function encodeTextChunk(message: unknown): Uint8Array | undefined {
  const m = message as SubmitStreamResponse;
  if (m.$typeName !== "dispatcher.v1.SubmitStreamResponse" || m.event.case !== "chunk" || hasUnknown(m)) return undefined;
  const c = m.event.value;
  if (c.payload.case !== undefined || c.text === "" || hasUnknown(c)) return undefined;
  for (const _ in c.metadata) return undefined;
  const textBytes = Buffer.byteLength(c.text, "utf8");
  // Chunk { string text = 3 } inside SubmitStreamResponse { Chunk chunk = 2 }: both length-delimited.
  const chunkBytes = 1 + varintSize(textBytes) + textBytes;
  const out = Buffer.allocUnsafe(1 + varintSize(chunkBytes) + chunkBytes);
  let at = 0;
  out[at++] = (2 << 3) | 2;
  at = writeVarint(out, at, chunkBytes);
  out[at++] = (3 << 3) | 2;
  at = writeVarint(out, at, textBytes);
  out.write(c.text, at, "utf8");
  return out;
}

function hasUnknown(m: object): boolean {
  const u = (m as { $unknown?: unknown[] }).$unknown;
  return u !== undefined && u.length > 0;
}

export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n >>>= 7;
    size++;
  }
  return size;
}

export function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}
