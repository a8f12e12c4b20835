import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  SubmitRequestSchema,
  SubmitStreamResponseSchema,
  WorkerMetricsRequestSchema,
  type SubmitStreamResponse,
} from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { echoHandler } from "../../src/backends/echo.js";
import { createDispatcher, type Dispatcher } from "../../src/core/index.js";
import { startServer, type DispatcherServer } from "../../src/server/index.js";
import { connectClient, grpcJsClient } from "../helpers/clients.js";
import { FRONTS, envelope, rawCall, type RawAnswer } from "./raw-h2.js";

/**
 * The edge's server-streaming fast path against connect's own gRPC handler:
 * the same calls to the previous front end (compat layer +
 * connectNodeAdapter), to the edge with every call through connect, and to
 * the edge's fast path.
 */
const fronts = FRONTS;
const servers: { server: DispatcherServer; dispatcher: Dispatcher }[] = [];
const TOKEN = "s3cret-token";

async function startOne(f: (typeof fronts)[number], auth = false) {
  const dispatcher = createDispatcher({ backends: [{ name: "echo", handler: echoHandler(), workers: 1 }] });
  const server = await startServer({ dispatcher, frontEnd: f.frontEnd, fastPath: f.fastPath, authTokens: auth ? [TOKEN] : undefined });
  return { server, dispatcher };
}

beforeAll(async () => {
  for (const f of fronts) servers.push(await startOne(f));
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.server.close()));
});

const SUBMIT_STREAM = "/dispatcher.v1.DispatcherService/SubmitStream";
const METRICS = "/dispatcher.v1.DispatcherService/WorkerMetrics";
const headers = (path = SUBMIT_STREAM, extra: Record<string, string> = {}) => ({ ":path": path, "content-type": "application/grpc", te: "trailers", ...extra });
const request = (fields: Parameters<typeof create<typeof SubmitRequestSchema>>[1]) => envelope(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, fields)));

/** Each message of a SubmitStream answer as [flag, bytes without timings]. */
function messages(a: RawAnswer): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  for (let at = 0; at + 5 <= a.body.length; ) {
    const len = a.body.readUInt32BE(at + 1);
    const flag = a.body[at]!;
    let m = a.body.subarray(at + 5, at + 5 + len);
    if (flag === 1) m = a.headers["grpc-encoding"] === "br" ? brotliDecompressSync(m) : gunzipSync(m);
    const r = fromBinary(SubmitStreamResponseSchema, m);
    if (r.event.case === "started") r.event.value.queueWait = undefined;
    if (r.event.case === "done") {
      r.event.value.execution = undefined;
      r.event.value.timeToFirstChunk = undefined;
    }
    out.push([flag, Buffer.from(toBinary(SubmitStreamResponseSchema, r))]);
    at += 5 + len;
  }
  return out;
}

async function expectSame(h: Record<string, string>, body: Buffer[]): Promise<RawAnswer> {
  const answers: RawAnswer[] = [];
  for (const s of servers) answers.push(await rawCall(s.server.port, h, body));
  const shape = (a: RawAnswer) => ({ headers: a.headers, messages: messages(a), trailers: a.trailers, rst: a.rstCode });
  for (const [i, a] of answers.entries()) expect(shape(a), fronts[i]!.name).toEqual(shape(answers[0]!));
  return answers[2]!;
}

