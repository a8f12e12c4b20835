import * as http from "node:http";
import { gzipSync } from "node:zlib";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SubmitStreamResponse } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";
import { startUpstream, type SeenRequest, type TestUpstream } from "../helpers/upstream.js";

/**
 * Streamed upstream answers that are broken in ways a served model or a proxy
 * in front of one really breaks them, through the real service and a real
 * upstream on 127.0.0.1: each must end the call with a status that says so,
 * never as a successful answer, and must not cost other callers anything.
 */

const MAX_RESPONSE_BYTES = 64 * 1024;
const event = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
const token = (content: string) => event({ object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta: { content }, finish_reason: null }] });
const finish = event({ object: "chat.completion.chunk", model: "m", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });

/** What the upstream does with the next request, by the `user` field of the chat request. */
const behaviours: Record<string, (req: SeenRequest, res: http.ServerResponse) => void> = {
  ok: (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(token("a") + token("b") + finish + "data: [DONE]\n\n");
  },
  "finish, no [DONE]": (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(token("a") + finish);
  },
  "[DONE], kept open": (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(token("a") + finish + "data: [DONE]\n\n");
  },
  "[DONE], the end a moment later": (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(token("a") + finish + "data: [DONE]\n\n");
    setTimeout(() => res.end(), 20);
  },
  "error event": (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(token("a"));
    setTimeout(() => res.end(event({ error: { message: "model worker 10.1.2.3:8000 crashed", type: "server_error" } }) + "data: [DONE]\n\n"), 20);
  },
  "cut off": (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(token("a"));
    setTimeout(() => res.end(), 20);
  },
  html: (_req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<html><body>maintenance</body></html>");
  },
  gzip: (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream", "content-encoding": "gzip" });
    res.end(gzipSync(token("a") + finish + "data: [DONE]\n\n"));
  },
  "one event of many lines": (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    // 1 KiB lines, each well under max_response_bytes, never closed by a blank line.
    const line = `data: ${"x".repeat(1018)}\n`;
    const pour = () => {
      while (!res.destroyed) if (!res.write(line)) return void res.once("drain", pour);
    };
    pour();
  },
  "one endless line": (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    const piece = "y".repeat(1024);
    res.write("data: ");
    const pour = () => {
      while (!res.destroyed) if (!res.write(piece)) return void res.once("drain", pour);
    };
    pour();
  },
};

let up: TestUpstream;
let app: App;

beforeAll(async () => {
  up = await startUpstream((req, res) => {
    const body = JSON.parse(req.body.toString()) as { user?: string };
    behaviours[body.user ?? "ok"]!(req, res);
  });
  app = await startTestApp({
    backends: [
      { name: "llm", kind: "genai", endpoints: [up.url], options: { model: "m", max_response_bytes: MAX_RESPONSE_BYTES } },
      { name: "web", kind: "http", endpoints: [up.url], options: { path: "/v1/chat/completions", max_response_bytes: MAX_RESPONSE_BYTES } },
    ],
  });
});

afterAll(async () => {
  await app?.close();
  await up?.close();
});

const chat = (user: string) => ({ case: "json" as const, value: fromJson(ValueSchema, { stream: true, user, messages: [{ role: "user", content: "hi" }] }) });

/** The events a SubmitStream call got, and the error that ended it (undefined when it ended with Done). */
async function stream(backend: string, user: string): Promise<{ events: string[]; error: ConnectError | undefined }> {
  const client = connectClient(app.server.port, "grpc");
  const events: string[] = [];
  try {
    for await (const m of client.submitStream({ backend, payload: chat(user) })) events.push(describe_(m));
    return { events, error: undefined };
  } catch (e) {
    return { events, error: ConnectError.from(e) };
  }
}

function describe_(m: SubmitStreamResponse): string {
  if (m.event.case === "chunk") return m.event.value.text === "" ? `chunk ${JSON.stringify(m.event.value.metadata)}` : `chunk ${m.event.value.text}`;
  return m.event.case ?? "?";
}

/** Resolves true once the upstream saw request `n` closed before its answer was complete. */
async function closedEarly(n: number): Promise<boolean> {
  const r = await up.request(n);
  return Promise.race([r.aborted, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000))]);
}

