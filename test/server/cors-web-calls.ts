import * as http from "node:http";
import * as http2 from "node:http2";

/** What a client sees of one answer over either HTTP version: status, headers (lower-case), body, trailers (h2 only). */
export interface WebAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  trailers: Record<string, string>;
}

export interface WebRequest {
  method?: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer | string;
  /** Stop reading (and cancel) once the body read so far satisfies this. Default: read to the end. */
  until?: (body: Buffer) => boolean;
}

function plain(h: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): Record<string, string> {
  const o: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (k !== "date" && !k.startsWith(":") && v !== undefined) o[k] = Array.isArray(v) ? v.join(", ") : String(v);
  return o;
}

/** One request over HTTP/1.1 (a fresh connection). */
export function h1Call(port: number, r: WebRequest): Promise<WebAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: r.method ?? "POST", path: r.path, headers: r.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const done = () => resolve({ status: res.statusCode ?? 0, headers: plain(res.headers), body: Buffer.concat(chunks), trailers: plain(res.trailers) });
      res.on("data", (c: Buffer) => {
        chunks.push(c);
        if (r.until?.(Buffer.concat(chunks)) === true) {
          done();
          req.destroy();
        }
      });
      res.on("end", done);
      res.on("error", () => {});
    });
    req.on("error", reject);
    req.end(r.body);
  });
}

/** One request over h2c (a fresh session). */
export async function h2Call(port: number, r: WebRequest): Promise<WebAnswer> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<WebAnswer>((resolve, reject) => {
      session.on("error", reject);
      const req = session.request({ ":method": r.method ?? "POST", ":path": r.path, ...r.headers });
      let status = 0;
      let headers: Record<string, string> = {};
      let trailers: Record<string, string> = {};
      const chunks: Buffer[] = [];
      const done = () => resolve({ status, headers, body: Buffer.concat(chunks), trailers });
      req.on("response", (h) => {
        status = Number(h[":status"]);
        headers = plain(h);
      });
      req.on("trailers", (t) => (trailers = plain(t)));
      req.on("data", (c: Buffer) => {
        chunks.push(c);
        if (r.until?.(Buffer.concat(chunks)) === true) {
          done();
          req.close(http2.constants.NGHTTP2_CANCEL);
        }
      });
      req.on("close", done);
      req.on("error", () => {});
      req.end(r.body);
    });
  } finally {
    session.close();
  }
}

export const calls = { "HTTP/1.1": h1Call, "HTTP/2": h2Call };

/** A gRPC / gRPC-Web envelope: flag byte, 4-byte length, bytes. */
export function frame(bytes: Uint8Array, flags = 0): Buffer {
  const b = Buffer.alloc(5 + bytes.length);
  b[0] = flags;
  b.writeUInt32BE(bytes.length, 1);
  b.set(bytes, 5);
  return b;
}

/** Splits a gRPC-Web body into its message frames and its trailer frame (flag 0x80), parsed. */
export function parseFrames(body: Buffer): { messages: Buffer[]; trailers: Record<string, string> | undefined; complete: boolean } {
  const messages: Buffer[] = [];
  let trailers: Record<string, string> | undefined;
  let i = 0;
  while (i + 5 <= body.length) {
    const len = body.readUInt32BE(i + 1);
    if (i + 5 + len > body.length) break;
    const bytes = body.subarray(i + 5, i + 5 + len);
    if ((body[i]! & 0x80) !== 0) {
      trailers = {};
      for (const line of bytes.toString("latin1").split("\r\n")) {
        const c = line.indexOf(":");
        if (c > 0) trailers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
      }
    } else messages.push(bytes);
    i += 5 + len;
  }
  return { messages, trailers, complete: i === body.length };
}
