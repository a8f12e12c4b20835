import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DispatcherService,
  SubmitRequestSchema,
  SubmitResponseSchema,
  type SubmitResponse,
} from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { HealthCheckRequestSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { echoHandler } from "../../src/backends/echo.js";
import { createDispatcher } from "../../src/core/index.js";
import { startServer, type DispatcherServer } from "../../src/server/index.js";
import { bufCurl } from "../helpers/buf.js";
import { connectClient, grpcJsClient, grpcUnary, type Protocol } from "../helpers/clients.js";
import { FRONTS, envelope, firstMessage, rawCall, type RawAnswer } from "./raw-h2.js";

/**
 * The edge's answers against connect's own: the same calls to the previous
 * front end (node's compat layer + connectNodeAdapter), to the edge with
 * every call through connect's handler, and to the edge's fast path.
 */
const fronts = FRONTS;
const servers: DispatcherServer[] = [];
const TOKEN = "s3cret-token";

function startOne(f: (typeof fronts)[number], auth = false, interceptors?: Interceptor[]): Promise<DispatcherServer> {
  const dispatcher = createDispatcher({
    backends: [
      { name: "echo", handler: echoHandler(), workers: 1 },
      { name: "tight", handler: echoHandler({ delayMs: 300 }), workers: 1, maxConcurrency: 1, queueCapacity: 0 },
    ],
  });
  return startServer({
    dispatcher,
    frontEnd: f.frontEnd,
    fastPath: f.fastPath,
    limits: { maxRequestBytes: 16 * 1024 },
    authTokens: auth ? [TOKEN] : undefined,
    interceptors,
  });
}

beforeAll(async () => {
  for (const f of fronts) servers.push(await startOne(f));
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";
const grpcHeaders = (path = SUBMIT, extra: Record<string, string> = {}) => ({
  ":path": path,
  "content-type": "application/grpc",
  te: "trailers",
  ...extra,
});
const submitBytes = (fields: Parameters<typeof create<typeof SubmitRequestSchema>>[1]) =>
  toBinary(SubmitRequestSchema, create(SubmitRequestSchema, fields));

/** A Submit answer without its timings, which differ from call to call. */
function normalized(a: RawAnswer): unknown {
  const m = firstMessage(a.body, a.headers["grpc-encoding"]);
  let message: unknown;
  if (m !== undefined && a.headers["content-type"]?.includes("json")) {
    const { queueWait, execution, ...rest } = JSON.parse(m.toString()) as Record<string, unknown>;
    message = [rest, typeof queueWait, typeof execution];
  } else if (m !== undefined && a.headers[":status"] === "200") {
    const r = fromBinary(SubmitResponseSchema, m);
    r.queueWait = undefined;
    r.execution = undefined;
    message = toBinary(SubmitResponseSchema, r);
  }
  return { headers: a.headers, flag: a.body[0], message, trailers: a.trailers, rst: a.rstCode };
}

async function allAnswers(headers: Record<string, string>, chunks: Buffer[]): Promise<RawAnswer[]> {
  const out: RawAnswer[] = [];
  for (const s of servers) out.push(await rawCall(s.port, headers, chunks));
  return out;
}

async function expectSame(headers: Record<string, string>, chunks: Buffer[], normalize = false): Promise<RawAnswer> {
  const [reference, ...others] = await allAnswers(headers, chunks);
  for (const [i, a] of others.entries()) {
    if (normalize) expect(normalized(a), fronts[i + 1]!.name).toEqual(normalized(reference!));
    else expect(a, fronts[i + 1]!.name).toEqual(reference);
  }
  return reference!;
}

const codes = [
  "invalid_argument", "not_found", "permission_denied", "resource_exhausted", "failed_precondition",
  "aborted", "unimplemented", "internal", "unavailable", "unauthenticated", "unknown",
];

describe("edge conformance over raw HTTP/2 frames", () => {
  it("OK: headers, message and trailers", async () => {
    const a = await expectSame(grpcHeaders(), [envelope(submitBytes({ backend: "echo", payload: { case: "binary", value: new Uint8Array([1, 2, 3]) } }))], true);
    expect(a.trailers["grpc-status"]).toBe("0");
    const health = await expectSame(grpcHeaders("/grpc.health.v1.Health/Check"), [envelope(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema)))]);
    expect(health.body.length).toBeGreaterThan(5);
  });

  it("OK with a compressed answer (grpc-accept-encoding) and a JSON payload", async () => {
    const payload = { case: "binary" as const, value: new Uint8Array(4000).fill(7) };
    const a = await expectSame(grpcHeaders(SUBMIT, { "grpc-accept-encoding": "identity,deflate,gzip" }), [envelope(submitBytes({ backend: "echo", payload }))], true);
    expect(a.headers["grpc-encoding"]).toBe("gzip");
    expect(a.body[0]).toBe(1);
    await expectSame(grpcHeaders(SUBMIT, { "grpc-accept-encoding": "br" }), [envelope(submitBytes({ backend: "echo", payload }))], true);
    const json = { case: "json" as const, value: { kind: { case: "stringValue" as const, value: "a, b: c/d %" }, $typeName: "google.protobuf.Value" as const } };
    await expectSame(grpcHeaders(), [envelope(submitBytes({ backend: "echo", payload: json }))], true);
  });

  it("every error code, with its message in the spec's encoding", async () => {
    for (const code of codes) {
      const a = await expectSame(grpcHeaders(), [envelope(submitBytes({ backend: "echo", metadata: { fail: code, fail_message: `it failed: "${code}", 100% ü` } }))]);
      expect(a.trailers["grpc-message"]).toContain("it failed: ");
    }
    await expectSame(grpcHeaders(), [envelope(submitBytes({ backend: "nope" }))]);
    await expectSame(grpcHeaders(), [envelope(submitBytes({ backend: "" }))]);
    await expectSame(grpcHeaders(), [envelope(submitBytes({ backend: "echo", sessionId: "x".repeat(300) }))]);
  });

  it("bad envelopes, two messages, an empty body, an oversize message, a message that does not parse", async () => {
    const ok = submitBytes({ backend: "echo" });
    await expectSame(grpcHeaders(), [Buffer.from([0, 0, 0])]);
    await expectSame(grpcHeaders(), [envelope(ok, 0, ok.length + 10)]);
    await expectSame(grpcHeaders(), [envelope(ok, 1)]);
    await expectSame(grpcHeaders(), [envelope(ok), envelope(ok)]);
    await expectSame(grpcHeaders(), [Buffer.concat([envelope(ok), envelope(ok)])]);
    await expectSame(grpcHeaders(), []);
    // Within the client's flow-control window: past it, the compat front end never answers (it stops reading).
    await expectSame(grpcHeaders(), [envelope(new Uint8Array(20 * 1024))]);
    await expectSame(grpcHeaders(), [envelope(Buffer.from([0x0a, 0xff, 0xff, 0xff]))]);
    // Split across frames, the header too.
    const whole = envelope(ok);
    await expectSame(grpcHeaders(), [whole.subarray(0, 3), whole.subarray(3, 7), whole.subarray(7)], true);
  });

  it("compressed requests, unknown encodings, other content types, an unknown method", async () => {
    const ok = submitBytes({ backend: "echo" });
    await expectSame(grpcHeaders(SUBMIT, { "grpc-encoding": "gzip" }), [envelope(gzipSync(ok), 1)], true);
    await expectSame(grpcHeaders(SUBMIT, { "grpc-encoding": "snappy" }), [envelope(ok)]);
    await expectSame(grpcHeaders(SUBMIT, { "content-type": "application/grpc+json" }), [envelope(Buffer.from('{"backend":"echo"}'))], true);
    await expectSame(grpcHeaders(SUBMIT, { "content-type": "text/plain" }), [envelope(ok)]);
    await expectSame(grpcHeaders("/dispatcher.v1.DispatcherService/Nope"), [envelope(ok)]);
  });

  it("deadlines: one that passes, a malformed one, one past every limit", async () => {
    const slow = submitBytes({ backend: "echo", metadata: { delay_ms: "2000" } });
    const answers = await allAnswers(grpcHeaders(SUBMIT, { "grpc-timeout": "100m" }), [envelope(slow)]);
    for (const a of answers) expect(a.trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
    await expectSame(grpcHeaders(SUBMIT, { "grpc-timeout": "soon" }), [envelope(slow)]);
    await expectSame(grpcHeaders(SUBMIT, { "grpc-timeout": "99999999H" }), [envelope(submitBytes({ backend: "echo" }))], true);
  });
});

describe("edge conformance through clients", () => {
  it("grpc-js sees the same statuses, messages and answers", async () => {
    const results: unknown[] = [];
    for (const s of servers) {
      const client = grpcJsClient(s.port);
      const one = async (req: Parameters<typeof create<typeof SubmitRequestSchema>>[1], deadline?: Date) => {
        try {
          const r = await grpcUnary<SubmitResponse>(client, "submit", create(SubmitRequestSchema, req), { deadline });
          return { payload: r.payload, workerId: r.workerId, attempts: r.attempts };
        } catch (e) {
          const err = e as grpc.ServiceError;
          // grpc-js's own deadline message carries timings.
          return { code: err.code, details: err.code === grpc.status.DEADLINE_EXCEEDED ? "" : err.details };
        }
      };
      results.push([
        await one({ backend: "echo", payload: { case: "binary", value: new Uint8Array([9]) } }),
        await one({ backend: "nope" }),
        await one({ backend: "echo", metadata: { fail: "unavailable", fail_message: "down: a, b/c" } }),
        await one({ backend: "echo", metadata: { delay_ms: "3000" } }, new Date(Date.now() + 200)),
      ]);
      client.close();
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });

  it("connect clients in all three protocols see the same", async () => {
    for (const protocol of ["grpc", "grpc-web", "connect"] as Protocol[]) {
      const results: unknown[] = [];
      for (const s of servers) {
        const client = connectClient(s.port, protocol);
        const one = async (req: Parameters<typeof client.submit>[0]) => {
          try {
            const r = await client.submit(req);
            return { payload: r.payload, workerId: r.workerId };
          } catch (e) {
            const err = ConnectError.from(e);
            return { code: err.code, message: err.rawMessage };
          }
        };
        results.push([await one({ backend: "echo", payload: { case: "binary", value: new Uint8Array([1]) } }), await one({ backend: "nope" })]);
      }
      expect(results[1], protocol).toEqual(results[0]);
      expect(results[2], protocol).toEqual(results[0]);
    }
  });

  it("buf curl (gRPC over h2c) sees the same", async () => {
    const outputs: unknown[] = [];
    for (const s of servers) {
      const url = `http://127.0.0.1:${s.port}${SUBMIT}`;
      const ok = await bufCurl(["--schema", "proto", "--protocol", "grpc", "--http2-prior-knowledge", "-d", '{"backend":"echo","json":{"a":[1,"x",null]}}', url]);
      const { queueWait, execution, ...rest } = JSON.parse(ok.stdout) as Record<string, unknown>;
      const bad = await bufCurl(["--schema", "proto", "--protocol", "grpc", "--http2-prior-knowledge", "-d", '{"backend":"nope"}', url]);
      outputs.push([rest, typeof queueWait, typeof execution, ok.code, bad.code, bad.stderr]);
    }
    expect(outputs[1]).toEqual(outputs[0]);
    expect(outputs[2]).toEqual(outputs[0]);
  });

  it("a plain interceptor (no fast-path hook) sees the message and sets headers and trailers the same way", async () => {
    const interceptor: Interceptor = (next) => async (req) => {
      const backend = (req.message as { backend?: string }).backend ?? "";
      if (backend === "refuse") throw new ConnectError("refused by interceptor", Code.PermissionDenied, { "x-why": "test" });
      const res = await next(req);
      res.header.set("x-backend", backend);
      if (!res.stream) res.trailer.set("x-trailer", "t");
      return res;
    };
    const withInterceptor = await Promise.all(fronts.map((f) => startOne(f, false, [interceptor])));
    try {
      for (const backend of ["echo", "refuse", "nope"]) {
        const answers = [];
        for (const s of withInterceptor) answers.push(normalized(await rawCall(s.port, grpcHeaders(), [envelope(submitBytes({ backend }))])));
        expect(answers[1], backend).toEqual(answers[0]);
        expect(answers[2], backend).toEqual(answers[0]);
        const a = answers[2] as { headers: Record<string, string>; trailers: Record<string, string> };
        if (backend === "echo") expect([a.headers["x-backend"], a.trailers["x-trailer"]]).toEqual(["echo", "t"]);
        if (backend === "refuse") expect([a.trailers["grpc-status"], a.trailers["x-why"]]).toEqual([String(Code.PermissionDenied), "test"]);
      }
    } finally {
      await Promise.all(withInterceptor.map((s) => s.close()));
    }
  });

  it("auth refuses the same way on every path, before the body is decoded", async () => {
    const authed = await Promise.all(fronts.map((f) => startOne(f, true)));
    try {
      const answers = [];
      for (const s of authed) answers.push(await rawCall(s.port, grpcHeaders(), [envelope(submitBytes({ backend: "echo" }))]));
      expect(answers[1]).toEqual(answers[0]);
      expect(answers[2]).toEqual(answers[0]);
      expect(answers[0]!.trailers["grpc-status"]).toBe(String(Code.Unauthenticated));
      const client = createClient(DispatcherService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${authed[2]!.port}` }));
      const r = await client.submit({ backend: "echo" }, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(r.workerId).toBe("echo/0");
    } finally {
      await Promise.all(authed.map((s) => s.close()));
    }
  });
});
