import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SubmitRequestSchema, SubmitResponseSchema, WorkerMetricsRequestSchema, WorkerMetricsResponseSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { echoHandler } from "../../src/backends/echo.js";
import { createDispatcher } from "../../src/core/index.js";
import { decodeBase64Stream } from "../../src/server/grpc-web-text.js";
import { startServer, type DispatcherServer } from "../../src/server/index.js";
import { calls, frame, parseFrames, type WebAnswer } from "./cors-web-calls.js";

const SUBMIT = "/dispatcher.v1.DispatcherService/Submit";
const METRICS = "/dispatcher.v1.DispatcherService/WorkerMetrics";
const submit = (backend: string) => frame(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend })));

/**
 * A grpc-web text answer as the client decodes it, independently of the
 * server's code: every 4-character group on its own (each write is padded).
 */
function textFrames(body: Buffer, check = true) {
  const text = body.toString("latin1");
  if (check) expect(text).toMatch(/^[A-Za-z0-9+/=]*$/);
  const whole = text.length - (text.length % 4);
  const parts: Buffer[] = [];
  for (let i = 0; i < whole; i += 4) parts.push(Buffer.from(text.slice(i, i + 4), "base64"));
  return parseFrames(Buffer.concat(parts));
}

const fronts = ["edge", "compat"] as const;
const servers = new Map<string, DispatcherServer>();
beforeAll(async () => {
  for (const f of fronts) {
    servers.set(
      f,
      await startServer({
        dispatcher: createDispatcher({ backends: [{ name: "echo", handler: echoHandler(), workers: 1 }] }),
        frontEnd: f,
        dashboard: false,
      }),
    );
  }
});
afterAll(async () => {
  await Promise.all([...servers.values()].map((s) => s.close()));
});

const cases = [
  { name: "HTTP/1.1", call: calls["HTTP/1.1"], front: "edge" },
  { name: "HTTP/2 (edge)", call: calls["HTTP/2"], front: "edge" },
  { name: "HTTP/2 (compat)", call: calls["HTTP/2"], front: "compat" },
] as const;

for (const c of cases) {
  describe(`gRPC-Web text mode over ${c.name}`, () => {
    const port = () => servers.get(c.front)!.port;

    for (const type of ["application/grpc-web-text", "application/grpc-web-text+proto"]) {
      it(`serves a unary call sent as ${type}, answering base64 frames and trailers`, async () => {
        const a: WebAnswer = await c.call(port(), {
          path: SUBMIT,
          headers: { "content-type": type, "x-grpc-web": "1", accept: "application/grpc-web-text" },
          body: submit("echo").toString("base64"),
        });
        expect(a.status).toBe(200);
        expect(a.headers["content-type"]).toBe("application/grpc-web-text+proto");
        const { messages, trailers, complete } = textFrames(a.body);
        expect(complete).toBe(true);
        expect(trailers?.["grpc-status"]).toBe("0");
        expect(messages).toHaveLength(1);
        expect(fromBinary(SubmitResponseSchema, messages[0]!).workerId).toBe("echo/0");
      });
    }

    it("answers a call's error in the trailer frame, in text", async () => {
      const a = await c.call(port(), {
        path: SUBMIT,
        headers: { "content-type": "application/grpc-web-text", "x-grpc-web": "1" },
        body: submit("nope").toString("base64"),
      });
      expect(a.headers["content-type"]).toBe("application/grpc-web-text+proto");
      const { messages, trailers } = textFrames(a.body);
      expect(messages).toHaveLength(0);
      expect(trailers?.["grpc-status"]).toBe("5");
      expect(decodeURIComponent(trailers?.["grpc-message"] ?? "")).toContain("nope");
    });

    it("refuses a body that is not base64 with INVALID_ARGUMENT", async () => {
      const a = await c.call(port(), {
        path: SUBMIT,
        headers: { "content-type": "application/grpc-web-text", "x-grpc-web": "1" },
        body: "AAAA*AAA",
      });
      const { trailers } = textFrames(a.body);
      expect(a.headers["grpc-status"] ?? trailers?.["grpc-status"]).toBe("3");
      expect(decodeURIComponent(a.headers["grpc-message"] ?? trailers?.["grpc-message"] ?? "")).toContain("base64");
    });

    it("streams WorkerMetrics, each message decodable as it arrives", async () => {
      const req = create(WorkerMetricsRequestSchema, { backends: ["echo"], interval: durationFromMs(100) });
      const a = await c.call(port(), {
        path: METRICS,
        headers: { "content-type": "application/grpc-web-text", "x-grpc-web": "1" },
        body: frame(toBinary(WorkerMetricsRequestSchema, req)).toString("base64"),
        until: (body) => textFrames(body, false).messages.length >= 2,
      });
      expect(a.headers["content-type"]).toBe("application/grpc-web-text+proto");
      const { messages } = textFrames(a.body);
      expect(messages.length).toBeGreaterThanOrEqual(2);
      for (const m of messages) expect(fromBinary(WorkerMetricsResponseSchema, m).workers.map((w) => w.backend)).toEqual(["echo"]);
    }, 20_000);
  });
}

describe("the text body decoder", () => {
  async function decodeAll(chunks: string[]): Promise<Buffer> {
    const out: Uint8Array[] = [];
    async function* src() {
      for (const c of chunks) yield Buffer.from(c, "latin1");
    }
    for await (const b of decodeBase64Stream(src())) out.push(b);
    return Buffer.concat(out);
  }

  it("decodes base64 split anywhere, and padded segments sent one after the other", async () => {
    const bytes = Buffer.from(Array.from({ length: 50 }, (_, i) => (i * 37) % 256));
    const text = bytes.toString("base64");
    for (const size of [1, 2, 3, 5, 7, 64]) {
      const chunks: string[] = [];
      for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
      expect(await decodeAll(chunks)).toEqual(bytes);
    }
    const a = Buffer.from("hi");
    const b = Buffer.from("there!");
    expect(await decodeAll([a.toString("base64") + b.toString("base64")])).toEqual(Buffer.concat([a, b]));
    expect(await decodeAll(["aGk=\r\n", "dGhlcmUh"])).toEqual(Buffer.from("hithere!"));
  });

  it("refuses characters that are not base64, and a body cut mid-group", async () => {
    await expect(decodeAll(["AA*A"])).rejects.toThrow(/not base64/);
    await expect(decodeAll(["AAAA=AAA"])).rejects.toThrow(/not base64/);
    await expect(decodeAll(["AAAAA"])).rejects.toThrow(/left over/);
  });
});
