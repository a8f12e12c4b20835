import * as http from "node:http";
import * as http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { echoHandler } from "../../src/backends/echo.js";
import { createDispatcher } from "../../src/core/index.js";
import { decodeBase64Stream } from "../../src/server/grpc-web-text.js";
import { startServer, type DispatcherServer, type Limits } from "../../src/server/index.js";
import { connectClient } from "../helpers/clients.js";
import { gc } from "../helpers/gc.js";
import { envelope, rawCall } from "../server/raw-h2.js";
import { nullListSubmit, varint } from "../../bench/lib/null-list.js";

const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";
const grpcHeaders = { ":path": SUBMIT, "content-type": "application/grpc", te: "trailers" };
const servers: DispatcherServer[] = [];
afterAll(() => Promise.all(servers.map((s) => s.close())));

async function start(limits: Partial<Limits> = {}, authTokens?: string[], delayMs = 0): Promise<DispatcherServer> {
  const s = await startServer({
    dispatcher: createDispatcher({ backends: [{ name: "echo", handler: echoHandler({ delayMs }), workers: 2, maxConcurrency: 64, queueCapacity: 256 }] }),
    limits,
    authTokens,
  });
  servers.push(s);
  return s;
}




async function served(s: DispatcherServer): Promise<void> {
  expect((await connectClient(s.port, "grpc").submit({ backend: "echo" })).workerId).toMatch(/^echo\//);
}

describe("bounded cost per byte", () => {
  it("answers 16 concurrent 4 MiB lists of a million nulls without decoding them; RSS grows ≤ 200 MB", { timeout: 120_000 }, async () => {
    const s = await start();
    const body = envelope(nullListSubmit(Math.floor((4 * 1024 * 1024 - 64) / 4)));
    expect(body.length).toBeLessThanOrEqual(4 * 1024 * 1024 + 5);
    await gc();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const calls = Array.from({ length: 16 }, () => rawCall(s.port, grpcHeaders, [body]));
      await served(s);
      const answers = await Promise.all(calls);
      for (const a of answers) {
        expect(a.trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
        expect(a.trailers["grpc-message"]).toContain("json: more than 100000 values");
      }
    } finally {
      clearInterval(sample);
    }
    // The payload bodies themselves (16 × 4 MiB) are held by the test's own client in this process too.
    expect((peak - before) / 2 ** 20).toBeLessThanOrEqual(200);
  });

  it("refuses JSON nested too deep, before decode, on the Connect protocol too", async () => {
    const s = await start({ maxJsonDepth: 10 });
    const deep = `{"backend":"echo","json":${"[".repeat(50)}${"]".repeat(50)}}`;
    const a = await rawCall(s.port, { ":path": SUBMIT, "content-type": "application/json", "connect-protocol-version": "1" }, [Buffer.from(deep)]);
    expect(a.headers[":status"]).toBe("400");
    expect(a.body.toString()).toContain("nested deeper than 10 levels");
    await served(s);
  });

  it("refuses an unauthenticated client before decoding its payload", async () => {
    const s = await start({}, ["the-token"]);
    const a = await rawCall(s.port, grpcHeaders, [envelope(nullListSubmit(500_000))]);
    // UNAUTHENTICATED, not the payload's INVALID_ARGUMENT: nothing was decoded or scanned.
    expect(a.trailers["grpc-status"]).toBe(String(Code.Unauthenticated));
    const ok = await connectClient(s.port, "grpc").submit({ backend: "echo" }, { headers: { authorization: "Bearer the-token" } });
    expect(ok.workerId).toMatch(/^echo\//);
  });
});

/** One HTTP/1.1 request to the server's port (the protocol sniffer hands it to the HTTP/1.1 server). */
function h1Call(port: number, headers: Record<string, string>, body: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: SUBMIT, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString("latin1") }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const MILLION_NULLS = Math.floor((4 * 1024 * 1024 - 64) / 4);
const LIMIT_MESSAGE = "json: more than 100000 values";

describe("the payload is checked before decode in every protocol and encoding", () => {
  it("16 concurrent gzip-compressed 4 MiB lists of a million nulls (4 KiB each on the wire): all refused, RSS grows ≤ 200 MB", { timeout: 120_000 }, async () => {
    const s = await start();
    const body = envelope(gzipSync(nullListSubmit(MILLION_NULLS)), 1);
    expect(body.length).toBeLessThan(16 * 1024);
    await gc();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const calls = Array.from({ length: 16 }, () => rawCall(s.port, { ...grpcHeaders, "grpc-encoding": "gzip" }, [body]));
      await served(s);
      for (const a of await Promise.all(calls)) {
        expect(a.trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
        expect(decodeURIComponent(a.trailers["grpc-message"] ?? "")).toContain(LIMIT_MESSAGE);
      }
    } finally {
      clearInterval(sample);
    }
    // Each is decompressed (to 4 MiB, read_max_bytes) to be checked, never decoded: unchecked, this took +2.6 GB.
    expect((peak - before) / 2 ** 20).toBeLessThanOrEqual(200);
  });

  it("on SubmitStream and Enqueue too", async () => {
    const s = await start();
    const stream = await rawCall(s.port, { ...grpcHeaders, ":path": "/dispatcher.v1.DispatcherService/SubmitStream" }, [envelope(nullListSubmit(200_000))]);
    expect(stream.trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(decodeURIComponent(stream.trailers["grpc-message"] ?? "")).toContain(LIMIT_MESSAGE);
    // EnqueueRequest { SubmitRequest request = 1 }: refused before decode, whether or not background jobs are on.
    const inner = nullListSubmit(200_000);
    const enqueue = Buffer.concat([Buffer.from([0x0a]), varint(inner.length), inner]);
    const e = await rawCall(s.port, { ...grpcHeaders, ":path": "/dispatcher.v1.DispatcherService/Enqueue" }, [envelope(enqueue)]);
    expect(e.trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(decodeURIComponent(e.trailers["grpc-message"] ?? "")).toContain(LIMIT_MESSAGE);
    // The Connect protocol's streaming JSON: the error in its end-of-stream message.
    const json = Buffer.from(`{"backend":"echo","json":[${Array(200_000).fill("null").join(",")}]}`);
    const c = await rawCall(s.port, { ":path": "/dispatcher.v1.DispatcherService/SubmitStream", "content-type": "application/connect+json", "connect-protocol-version": "1" }, [envelope(json)]);
    expect(c.body.toString()).toContain(LIMIT_MESSAGE);
    await served(s);
  });

  it("as connect reads the body: whatever the envelope's flags, one message per call, repeated fields counted together", async () => {
    const s = await start();
    const grpcFlag = (flags: number) => rawCall(s.port, { ...grpcHeaders, "grpc-encoding": "gzip" }, [envelope(gzipSync(nullListSubmit(200_000)), flags)]);
    // gRPC parses every envelope, whatever its other flag bits; 0x01 says compressed.
    for (const flags of [0x03, 0x81]) {
      const a = await grpcFlag(flags);
      expect(a.trailers["grpc-status"], `flags ${flags}`).toBe(String(Code.InvalidArgument));
    }
    // gRPC-Web skips a trailers envelope (0x80) and parses the next; a padding envelope cannot make the body too big to check.
    const web = { ":path": SUBMIT, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
    const skipped = await rawCall(s.port, web, [envelope(Buffer.alloc(16), 0x80), envelope(nullListSubmit(200_000), 0x02)]);
    expect(decodeURIComponent(skipped.body.toString("latin1"))).toContain(LIMIT_MESSAGE);
    const padded = await rawCall(s.port, web, [envelope(Buffer.alloc(2 * 1024 * 1024), 0x80), envelope(nullListSubmit(200_000))]);
    expect(decodeURIComponent(padded.body.toString("latin1"))).toContain(LIMIT_MESSAGE);
    const overBound = await rawCall(s.port, web, [envelope(Buffer.alloc(3_600_000), 0x80), envelope(nullListSubmit(200_000))]);
    expect(decodeURIComponent(overBound.body.toString("latin1"))).toMatch(/request body over \d+ bytes/);
    // Enqueue: field 1 three times is one SubmitRequest to the decoder, its lists joined (3 × 40,000 nulls).
    const inner = nullListSubmit(40_000);
    const occurrence = Buffer.concat([Buffer.from([0x0a]), varint(inner.length), inner]);
    const e = await rawCall(s.port, { ...grpcHeaders, ":path": "/dispatcher.v1.DispatcherService/Enqueue" }, [envelope(Buffer.concat([occurrence, occurrence, occurrence]))]);
    expect(decodeURIComponent(e.trailers["grpc-message"] ?? "")).toContain(LIMIT_MESSAGE);
    await served(s);
  });

  it("over HTTP/1.1: Connect JSON gzip-compressed, Connect binary, gRPC-Web, gRPC-Web text in padded segments", async () => {
    const s = await start();
    const json = gzipSync(Buffer.from(`{"backend":"echo","json":[${Array(200_000).fill("null").join(",")}]}`));
    const a = await h1Call(s.port, { "content-type": "application/json", "content-encoding": "gzip", "connect-protocol-version": "1" }, json);
    expect(a.status).toBe(400);
    expect(a.body).toContain(LIMIT_MESSAGE);
    const b = await h1Call(s.port, { "content-type": "application/proto", "connect-protocol-version": "1" }, nullListSubmit(200_000));
    expect(b.status).toBe(400);
    expect(b.body).toContain(LIMIT_MESSAGE);
    const w = await h1Call(s.port, { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }, envelope(nullListSubmit(200_000)));
    expect(w.status).toBe(200);
    expect(decodeURIComponent(w.body)).toContain(LIMIT_MESSAGE);
    // gRPC-Web text, the envelope's header in a padded base64 segment of its own (Node's decoder stops at "=").
    const m = nullListSubmit(200_000);
    const segments = envelope(m).subarray(0, 5).toString("base64") + m.toString("base64");
    const t = await h1Call(s.port, { "content-type": "application/grpc-web-text", "x-grpc-web": "1" }, Buffer.from(segments, "latin1"));
    expect(t.status).toBe(200);
    const answer: Uint8Array[] = [];
    for await (const b of decodeBase64Stream((async function* () { yield Buffer.from(t.body, "latin1"); })())) answer.push(b);
    expect(decodeURIComponent(Buffer.concat(answer).toString("latin1"))).toContain(LIMIT_MESSAGE);
    // What is within the limits is served on each of them.
    const ok = await h1Call(s.port, { "content-type": "application/json", "content-encoding": "gzip", "connect-protocol-version": "1" }, gzipSync('{"backend":"echo","json":[1,2,3]}'));
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).json).toEqual([1, 2, 3]);
    await served(s);
  });
});

describe("shed before work", () => {
  it("refuses calls over the in-flight limit before reading their body", async () => {
    const s = await start({ maxInflightCalls: 4 }, undefined, 300);
    const client = connectClient(s.port, "grpc");
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () => client.submit({ backend: "echo" }).then(() => "OK", (e: { code?: Code; rawMessage?: string }) => `${e.code}: ${e.rawMessage}`)),
    );
    expect(outcomes.filter((o) => o === "OK").length).toBeGreaterThan(0);
    const refused = outcomes.filter((o) => o !== "OK");
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r).toMatch(new RegExp(`^${Code.ResourceExhausted}: server busy: \\d+ calls in progress`));
  });

  it("refuses request bytes over the server's decode budget; calls within it are served", async () => {
    const s = await start({ maxDecodingBytes: 100 * 1024 });
    const session = http2.connect(`http://127.0.0.1:${s.port}`);
    session.on("error", () => {});
    const payload = toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: new Uint8Array(60 * 1024) } }));
    const statuses = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<string | undefined>((resolve) => {
            const req = session.request({ ":method": "POST", ...grpcHeaders });
            req.on("error", () => {});
            req.on("trailers", (t) => resolve(String(t["grpc-status"])));
            req.on("close", () => resolve(undefined));
            // Never ended: the bytes stay held until the budget refuses one of them.
            req.write(envelope(payload));
            req.resume();
            setTimeout(() => req.close(), 3_000);
          }),
      ),
    );
    expect(statuses).toContain(String(Code.ResourceExhausted));
    session.destroy();
    await served(s);
  });

  it("counts a compressed request's decompressed message in the decode budget, on HTTP/2 and HTTP/1.1", async () => {
    const s = await start({ maxDecodingBytes: 1024 * 1024 });
    const message = (bytes: number) =>
      gzipSync(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: new Uint8Array(bytes) } })));
    const grpc = (bytes: number) => rawCall(s.port, { ...grpcHeaders, "grpc-encoding": "gzip" }, [envelope(message(bytes), 1)]);
    // A few KiB on the wire, 2 MiB once decompressed: more than the whole budget.
    const big = await grpc(2 * 1024 * 1024);
    expect(big.trailers["grpc-status"]).toBe(String(Code.ResourceExhausted));
    expect(decodeURIComponent(String(big.trailers["grpc-message"]))).toContain("server busy");
    expect((await grpc(256 * 1024)).trailers["grpc-status"]).toBe("0");
    const h1 = (bytes: number) =>
      h1Call(s.port, { "content-type": "application/proto", "content-encoding": "gzip", "connect-protocol-version": "1" }, message(bytes));
    expect((await h1(2 * 1024 * 1024)).status).toBe(429);
    expect((await h1(256 * 1024)).status).toBe(200);
    // Every byte given back: a call nearly as large as the whole budget (with its wire bytes) still fits.
    expect((await grpc(1024 * 1024 - 16 * 1024)).trailers["grpc-status"]).toBe("0");
    await served(s);
  });

  it("over HTTP/1.1 too: bytes count as they arrive, and a body that does not fit is refused", async () => {
    const s = await start({ maxDecodingBytes: 100 * 1024 });
    const body = Buffer.from(JSON.stringify({ backend: "echo", json: "x".repeat(60 * 1024) }));
    const headers = { "content-type": "application/json", "connect-protocol-version": "1", "content-length": String(body.length) };
    // Two bodies of 60 KiB, both sent but for their last KiB: the second does not fit beside the first.
    const open = (): Promise<{ status: number; body: string }> =>
      new Promise((resolve) => {
        const req = http.request({ host: "127.0.0.1", port: s.port, method: "POST", path: SUBMIT, headers }, (res) => {
          const parts: Buffer[] = [];
          res.on("data", (c: Buffer) => parts.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
        });
        req.on("error", () => resolve({ status: 0, body: "" }));
        req.write(body.subarray(0, body.length - 1024));
        setTimeout(() => req.end(body.subarray(body.length - 1024)), 1_000);
      });
    // A length declared but not sent holds nothing: only bytes that arrived count.
    const declared = http.request({ host: "127.0.0.1", port: s.port, method: "POST", path: SUBMIT, headers: { ...headers, "content-length": String(95 * 1024) } });
    declared.on("error", () => {});
    declared.write("{");
    const first = open();
    await new Promise((r) => setTimeout(r, 300));
    const second = await open();
    expect(second.status).toBe(429);
    expect(second.body).toContain("server busy");
    // The first, finished, is served; its bytes are given back, and the next fits.
    expect((await first).status).toBe(200);
    const third = await h1Call(s.port, { "content-type": "application/json", "connect-protocol-version": "1" }, body);
    expect(third.status).toBe(200);
    declared.destroy();
    await served(s);
  });
});
