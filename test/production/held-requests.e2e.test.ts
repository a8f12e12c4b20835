import { create, fromBinary, fromJson, toBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { createDispatcher, type Handler } from "../../src/core/index.js";
import { scanSubmitJson } from "../../src/server/edge/json-scan.js";
import { startServer, type DispatcherServer } from "../../src/server/index.js";
import { heldBytes } from "../../src/server/payload-budget.js";
import { connectClient, type Protocol } from "../helpers/clients.js";
import { gate } from "../helpers/gate.js";
import { gc } from "../helpers/gc.js";
import { envelope, rawCall } from "../server/raw-h2.js";

/**
 * Calls in progress hold their decoded requests, queued behind a slow backend
 * for as long as it takes; `max_held_request_bytes` bounds what they hold
 * together, server-wide.
 */

const objects = (n: number): JsonValue => Array.from({ length: n }, (_, i) => ({ [`k${i}`]: "vvvv" }));

let server: DispatcherServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(maxHeldRequestBytes: number) {
  const g = gate();
  server = await startServer({
    dispatcher: createDispatcher({ backends: [{ name: "slow", handler: g.handler, workers: 1, maxConcurrency: 1, queueCapacity: 1_000 }] }),
    limits: { maxHeldRequestBytes },
  });
  return { g, port: server.port };
}

describe("the decoded requests of calls in progress, server-wide", () => {
  // A bound, so it may err high (stricter) but not much low; nulls and empty objects, the cheapest values, come out ~2.1–2.4×.
  it("estimates what a decoded JSON request holds within 0.75–3× of the heap it takes", () => {
    const shapes: JsonValue[] = [
      objects(50_000),
      Array.from({ length: 100_000 }, () => null),
      Array.from({ length: 100_000 }, (_, i) => `s${i}`),
      Object.fromEntries(Array.from({ length: 99_999 }, (_, i) => [`k${i}`, null])),
      Array.from({ length: 99_999 }, () => []),
      Array.from({ length: 99_999 }, () => ({})),
      Array.from({ length: 99_999 }, (_, i) => i + 0.5),
      Array.from({ length: 100_000 }, (_, i) => `漢字テキストの長い文字列です${i}`),
    ];
    for (const json of shapes) {
      const wire = toBinary(ValueSchema, fromJson(ValueSchema, json));
      const held: unknown[] = [];
      gc();
      const before = process.memoryUsage().heapUsed;
      // What a call holds: the decoded Value and its JSON form.
      for (let i = 0; i < 3; i++) {
        const v = fromBinary(ValueSchema, wire);
        held.push(v, toJson(ValueSchema, v));
      }
      gc();
      const measured = (process.memoryUsage().heapUsed - before) / 3;
      const estimate = heldBytes({ json: json }, {});
      console.log(`decoded JSON request: estimated ${estimate} bytes, measured ${Math.round(measured)} (${(estimate / measured).toFixed(2)}×)`);
      expect(held.length).toBe(6);
      expect(estimate / measured).toBeGreaterThan(0.75);
      expect(estimate / measured).toBeLessThan(3);
      // The scan of the wire bytes before decode estimates the same, strings by their UTF-8 bytes (up to 1.5× for CJK).
      const scanned = scanSubmitJson(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "b", payload: { case: "json", value: fromJson(ValueSchema, json) } })), 1e6, 100);
      expect(scanned / estimate).toBeGreaterThan(0.95);
      expect(scanned / estimate).toBeLessThan(1.6);
    }
  });

  it("refuses a gRPC request that would go over before decoding it", async () => {
    const payload = objects(700);
    const weight = heldBytes({ json: payload }, {});
    const { g, port } = await start(weight + weight / 2);
    const message = toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "slow", payload: { case: "json", value: fromJson(ValueSchema, payload) } }));
    // The same request with a field the decoder refuses (wire type 7) after its payload.
    const broken = envelope(Buffer.concat([message, Buffer.from([0x0f])]));
    const headers = { ":path": "/dispatcher.v1.DispatcherService/Submit", "content-type": "application/grpc", te: "trailers" };
    // While there is room, the decoder sees it and refuses it.
    const decoded = await rawCall(port, headers, [broken]);
    expect(decoded.trailers["grpc-status"]).not.toBe(String(Code.ResourceExhausted));
    expect(decoded.trailers["grpc-status"]).not.toBe("0");
    const holding = connectClient(port, "grpc").submit({ backend: "slow", payload: { case: "json", value: fromJson(ValueSchema, payload) } });
    await expect.poll(() => g.calls.length).toBe(1);
    // With no room left, it is refused from its wire bytes: the decoder never sees it.
    const refused = await rawCall(port, headers, [broken]);
    expect(refused.trailers["grpc-status"]).toBe(String(Code.ResourceExhausted));
    expect(decodeURIComponent(String(refused.trailers["grpc-message"]))).toContain("max_held_request_bytes");
    g.running()[0]!.resolve();
    await holding;
  });

  for (const protocol of ["grpc", "connect"] as Protocol[]) {
    it(`refuses with RESOURCE_EXHAUSTED the call that would go over, and takes calls again as others end (${protocol})`, async () => {
      const payload = objects(700);
      const weight = heldBytes({ json: payload }, {});
      const fit = 3;
      const { g, port } = await start(weight * fit + weight / 2);
      const client = connectClient(port, protocol);
      const submit = () => client.submit({ backend: "slow", payload: { case: "json", value: fromJson(ValueSchema, payload) } });
      // One running, two queued: all three hold their requests.
      const held = Array.from({ length: fit }, submit);
      await expect.poll(() => g.calls.length).toBe(1);
      const refused = await submit().catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(ConnectError);
      expect((refused as ConnectError).code).toBe(Code.ResourceExhausted);
      expect((refused as ConnectError).rawMessage).toContain("max_held_request_bytes");
      // A small call still fits in what is left.
      const small = client.submit({ backend: "slow" });
      await expect.poll(() => g.calls.length).toBe(1);
      // SubmitStream holds its request the same way.
      const stream = client.submitStream({ backend: "slow", payload: { case: "json", value: fromJson(ValueSchema, payload) } });
      await expect(async () => {
        for await (const _ of stream) void _;
      }).rejects.toMatchObject({ code: Code.ResourceExhausted });
      // The backend answers: every held call gets its answer and gives its bytes back.
      while (g.running().length > 0 || g.calls.length < fit + 1) {
        for (const c of g.running()) c.resolve();
        await new Promise((r) => setTimeout(r, 5));
      }
      for (const r of await Promise.all(held)) expect(r.workerId).toBe("slow/0");
      await small;
      const again = Array.from({ length: fit }, submit);
      await expect.poll(() => g.calls.length).toBe(fit + 2);
      while (g.running().length > 0 || g.calls.length < 2 * fit + 1) {
        for (const c of g.running()) c.resolve();
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(await Promise.all(again)).toHaveLength(fit);
    });
  }

  it("gives back a stream's bytes when its client stops reading and then goes away (HTTP/1.1)", async () => {
    // A backend pouring 16 KiB chunks: the client's socket fills, connect's writer waits for a drain that never comes.
    const pour: Handler = async function* (_request, ctx) {
      while (!ctx.signal.aborted) yield { text: "x".repeat(16 * 1024) };
    };
    server = await startServer({ dispatcher: createDispatcher({ backends: [{ name: "pour", handler: pour, workers: 1, maxConcurrency: 8 }] }) });
    const message = toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "pour", payload: { case: "json", value: fromJson(ValueSchema, objects(100)) } }));
    const body = envelope(message);
    for (let i = 0; i < 3; i++) {
      const socket = net.connect(server.port, "127.0.0.1");
      socket.on("error", () => {});
      socket.write(
        `POST /dispatcher.v1.DispatcherService/SubmitStream HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+proto\r\n` +
          `Connect-Protocol-Version: 1\r\nContent-Length: ${body.length}\r\n\r\n`,
      );
      socket.write(body);
      socket.pause();
      await expect.poll(() => server!.requestBytes().held).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 300));
      socket.destroy();
      await expect.poll(() => server!.requestBytes().held).toBe(0);
    }
  });

  it("keeps no unknown fields: 2 million of them in a queued request's payload hold nothing", async () => {
    const { g, port } = await start(256 * 1024 * 1024);
    const varint = (n: number) => {
      const out: number[] = [];
      for (; n > 127; n >>>= 7) out.push((n & 127) | 128);
      return Buffer.from([...out, n]);
    };
    const field = (no: number, bytes: Buffer) => Buffer.concat([varint((no << 3) | 2), varint(bytes.length), bytes]);
    // json = Value { null_value: 0, then field 15 = 0, two bytes each, 2 million times }.
    const unknown = Buffer.alloc(4_000_000);
    for (let i = 0; i < unknown.length; i += 2) unknown[i] = 15 << 3;
    const message = Buffer.concat([field(1, Buffer.from("slow")), field(3, Buffer.concat([Buffer.from([0x08, 0x00]), unknown]))]);
    const headers = { ":path": "/dispatcher.v1.DispatcherService/Submit", "content-type": "application/grpc", te: "trailers" };
    gc();
    const before = process.memoryUsage().heapUsed;
    const calls = [0, 1, 2].map(() => rawCall(port, headers, [envelope(message)]));
    await expect.poll(() => g.calls.length, { timeout: 20_000 }).toBe(1);
    await expect.poll(() => server!.requestBytes().held, { timeout: 20_000 }).toBeGreaterThan(0);
    // One running, two queued, each kept whole (as protobuf-es keeps unknown fields, ~300 MB each): hundreds of MB.
    await new Promise((r) => setTimeout(r, 500));
    gc();
    const grownMb = (process.memoryUsage().heapUsed - before) / 2 ** 20;
    expect(grownMb).toBeLessThan(64);
    while (g.running().length > 0 || g.calls.length < 3) {
      for (const c of g.running()) c.resolve({ json: null });
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const a of await Promise.all(calls)) expect(a.trailers["grpc-status"]).toBe("0");
  });

  it("gives back the bytes of a call its client cancels, and of one the queue refuses", async () => {
    const payload = objects(700);
    const weight = heldBytes({ json: payload }, {});
    const { g, port } = await start(weight + weight / 2);
    const client = connectClient(port, "grpc");
    const value = fromJson(ValueSchema, payload);
    const cancelled = new AbortController();
    const first = client.submit({ backend: "slow", payload: { case: "json", value } }, { signal: cancelled.signal }).catch((e: unknown) => e);
    await expect.poll(() => g.calls.length).toBe(1);
    await expect(client.submit({ backend: "slow", payload: { case: "json", value } })).rejects.toMatchObject({ code: Code.ResourceExhausted });
    cancelled.abort();
    expect(await first).toMatchObject({ code: Code.Canceled });
    // The server learns of the cancel a moment after the client: then the call's bytes are free again.
    // An unknown backend is refused by the core after the bytes were taken: they come back too.
    const unknown = async () => ((await client.submit({ backend: "none", payload: { case: "json", value } }).catch((e: unknown) => e)) as ConnectError).code;
    await expect.poll(unknown).toBe(Code.NotFound);
    expect(await unknown()).toBe(Code.NotFound);
    const next = client.submit({ backend: "slow", payload: { case: "json", value } });
    await expect.poll(() => g.running().length).toBe(1);
    g.running()[0]!.resolve();
    expect((await next).workerId).toBe("slow/0");
  });
});