describe("streamed answers that are broken", () => {
  it("a whole stream, with or without the final [DONE], is a success", async () => {
    expect(await stream("llm", "ok")).toEqual({ events: ["started", "chunk a", "chunk b", 'chunk {"finish_reason":"stop"}', "done"], error: undefined });
    expect(await stream("llm", "finish, no [DONE]")).toEqual({ events: ["started", "chunk a", 'chunk {"finish_reason":"stop"}', "done"], error: undefined });
  });

  it("an upstream that sends [DONE] and keeps its answer open is closed a second later", async () => {
    const n = up.requests.length + 1;
    expect((await stream("llm", "[DONE], kept open")).error).toBeUndefined();
    expect(await closedEarly(n)).toBe(true);
  });

  it("an upstream that ends its answer a moment after [DONE] keeps its connection for the next call", async () => {
    const n = up.requests.length + 1;
    for (let i = 0; i < 3; i++) {
      expect((await stream("llm", "[DONE], the end a moment later")).error).toBeUndefined();
      // The next call starts once the answer has ended, as a client's next turn in a conversation would.
      await new Promise((r) => setTimeout(r, 50));
    }
    const ports = new Set(up.requests.slice(n - 1).map((r) => r.remotePort));
    expect(ports.size).toBe(1);
  });

  it("an error event mid-stream ends it with UNAVAILABLE, without quoting the upstream", async () => {
    const { events, error } = await stream("llm", "error event");
    expect(events).toEqual(["started", "chunk a"]);
    expect(error?.code).toBe(Code.Unavailable);
    expect(error?.rawMessage).toBe("upstream llm/0 sent an error in its stream");
  });

  it("an answer that ends before it finished (no finish_reason, no [DONE]) is UNAVAILABLE, not a short success", async () => {
    const { events, error } = await stream("llm", "cut off");
    expect(events).toEqual(["started", "chunk a"]);
    expect(error?.code).toBe(Code.Unavailable);
    expect(error?.rawMessage).toMatch(/ended its stream before it finished/);
  });

  it("a 200 that is not an event stream, or is compressed, is UNAVAILABLE naming what came", async () => {
    const html = await stream("llm", "html");
    expect(html.error?.code).toBe(Code.Unavailable);
    expect(html.error?.rawMessage).toBe('upstream llm/0 answered a streamed request with content type "text/html", not an event stream (text/event-stream)');
    const gzip = await stream("llm", "gzip");
    expect(gzip.error?.code).toBe(Code.Unavailable);
    expect(gzip.error?.rawMessage).toBe('upstream llm/0 answered a streamed request with content-encoding "gzip", which the service did not ask for');
    const passed = await stream("web", "gzip");
    expect(passed.error?.code).toBe(Code.Unavailable);
  });

  it.each([
    { upstream: "one event of many lines", refused: "an event larger" },
    { upstream: "one endless line", refused: "a line longer" },
  ])("$upstream: bounded by max_response_bytes for genai and http's pass-through, its upstream closed, nothing else harmed", async ({ upstream, refused }) => {
    for (const backend of ["llm", "web"]) {
      const n = up.requests.length + 1;
      const { events, error } = await stream(backend, upstream);
      expect(events).toEqual(["started"]);
      expect(error?.code).toBe(Code.ResourceExhausted);
      expect(error?.rawMessage).toBe(`upstream ${backend}/0 sent ${refused} than max_response_bytes (${MAX_RESPONSE_BYTES})`);
      expect(await closedEarly(n)).toBe(true);
    }
    expect((await stream("llm", "ok")).error).toBeUndefined();
  });

  it("an answer over the service's own size limits does not pause the worker as an upstream 429 does", async () => {
    expect((await stream("llm", "one event of many lines")).error?.code).toBe(Code.ResourceExhausted);
    // A 429 pauses the worker for 1 s (no Retry-After); the next call on this one worker must not wait for that.
    const t0 = performance.now();
    expect((await stream("llm", "ok")).error).toBeUndefined();
    expect(performance.now() - t0).toBeLessThan(500);
  });
});
