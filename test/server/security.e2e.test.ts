import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DispatcherService } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as Status, type HealthCheckResponse } from "../../gen/grpc/health/v1/health_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { bufCurl } from "../helpers/buf.js";
import { connectClient, grpcJsHealthClient, grpcUnary } from "../helpers/clients.js";

const backends = [{ name: "echo", kind: "echo", workers: 1 }];
const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });
const code = (e: unknown) => ConnectError.from(e).code;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dispatcher-security-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("bearer-token auth", () => {
  let app: App;
  beforeAll(async () => {
    const file = join(dir, "tokens");
    writeFileSync(file, "# ops team\nfile-token-1\n\nfile-token-2\n");
    app = await startTestApp({ backends, server: { auth: { tokens_file: file } } });
  });
  afterAll(() => app.close());

  it("refuses calls without a valid token with UNAUTHENTICATED, and serves those with one", async () => {
    const client = connectClient(app.server.port, "grpc");
    expect(code(await client.submit({ backend: "echo" }).catch((e: unknown) => e))).toBe(Code.Unauthenticated);
    const bad = { headers: { authorization: "Bearer file-token-3" } };
    expect(code(await client.submit({ backend: "echo" }, bad).catch((e: unknown) => e))).toBe(Code.Unauthenticated);
    const ok = await client.submit({ backend: "echo", payload: json(1) }, { headers: { authorization: "Bearer file-token-2" } });
    expect(ok.workerId).toBe("echo/0");
  });

  it("exempts health, so probes need no credentials", async () => {
    const health = grpcJsHealthClient(app.server.port);
    const r = await grpcUnary<HealthCheckResponse>(health, "check", create(HealthCheckRequestSchema, {})).finally(() => health.close());
    expect(r.status).toBe(Status.SERVING);
  });

  it("protects reflection, which buf curl reaches with --reflect-header", async () => {
    const url = `http://127.0.0.1:${app.server.port}`;
    const refused = await bufCurl(["--http2-prior-knowledge", "--list-services", url]);
    expect(refused.code).not.toBe(0);
    const r = await bufCurl(["--http2-prior-knowledge", "-H", "Authorization: Bearer file-token-1",
      "--reflect-header", "Authorization: Bearer file-token-1", "-d", '{"backend":"echo"}',
      `${url}/dispatcher.v1.DispatcherService/Submit`]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it("reads tokens from an environment variable", async () => {
    const { validateConfig } = await import("../../src/config.js");
    const { startApp } = await import("../../src/app.js");
    const config = validateConfig({ backends, server: { port: 0, auth: { tokens_env: "TEST_TOKENS" } } });
    const own = await startApp(config, { env: { TEST_TOKENS: "env-a, env-b" } });
    try {
      const client = connectClient(own.server.port);
      expect((await client.submit({ backend: "echo" }, { headers: { authorization: "Bearer env-b" } })).workerId).toBe("echo/0");
      expect(code(await client.submit({ backend: "echo" }).catch((e: unknown) => e))).toBe(Code.Unauthenticated);
    } finally {
      await own.close();
    }
  });

  it("is off by default", async () => {
    const own = await startTestApp({ backends });
    try {
      expect((await connectClient(own.server.port).submit({ backend: "echo" })).workerId).toBe("echo/0");
    } finally {
      await own.close();
    }
  });
});

describe("TLS with a certificate generated here", () => {
  let app: App;
  let ca: Buffer;
  beforeAll(async () => {
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert], { stdio: "ignore" });
    ca = Buffer.from(execFileSync("cat", [cert]));
    app = await startTestApp({ backends, server: { tls: { cert_file: cert, key_file: key } } });
  });
  afterAll(() => app.close());

  it("serves gRPC over h2 and Connect and gRPC-Web over HTTP/1.1", async () => {
    const baseUrl = `https://127.0.0.1:${app.server.port}`;
    const transports = [
      createGrpcTransport({ baseUrl, nodeOptions: { ca } }),
      createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca } }),
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca } }),
      createConnectTransport({ baseUrl, httpVersion: "2", nodeOptions: { ca } }),
    ];
    for (const t of transports) {
      const r = await createClient(DispatcherService, t).submit({ backend: "echo", payload: json("tls") });
      expect(r.workerId).toBe("echo/0");
    }
  });

  it("serves grpc-js with TLS credentials, and refuses cleartext", async () => {
    const health = new (grpc.makeGenericClientConstructor({}, "x"))(`127.0.0.1:${app.server.port}`, grpc.credentials.createSsl(ca));
    health.close();
    const plain = await fetch(`http://127.0.0.1:${app.server.port}/`).catch((e: unknown) => e);
    expect(plain).toBeInstanceOf(Error);
  });
});

