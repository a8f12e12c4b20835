import * as http2 from "node:http2";
import * as net from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { echoHandler } from "../../src/backends/echo.js";
import { createDispatcher } from "../../src/core/index.js";
import { startServer, type DispatcherServer } from "../../src/server/index.js";
import { connectClient } from "../helpers/clients.js";
import { envelope, rawCall } from "../server/raw-h2.js";

/**
 * Each attack of issue 10 against the real server, with short timeouts; a
 * well-behaved client must be served while it goes on.
 */
let server: DispatcherServer;
const TOKEN = "attack-test-token";
beforeAll(async () => {
  server = await startServer({
    dispatcher: createDispatcher({ backends: [{ name: "echo", handler: echoHandler(), workers: 2 }] }),
    limits: {
      headersTimeoutMs: 300,
      bodyIdleTimeoutMs: 300,
      idleTimeoutMs: 600,
      goawayGraceMs: 200,
      maxMetricsStreamsPerConnection: 2,
    },
  });
});
afterAll(() => server.close());

const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";
const okBody = () => envelope(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo" })));

/** A well-behaved call, over a fresh connection, must succeed. */
async function served(): Promise<void> {
  const r = await connectClient(server.port, "grpc").submit({ backend: "echo" });
  expect(r.workerId).toMatch(/^echo\//);
}

function closed(socket: net.Socket | http2.ClientHttp2Session): Promise<number> {
  const t = performance.now();
  return new Promise((resolve) => socket.once("close", () => resolve(performance.now() - t)));
}

describe("timeouts where a client can stall", () => {
  it("closes an HTTP/1.1 connection that never finishes its headers (slowloris)", async () => {
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write("POST /dispatcher.v1.DispatcherService/Submit HTTP/1.1\r\nHost: x\r\n");
    const drip = setInterval(() => socket.writable && socket.write("X-A: b\r\n"), 100);
    const done = closed(socket);
    await served();
    await done;
    clearInterval(drip);
    expect(socket.destroyed).toBe(true);
  });

  it("closes an HTTP/1.1 request whose body stalls", async () => {
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write("POST /dispatcher.v1.DispatcherService/Submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"backend\":");
    const done = closed(socket);
    await served();
    await done;
  });

  it("resets an HTTP/2 stream whose body stalls, keeping the connection", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => {});
    const req = session.request({ ":method": "POST", ":path": SUBMIT, "content-type": "application/grpc", te: "trailers" });
    req.on("error", () => {});
    req.write(okBody().subarray(0, 4));
    await new Promise<void>((resolve) => req.once("close", () => resolve()));
    expect(req.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    await served();
    session.destroy();
  });

  it("sends GOAWAY to an idle HTTP/2 connection and closes it", async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => {});
    const goaway = new Promise<void>((resolve) => session.once("goaway", () => resolve()));
    const done = closed(session);
    await goaway;
    await done;
    // One that did make a call is closed once idle, too.
    const used = http2.connect(`http://127.0.0.1:${server.port}`);
    used.on("error", () => {});
    const usedDone = closed(used);
    const req = used.request({ ":method": "POST", ":path": SUBMIT, "content-type": "application/grpc", te: "trailers" });
    req.end(okBody());
    req.resume();
    await usedDone;
    await served();
  });

  it("closes a connection after a rapid-reset flood, long before it would be idle", async () => {
    const patient = await startServer({
      dispatcher: createDispatcher({ backends: [{ name: "echo", handler: echoHandler({ delayMs: 1_000 }), workers: 2 }] }),
      limits: { idleTimeoutMs: 10 * 60_000, goawayGraceMs: 200 },
    });
    const session = http2.connect(`http://127.0.0.1:${patient.port}`);
    session.on("error", () => {});
    const done = closed(session);
    for (let i = 0; i < 2_000 && !session.destroyed && !session.closed; i++) {
      const req = session.request({ ":method": "POST", ":path": SUBMIT, "content-type": "application/grpc", te: "trailers" });
      req.on("error", () => {});
      req.close(http2.constants.NGHTTP2_CANCEL);
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    await served();
    await done;
    const ok = await connectClient(patient.port, "grpc").submit({ backend: "echo", metadata: { delay_ms: "0" } });
    expect(ok.workerId).toMatch(/^echo\//);
    await patient.close();
  });
});

describe("clamps and caps", () => {
  it("clamps grpc-timeout and connect-timeout-ms before any timer: no overflow, the call runs", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      for (const t of ["99999999H", "1000H"]) {
        const a = await rawCall(server.port, { ":path": SUBMIT, "content-type": "application/grpc", te: "trailers", "grpc-timeout": t }, [okBody()]);
        expect(a.trailers["grpc-status"], t).toBe("0");
      }
      const c = await rawCall(
        server.port,
        { ":path": SUBMIT, "content-type": "application/json", "connect-protocol-version": "1", "connect-timeout-ms": "9999999999" },
        [Buffer.from('{"backend":"echo"}')],
      );
      expect(c.headers[":status"]).toBe("200");
      await new Promise((r) => setTimeout(r, 50));
      expect(warnings.filter((w) => w.name === "TimeoutOverflowWarning")).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("caps WorkerMetrics streams per connection; another connection still subscribes", async () => {
    const client = connectClient(server.port, "grpc");
    const ac = new AbortController();
    const open = [0, 1].map(() => client.workerMetrics({}, { signal: ac.signal })[Symbol.asyncIterator]());
    for (const it of open) await it.next();
    const third = client.workerMetrics({}, { signal: ac.signal })[Symbol.asyncIterator]();
    const err = await third.next().then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.rawMessage).toContain("per connection");
    const other = connectClient(server.port, "grpc").workerMetrics({}, { signal: ac.signal })[Symbol.asyncIterator]();
    expect((await other.next()).done).toBe(false);
    ac.abort();
  });
});

describe("a request whose host makes no URL (HTTP/2 :authority, HTTP/1.1 Host)", () => {
  /** Status and body of one raw HTTP/2 request with `authority`. */
  function h2(authority: string, contentType: string, body: Buffer): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${server.port}`);
      session.on("error", reject);
      const s = session.request({ ":method": "POST", ":path": SUBMIT, ":authority": authority, "content-type": contentType, te: "trailers" });
      let status = 0;
      let text = "";
      s.on("response", (h) => (status = Number(h[":status"])));
      s.on("data", (c: Buffer) => (text += c.toString()));
      s.on("close", () => {
        session.close();
        resolve({ status, text });
      });
      s.on("error", reject);
      s.end(body);
    });
  }

  /** The status line of one raw HTTP/1.x request. */
  function h1(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(server.port, "127.0.0.1");
      let got = "";
      socket.on("data", (c: Buffer) => (got += c.toString()));
      socket.on("error", reject);
      socket.on("close", () => resolve(got.split("\r\n")[0]!));
      socket.end(request);
    });
  }

  it("answers 400, on every path, and the process goes on serving", async () => {
    const json = Buffer.from('{"backend":"echo"}');
    for (const authority of ["x:99999", "[", "a%"]) {
      // Connect JSON (connect's handler), and gRPC with an empty body (the fast path hands it to connect's handler).
      for (const [ct, body] of [["application/json", json], ["application/grpc", Buffer.alloc(0)]] as const) {
        const r = await h2(authority, ct, body);
        expect(r, `${authority} ${ct}`).toEqual({ status: 400, text: "bad request: the request's host (Host or :authority) is missing or not a valid host\n" });
      }
    }
    const post = (host: string) => `POST ${SUBMIT} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\nConnection: close\r\n\r\n${json}`;
    expect(await h1(post("x:99999"))).toBe("HTTP/1.1 400 Bad Request");
    expect(await h1(`GET /dispatcher.v1.DispatcherService/Submit?encoding=json&message=%7B%7D HTTP/1.1\r\nHost: [\r\nConnection: close\r\n\r\n`)).toBe("HTTP/1.1 400 Bad Request");
    expect(await h1(`GET /healthz HTTP/1.0\r\n\r\n`)).toBe("HTTP/1.1 400 Bad Request");
    // A gRPC binary call with a body takes the fast path, which builds no URL: served whatever its authority.
    const fast = await h2("x:99999", "application/grpc", okBody());
    expect(fast.status).toBe(200);
    await served();
  });
});

/** A Submit whose body goes out one byte per DATA frame: each write waits for the last to be sent. */
async function oneByteFrames(contentType: string, frames: Buffer[]): Promise<{ trailers: Record<string, string>; body: Buffer }> {
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  try {
    const req = session.request({ ":method": "POST", ":path": SUBMIT, "content-type": contentType, te: "trailers" });
    let trailers: Record<string, string> = {};
    const body: Buffer[] = [];
    req.on("trailers", (t) => (trailers = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, String(v)]))));
    req.on("data", (c: Buffer) => body.push(c));
    req.on("error", () => {});
    const closed = new Promise<void>((resolve) => req.on("close", resolve));
    for (const f of frames) await new Promise<void>((resolve) => req.write(f, () => resolve()));
    req.end();
    await closed;
    return { trailers, body: Buffer.concat(body) };
  } finally {
    session.close();
  }
}

describe("a request body in one-byte DATA frames", () => {
  it("costs time in proportion to its frames, on the fast path and through connect's handler", async () => {
    // A Submit of ~20 KB; 20,000 frames of one byte each. Joining every chunk again on each frame (the fast path's
    // envelope check, connect's decoder given the chunks as they came) took 3–4 s of CPU here; now well under 1 s.
    const msg = envelope(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: new Uint8Array(20_000).fill(7) } })));
    const frames = [...msg].map((b) => Buffer.from([b]));
    for (const contentType of ["application/grpc", "application/grpc-web+proto"]) {
      const cpu = process.cpuUsage();
      const r = await oneByteFrames(contentType, frames);
      const used = process.cpuUsage(cpu);
      // gRPC-Web carries its status in a trailer frame of the body; gRPC in HTTP/2 trailers.
      const status = r.trailers["grpc-status"] ?? /grpc-status:\s*(\d+)/.exec(r.body.toString("latin1"))?.[1];
      expect(status, contentType).toBe("0");
      // Client and server share this process: the bound covers both, with a wide margin either way.
      expect((used.user + used.system) / 1e6, contentType).toBeLessThan(2);
    }
    await served();
  });
});

describe("a client that never opens its flow-control window to a unary answer", () => {
  it("has the stream cancelled once its answer sends nothing for body_idle_timeout, on the fast path and through connect's handler", async () => {
    // echo answers its payload: 1 MiB here, held by the server while the client's window stays at 0.
    const msg = envelope(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: new Uint8Array(1 << 20).fill(1) } })));
    for (const contentType of ["application/grpc", "application/grpc-web+proto"]) {
      const session = http2.connect(`http://127.0.0.1:${server.port}`, { settings: { initialWindowSize: 0 } });
      session.on("error", () => {});
      const req = session.request({ ":method": "POST", ":path": SUBMIT, "content-type": contentType, te: "trailers" });
      req.on("error", () => {});
      const t0 = performance.now();
      const reset = new Promise<number>((resolve) => req.on("close", () => resolve(req.rstCode)));
      req.end(msg);
      await served();
      // body_idle_timeout is 300 ms here; a stall is seen within one to two periods of the watchdog.
      expect(await reset, contentType).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(performance.now() - t0, contentType).toBeLessThan(5_000);
      session.destroy();
    }
  });
});
