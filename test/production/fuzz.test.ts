import * as http2 from "node:http2";
import * as net from "node:net";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";
import { seededRandom as prng } from "../helpers/manual-clock.js";

const SEED = 20260501;
const ROUNDS = 150;
const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";

let app: App;
let session: http2.ClientHttp2Session;
beforeAll(async () => {
  app = await startTestApp({
    backends: [{ name: "echo", kind: "echo", workers: 2 }],
    server: { limits: { max_request_bytes: 64 * 1024 } },
  });
  session = http2.connect(`http://127.0.0.1:${app.server.port}`);
  session.on("error", () => undefined);
});
afterAll(async () => {
  session.close();
  await app.close();
});

interface Answer {
  status: number;
  grpcStatus: string | undefined;
  body: string;
}

/** One raw HTTP/2 request; resolves with the answer or rejects on a reset. Never waits more than 5 s. */
function send(path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": path, ...headers });
    const timer = setTimeout(() => reject(new Error("no answer within 5 s")), 5_000);
    let status = 0;
    let grpcStatus: string | undefined;
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      status = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
    });
    req.on("trailers", (t) => {
      if (t["grpc-status"] !== undefined) grpcStatus = String(t["grpc-status"]);
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      clearTimeout(timer);
      resolve({ status, grpcStatus, body: Buffer.concat(chunks).toString("latin1") });
    });
    req.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(body);
  });
}

function bytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

function frame(payload: Uint8Array, declared = payload.length, flags = 0): Uint8Array {
  const f = new Uint8Array(5 + payload.length);
  f[0] = flags;
  new DataView(f.buffer).setUint32(1, declared >>> 0);
  f.set(payload, 5);
  return f;
}

function randomJson(rand: () => number, depth = 0): unknown {
  const r = rand();
  if (depth > 3 || r < 0.2) return Math.floor(rand() * 1e6) - 5e5;
  if (r < 0.35) return String.fromCharCode(...Array.from({ length: Math.floor(rand() * 20) }, () => Math.floor(rand() * 0xd7ff)));
  if (r < 0.45) return rand() < 0.5 ? null : rand() < 0.5;
  if (r < 0.7) return Array.from({ length: Math.floor(rand() * 4) }, () => randomJson(rand, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = 0; i < Math.floor(rand() * 4); i++) o[["backend", "json", "binary", "metadata", "sessionId", "x"][Math.floor(rand() * 6)]!] = randomJson(rand, depth + 1);
  return o;
}

const grpcCodes = new Set(Array.from({ length: 17 }, (_, i) => String(i)));

describe(`fuzz (seed ${SEED})`, () => {
  it("answers garbage gRPC frames with a gRPC status and never crashes", async () => {
    const rand = prng(SEED);
    for (let i = 0; i < ROUNDS; i++) {
      const payload = bytes(rand, Math.floor(rand() * 300));
      const kind = i % 4;
      const body =
        kind === 0 ? frame(payload) // random message bytes
        : kind === 1 ? frame(payload).subarray(0, Math.floor(rand() * (payload.length + 5))) // truncated frame
        : kind === 2 ? frame(payload, 0xffffffff) // huge declared length
        : payload; // no framing at all
      const a = await send(SUBMIT, { "content-type": rand() < 0.8 ? "application/grpc" : "application/grpc+proto", te: "trailers" }, body);
      expect(a.status, `round ${i}`).toBe(200);
      expect(grpcCodes.has(a.grpcStatus ?? ""), `round ${i}: grpc-status ${a.grpcStatus}`).toBe(true);
      if (kind === 2) expect(a.grpcStatus).toBe(String(Code.ResourceExhausted));
    }
  });

  it("answers garbage Connect bodies and random JSON with Connect errors", async () => {
    const rand = prng(SEED + 1);
    for (let i = 0; i < ROUNDS; i++) {
      const json = i % 2 === 0;
      const body = json
        ? Buffer.from(rand() < 0.8 ? JSON.stringify(randomJson(rand)) : JSON.stringify({ backend: "echo", json: randomJson(rand), metadata: randomJson(rand) }))
        : bytes(rand, Math.floor(rand() * 300));
      const a = await send(SUBMIT, { "content-type": json ? "application/json" : "application/proto", "connect-protocol-version": "1" }, body);
      expect([200, 400, 404, 408, 413, 429, 500, 503], `round ${i}: HTTP ${a.status}`).toContain(a.status);
      if (a.status !== 200) expect(() => JSON.parse(a.body) as unknown, `round ${i}`).not.toThrow();
    }
  });

  it("answers wrong content types and paths with HTTP errors", async () => {
    const rand = prng(SEED + 2);
    for (const ct of ["text/plain", "application/xml", "application/grpc-web-text+bogus", "", "multipart/form-data"]) {
      const a = await send(SUBMIT, ct === "" ? {} : { "content-type": ct }, bytes(rand, 40));
      expect(a.status).toBeGreaterThanOrEqual(400);
    }
    const a = await send("/no.Such/Method", { "content-type": "application/grpc" }, frame(new Uint8Array()));
    expect(a.grpcStatus ?? String(a.status)).toMatch(/^(12|404)$/);
  });

  it("survives random bytes and a bare h2c preface on the raw port", async () => {
    const rand = prng(SEED + 3);
    for (let i = 0; i < 30; i++) {
      const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      const head = i % 3 === 0 ? preface.subarray(0, Math.floor(rand() * preface.length)) : i % 3 === 1 ? preface : Buffer.alloc(0);
      const junk = Buffer.concat([head, Buffer.from(bytes(rand, 1 + Math.floor(rand() * 200)))]);
      await new Promise<void>((resolve) => {
        const socket = net.connect(app.server.port, "127.0.0.1", () => socket.end(junk));
        socket.on("data", () => undefined);
        socket.on("error", () => resolve());
        socket.on("close", () => resolve());
        socket.setTimeout(3_000, () => socket.destroy());
      });
    }
  });

  it("still serves a valid request afterwards", async () => {
    const r = await connectClient(app.server.port, "grpc").submit({ backend: "echo", payload: { case: "binary", value: new Uint8Array([1]) } });
    expect(r.workerId).toMatch(/^echo\//);
    const snapshot = app.dispatcher.snapshot();
    expect(snapshot.every((w) => w.inflight === 0 && w.queued === 0)).toBe(true);
  });
});