describe("one cleartext port for h2c and HTTP/1.1", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestApp({ backends });
  });
  afterAll(() => app.close());

  it("serves Connect and gRPC-Web over HTTP/1.1 beside gRPC over h2c", async () => {
    const baseUrl = `http://127.0.0.1:${app.server.port}`;
    for (const t of [
      createConnectTransport({ baseUrl, httpVersion: "1.1" }),
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
      createGrpcTransport({ baseUrl }),
    ]) {
      expect((await createClient(DispatcherService, t).submit({ backend: "echo", payload: json([1]) })).workerId).toBe("echo/0");
    }
  });

  it("answers a plain JSON POST, as from curl or a browser", async () => {
    const res = await fetch(`http://127.0.0.1:${app.server.port}/dispatcher.v1.DispatcherService/Submit`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ backend: "echo", json: { a: 1 } }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ json: { a: 1 }, workerId: "echo/0" });
    const missing = await fetch(`http://127.0.0.1:${app.server.port}/dispatcher.v1.DispatcherService/Submit`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ backend: "nope" }),
    });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { code: string }).code).toBe("not_found");
  });

  it("lets buf curl use HTTP/1.1 without --http2-prior-knowledge", async () => {
    const r = await bufCurl(["--schema", "proto", "-d", '{"backend":"echo","json":"h1"}',
      `http://127.0.0.1:${app.server.port}/dispatcher.v1.DispatcherService/Submit`]);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ json: "h1" });
  });
});

describe("limits", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestApp({
      backends,
      server: {
        limits: {
          max_request_bytes: 1024, max_session_id_length: 8, max_metadata_entries: 2, max_metadata_size: 32,
          max_concurrent_streams: 7, max_metrics_subscribers: 1, max_deadline: "200ms",
        },
      },
    });
  });
  afterAll(() => app.close());

  it("answers each limit with its status", async () => {
    const client = connectClient(app.server.port, "grpc");
    const fail = (p: Promise<unknown>) => p.then(() => Code.Unknown as Code, code);
    expect(await fail(client.submit({ backend: "echo", payload: json("x".repeat(2000)) }))).toBe(Code.ResourceExhausted);
    expect(await fail(client.submit({ backend: "echo", sessionId: "123456789" }))).toBe(Code.InvalidArgument);
    expect(await fail(client.submit({ backend: "echo", metadata: { a: "1", b: "2", c: "3" } }))).toBe(Code.InvalidArgument);
    expect(await fail(client.submit({ backend: "echo", metadata: { a: "x".repeat(40) } }))).toBe(Code.InvalidArgument);
    // max_deadline clamps a deadline: a call asking for 10 s may run 200 ms. A call with none arms no deadline
    // timer (the backend's timeout bounds its run).
    expect(await fail(client.submit({ backend: "echo", metadata: { delay_ms: "2000" } }, { timeoutMs: 10_000 }))).toBe(Code.DeadlineExceeded);
    expect(await fail(client.submit({ backend: "echo", metadata: { delay_ms: "400" } }))).toBe(Code.Unknown);
    expect((await client.submit({ backend: "echo", sessionId: "12345678", metadata: { delay_ms: "10" } })).workerId).toBe("echo/0");
  });

  it("caps WorkerMetrics subscribers", async () => {
    const client = connectClient(app.server.port, "grpc");
    const ac = new AbortController();
    const first = client.workerMetrics({}, { signal: ac.signal })[Symbol.asyncIterator]();
    await first.next();
    const second = client.workerMetrics({})[Symbol.asyncIterator]();
    expect(code(await second.next().catch((e: unknown) => e))).toBe(Code.ResourceExhausted);
    ac.abort();
    await first.next().catch(() => undefined);
  });

  it("advertises max_concurrent_streams in HTTP/2 SETTINGS", async () => {
    const session = http2.connect(`http://127.0.0.1:${app.server.port}`);
    const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
    session.close();
    expect(settings.maxConcurrentStreams).toBe(7);
  });
});
