import * as http2 from "node:http2";
import { brotliDecompressSync, gunzipSync } from "node:zlib";

/**
 * The front ends the conformance tests compare: the previous one (node's
 * compat layer + connectNodeAdapter, the reference), the edge with every
 * call through connect's handler, and the edge's fast path.
 */
export const FRONTS = [
  { name: "compat", frontEnd: "compat" as const, fastPath: true },
  { name: "edge (connect handler)", frontEnd: "edge" as const, fastPath: false },
  { name: "edge (fast path)", frontEnd: "edge" as const, fastPath: true },
];

/** What a client sees of one HTTP/2 answer: headers (no date), the body bytes, trailers. */
export interface RawAnswer {
  headers: Record<string, string>;
  body: Buffer;
  trailers: Record<string, string>;
  rstCode?: number;
}

/** A gRPC envelope: flag byte, 4-byte length, bytes. */
export function envelope(bytes: Uint8Array, flags = 0, length = bytes.length): Buffer {
  const b = Buffer.alloc(5 + bytes.length);
  b[0] = flags;
  b.writeUInt32BE(length, 1);
  b.set(bytes, 5);
  return b;
}

/** The first message of a gRPC response body, decompressed when its flag says so. */
export function firstMessage(body: Buffer, encoding?: string): Buffer | undefined {
  if (body.length < 5) return undefined;
  const m = body.subarray(5, 5 + body.readUInt32BE(1));
  if (body[0] !== 1) return m;
  return encoding === "br" ? brotliDecompressSync(m) : gunzipSync(m);
}

function plain(h: http2.IncomingHttpHeaders): Record<string, string> {
  const o: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (k !== "date" && v !== undefined) o[k] = String(v);
  return o;
}

/**
 * Sends one request over a fresh h2c connection, its body as the given
 * chunks (each its own DATA frame), and collects the answer.
 */
export async function rawCall(port: number, headers: http2.OutgoingHttpHeaders, chunks: Buffer[]): Promise<RawAnswer> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<RawAnswer>((resolve, reject) => {
      session.on("error", reject);
      const req = session.request({ ":method": "POST", ...headers });
      let answer: Record<string, string> = {};
      let trailers: Record<string, string> = {};
      const body: Buffer[] = [];
      req.on("response", (h) => (answer = plain(h)));
      req.on("trailers", (t) => (trailers = plain(t)));
      req.on("data", (c: Buffer) => body.push(c));
      req.on("close", () => resolve({ headers: answer, body: Buffer.concat(body), trailers, rstCode: req.rstCode || undefined }));
      req.on("error", () => {});
      for (const c of chunks) req.write(c);
      req.end();
    });
  } finally {
    session.close();
  }
}
