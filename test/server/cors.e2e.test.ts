import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SubmitRequestSchema, SubmitResponseSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { echoHandler } from "../../src/backends/echo.js";
import { createDispatcher } from "../../src/core/index.js";
import { fastHook, type WithFastHook } from "../../src/server/edge/fast-hooks.js";
import { startServer, type DispatcherServer } from "../../src/server/index.js";
import { calls, frame, parseFrames } from "./cors-web-calls.js";

const PAGE = "http://page.test:5173";
const OTHER = "http://evil.test";
const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";
const submitBytes = toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "echo" }));

/** Records which way each call was served: the edge's fast path runs the hook, connect's pipeline the interceptor. */
const served: string[] = [];
const probe = Object.assign(((next) => (req) => {
  served.push("connect");
  return next(req);
}) as Interceptor, {
  [fastHook]: {
    start: () => {
      served.push("fast");
      return undefined;
    },
  },
} satisfies WithFastHook);

function start(origins: string[] | undefined, frontEnd: "edge" | "compat" = "edge"): Promise<DispatcherServer> {
  return startServer({
    dispatcher: createDispatcher({ backends: [{ name: "echo", handler: echoHandler(), workers: 1 }] }),
    corsAllowedOrigins: origins,
    interceptors: [probe],
    frontEnd,
    dashboard: false,
  });
}

let server: DispatcherServer;
let compat: DispatcherServer;
let none: DispatcherServer;
let any: DispatcherServer;
beforeAll(async () => {
  [server, compat, none, any] = await Promise.all([start([PAGE]), start([PAGE], "compat"), start(undefined), start(["*"])]);
});
afterAll(async () => {
  await Promise.all([server, compat, none, any].map((s) => s.close()));
});

const preflight = (origin: string) => ({
  method: "OPTIONS",
  path: SUBMIT,
  headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type,x-grpc-web,x-user-agent,authorization" },
});

for (const [version, call] of Object.entries(calls)) {
  describe(`CORS over ${version}`, () => {
    it("answers an allowed origin's preflight with 204, its origin, the methods and the Connect and gRPC-Web headers", async () => {
      for (const s of version === "HTTP/2" ? [server, compat] : [server]) {
        const a = await call(s.port, preflight(PAGE));
        expect(a.status).toBe(204);
        expect(a.headers["access-control-allow-origin"]).toBe(PAGE);
        expect(a.headers["access-control-allow-methods"]).toBe("POST, GET");
        const allowed = a.headers["access-control-allow-headers"]!.toLowerCase().split(/,\s*/);
        for (const h of ["content-type", "connect-protocol-version", "connect-timeout-ms", "grpc-timeout", "x-grpc-web", "x-user-agent", "authorization", "dispatcher-session"]) {
          expect(allowed).toContain(h);
        }
        expect(Number(a.headers["access-control-max-age"])).toBeGreaterThan(0);
        expect(a.headers["vary"]).toBe("Origin");
        expect(a.headers["access-control-allow-credentials"]).toBeUndefined();
        expect(a.body.length).toBe(0);
      }
    });

    it("refuses another origin's preflight with 403 and no CORS headers", async () => {
      const a = await call(server.port, preflight(OTHER));
      expect(a.status).toBe(403);
      expect(a.headers["access-control-allow-origin"]).toBeUndefined();
    });

    it('echoes the origin (never "*") when "*" is configured', async () => {
      const a = await call(any.port, preflight(OTHER));
      expect(a.status).toBe(204);
      expect(a.headers["access-control-allow-origin"]).toBe(OTHER);
    });

    it("adds no CORS headers at all when no origin is configured", async () => {
      const a = await call(none.port, preflight(PAGE));
      expect(a.status).not.toBe(204);
      expect(a.headers["access-control-allow-origin"]).toBeUndefined();
      const b = await call(none.port, grpcWeb(PAGE));
      expect(b.status).toBe(200);
      expect(b.headers["access-control-allow-origin"]).toBeUndefined();
    });

    it("adds the origin and exposed gRPC and Connect headers to a cross-origin gRPC-Web call's answer", async () => {
      served.length = 0;
      const a = await call(server.port, grpcWeb(PAGE));
      expect(a.status).toBe(200);
      expectCorsHeaders(a.headers);
      const { messages, trailers } = parseFrames(a.body);
      expect(trailers?.["grpc-status"]).toBe("0");
      expect(fromBinary(SubmitResponseSchema, messages[0]!).workerId).toBe("echo/0");
      expect(served).toEqual(["connect"]);
    });

    it("serves another origin's call without CORS headers: the browser, not the server, withholds the answer", async () => {
      const a = await call(server.port, grpcWeb(OTHER));
      expect(a.status).toBe(200);
      expect(a.headers["access-control-allow-origin"]).toBeUndefined();
    });

    it("adds them to a Connect error answer too, so that the page can read the error", async () => {
      const a = await call(server.port, {
        path: SUBMIT,
        headers: { origin: PAGE, "content-type": "application/json" },
        body: JSON.stringify({ backend: "nope" }),
      });
      expect(a.status).toBe(404);
      expect(JSON.parse(a.body.toString()).message).toContain("nope");
      expectCorsHeaders(a.headers);
    });
  });
}

describe("CORS on the HTTP/2 fast path", () => {
  it("adds the headers to a cross-origin gRPC call the fast path serves", async () => {
    served.length = 0;
    const a = await calls["HTTP/2"](server.port, {
      path: SUBMIT,
      headers: { origin: PAGE, "content-type": "application/grpc", te: "trailers" },
      body: frame(submitBytes),
    });
    expect(served).toEqual(["fast"]);
    expect(a.status).toBe(200);
    expectCorsHeaders(a.headers);
    expect(a.trailers["grpc-status"]).toBe("0");
    expect(fromBinary(SubmitResponseSchema, a.body.subarray(5)).workerId).toBe("echo/0");
  });

  it("and to its error answers", async () => {
    served.length = 0;
    const a = await calls["HTTP/2"](server.port, {
      path: SUBMIT,
      headers: { origin: PAGE, "content-type": "application/grpc", te: "trailers" },
      body: frame(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "nope" }))),
    });
    expect(served).toEqual(["fast"]);
    expect(a.headers["grpc-status"] ?? a.trailers["grpc-status"]).toBe("5");
    expectCorsHeaders(a.headers);
  });
});

function grpcWeb(origin: string) {
  return { path: SUBMIT, headers: { origin, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }, body: frame(submitBytes) };
}

function expectCorsHeaders(h: Record<string, string>): void {
  expect(h["access-control-allow-origin"]).toBe(PAGE);
  expect(h["vary"]).toContain("Origin");
  const exposed = h["access-control-expose-headers"]!.toLowerCase().split(/,\s*/);
  for (const name of ["grpc-status", "grpc-message", "grpc-status-details-bin", "content-encoding", "connect-content-encoding"]) expect(exposed).toContain(name);
}