describe("server-streaming fast path conformance over raw HTTP/2 frames", () => {
  it("OK: headers, Started, chunks, Done, trailers", async () => {
    const a = await expectSame(headers(), [request({ backend: "echo", payload: { case: "binary", value: new Uint8Array(30).fill(3) }, metadata: { stream_chunks: "3" } })]);
    expect(messages(a).map(([, m]) => fromBinary(SubmitStreamResponseSchema, m).event.case)).toEqual(["started", "chunk", "chunk", "chunk", "done"]);
    expect(a.trailers["grpc-status"]).toBe("0");
  });

  it("compressed messages (grpc-accept-encoding), each over connect's threshold compressed on its own", async () => {
    const payload = { case: "binary" as const, value: new Uint8Array(6000).fill(7) };
    const a = await expectSame(headers(SUBMIT_STREAM, { "grpc-accept-encoding": "gzip" }), [request({ backend: "echo", payload, metadata: { stream_chunks: "2" } })]);
    expect(messages(a).map(([flag]) => flag)).toEqual([0, 1, 1, 0]);
    await expectSame(headers(SUBMIT_STREAM, { "grpc-accept-encoding": "br" }), [request({ backend: "echo", payload, metadata: { stream_chunks: "2" } })]);
  });

  it("errors before any message (headers, then trailers) and after some (messages, then the status)", async () => {
    const before = await expectSame(headers(), [request({ backend: "nope" })]);
    expect(before.body.length).toBe(0);
    expect(before.trailers["grpc-status"]).toBe(String(Code.NotFound));
    await expectSame(headers(), [request({ backend: "" })]);
    const after = await expectSame(headers(), [request({ backend: "echo", metadata: { stream_chunks: "2", fail: "unavailable", fail_message: "down: a, b/c 100%" } })]);
    expect(messages(after).length).toBeGreaterThan(0);
    expect(after.trailers["grpc-status"]).toBe(String(Code.Unavailable));
  });

  it("bad envelopes and messages that do not parse", async () => {
    const ok = toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo" }));
    await expectSame(headers(), [Buffer.from([0, 0, 0])]);
    await expectSame(headers(), [envelope(ok), envelope(ok)]);
    await expectSame(headers(), []);
    await expectSame(headers(), [envelope(Buffer.from([0x0a, 0xff, 0xff, 0xff]))]);
  });

  it("deadlines: SubmitStream and WorkerMetrics end with DEADLINE_EXCEEDED on every path", async () => {
    for (const s of servers) {
      const slow = await rawCall(s.server.port, headers(SUBMIT_STREAM, { "grpc-timeout": "300m" }), [
        request({ backend: "echo", metadata: { stream_chunks: "20", chunk_delay_ms: "100" } }),
      ]);
      expect(slow.trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
      const metrics = await rawCall(s.server.port, headers(METRICS, { "grpc-timeout": "300m" }), [envelope(toBinary(WorkerMetricsRequestSchema, create(WorkerMetricsRequestSchema)))]);
      expect(metrics.trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
      expect(metrics.body.length).toBeGreaterThan(5);
    }
  });

  it("auth refuses a stream the same way on every path", async () => {
    const authed = await Promise.all(fronts.map((f) => startOne(f, true)));
    try {
      const answers: RawAnswer[] = [];
      for (const s of authed) answers.push(await rawCall(s.server.port, headers(), [request({ backend: "echo" })]));
      expect(answers[1]).toEqual(answers[0]);
      expect(answers[2]).toEqual(answers[0]);
      expect(answers[0]!.trailers["grpc-status"]).toBe(String(Code.Unauthenticated));
    } finally {
      await Promise.all(authed.map((s) => s.server.close()));
    }
  });
});

function summary(m: SubmitStreamResponse): string {
  if (m.event.case === "chunk") return `chunk ${Buffer.from(m.event.value.payload.value as Uint8Array).toString()}`;
  return m.event.case ?? "?";
}

describe("server-streaming fast path through clients", () => {
  it("grpc-js and connect's gRPC client read the same events and statuses", async () => {
    const results: unknown[] = [];
    for (const s of servers) {
      const grpcJs = grpcJsClient(s.server.port);
      const viaGrpcJs = (req: Parameters<typeof create<typeof SubmitRequestSchema>>[1]) =>
        new Promise<unknown>((resolve) => {
          const seen: string[] = [];
          const call = (grpcJs as unknown as { submitStream(r: unknown): grpc.ClientReadableStream<SubmitStreamResponse> }).submitStream(create(SubmitRequestSchema, req));
          call.on("data", (m: SubmitStreamResponse) => seen.push(summary(m)));
          call.on("error", (e: grpc.ServiceError) => resolve([seen, e.code, e.details]));
          call.on("end", () => resolve([seen, 0]));
        });
      const connect = connectClient(s.server.port, "grpc");
      const viaConnect = async (req: Parameters<typeof connect.submitStream>[0]) => {
        const seen: string[] = [];
        try {
          for await (const m of connect.submitStream(req)) seen.push(summary(m));
          return [seen, 0];
        } catch (e) {
          return [seen, ConnectError.from(e).code, ConnectError.from(e).rawMessage];
        }
      };
      const text = { case: "binary" as const, value: Buffer.from("abcdef") };
      results.push([
        await viaGrpcJs({ backend: "echo", payload: text, metadata: { stream_chunks: "3" } }),
        await viaGrpcJs({ backend: "nope" }),
        await viaGrpcJs({ backend: "echo", payload: text, metadata: { stream_chunks: "2", fail: "aborted", fail_message: "gone: x/y" } }),
        await viaConnect({ backend: "echo", payload: text, metadata: { stream_chunks: "3" } }),
        await viaConnect({ backend: "nope" }),
      ]);
      grpcJs.close();
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
    expect((results[2] as unknown[][])[0]![0]).toEqual(["started", "chunk ab", "chunk cd", "chunk ef", "done"]);
  });

  it("a client that cancels mid-stream frees the worker on the fast path", async () => {
    const { server, dispatcher } = servers[2]!;
    const client = connectClient(server.port, "grpc");
    const abort = new AbortController();
    const cancelledBefore = dispatcher.snapshot(["echo"])[0]!.cancelled;
    let seen = 0;
    await expect(
      (async () => {
        for await (const m of client.submitStream(
          { backend: "echo", metadata: { stream_chunks: "50", chunk_delay_ms: "50" } },
          { signal: abort.signal },
        )) {
          if (m.event.case === "chunk" && ++seen === 2) abort.abort();
        }
      })(),
    ).rejects.toThrow();
    await expect.poll(() => dispatcher.snapshot(["echo"])[0]!.inflight, { timeout: 2_000 }).toBe(0);
    expect(dispatcher.snapshot(["echo"])[0]!.cancelled).toBe(cancelledBefore + 1);
  });
});
