import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";
import { json, startUpstream, type TestUpstream } from "../helpers/upstream.js";

let up: TestUpstream;
let app: App;

beforeAll(async () => {
  up = await startUpstream((req, res) => {
    if (req.url !== "/v1/chat/completions") return json(res, 404, { error: { message: "no route" } });
    const body = JSON.parse(req.body.toString()) as { model: string; messages: { content: string }[] };
    json(res, 200, {
      id: "chatcmpl-1",
      object: "chat.completion",
      model: body.model,
      choices: [{ index: 0, message: { role: "assistant", content: `echo: ${body.messages.at(-1)!.content}` }, finish_reason: "stop" }],
      usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15, prompt_tokens_details: { cached_tokens: 8 } },
      seen: { auth: req.headers["authorization"], temperature: (body as { temperature?: number }).temperature },
    });
  });
  process.env["TEST_GENAI_KEY"] = "sk-test";
  try {
    app = await startTestApp({
      backends: [{
        name: "llm",
        kind: "genai",
        endpoints: [up.url],
        options: { model: "tiny-model", api_key_env: "TEST_GENAI_KEY", defaults: { temperature: 0.2 } },
      }],
    });
  } finally {
    delete process.env["TEST_GENAI_KEY"];
  }
});
afterAll(async () => {
  await app.close();
  await up.close();
});

const value = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });

describe("genai backend", () => {
  it("posts a chat completion with model, key and defaults from the config, and reports usage", async () => {
    const client = connectClient(app.server.port);
    const r = await client.submit({ backend: "llm", sessionId: "conv-1", payload: value({ messages: [{ role: "user", content: "hello" }] }) });
    const answer = toJson(ValueSchema, r.payload.value as never) as { model: string; choices: { message: { content: string } }[]; seen: unknown };
    expect(answer.model).toBe("tiny-model");
    expect(answer.choices[0]!.message.content).toBe("echo: hello");
    expect(answer.seen).toEqual({ auth: "Bearer sk-test", temperature: 0.2 });
    expect(r.metadata).toMatchObject({ model: "tiny-model", prompt_tokens: "12", completion_tokens: "3", total_tokens: "15", cached_tokens: "8" });
    const own = await client.submit({ backend: "llm", payload: value({ model: "other", temperature: 1, messages: [{ role: "user", content: "x" }] }) });
    expect(toJson(ValueSchema, own.payload.value as never)).toMatchObject({ model: "other", seen: { temperature: 1 } });
  });

  it("refuses what it cannot forward", async () => {
    const client = connectClient(app.server.port);
    await expect(client.submit({ backend: "llm", payload: { case: "binary", value: new Uint8Array([1]) } })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it("needs its API key variable set at start", async () => {
    await expect(startTestApp({ backends: [{ name: "llm", kind: "genai", endpoints: [up.url], options: { api_key_env: "TEST_GENAI_UNSET" } }] })).rejects.toThrow(
      "backends[0].options.api_key_env: environment variable TEST_GENAI_UNSET is not set",
    );
  });

  it("does not hand the configured key to the client when the upstream quotes it back", async () => {
    // What OpenAI answers to a wrong key: the key itself, in the error body.
    const refusing = await startUpstream((req, res) =>
      json(res, 401, { error: { message: `Incorrect API key provided: ${String(req.headers["authorization"]).slice(7)}.`, code: "invalid_api_key" } }),
    );
    const logged: unknown[] = [];
    const keep = (obj: object, msg?: string) => logged.push({ obj, msg });
    const config = validateConfig({
      server: { port: 0, shutdown_grace: "2s" },
      backends: [{ name: "llm", kind: "genai", endpoints: [{ url: refusing.url, name: "openai" }], options: { model: "m", api_key_env: "TEST_GENAI_KEY" } }],
    });
    const a = await startApp(config, { env: { TEST_GENAI_KEY: "sk-live-123" }, log: { error: keep, warn: keep, info: keep, debug: keep } });
    try {
      const err = await connectClient(a.server.port)
        .submit({ backend: "llm", payload: value({ messages: [{ role: "user", content: "hi" }] }) })
        .then(() => undefined, (x: unknown) => ConnectError.from(x));
      expect(err?.code).toBe(Code.PermissionDenied);
      expect(err!.rawMessage).toBe("upstream llm/openai answered HTTP 401 Unauthorized");
      expect(JSON.stringify(logged)).toContain("Incorrect API key provided: sk-live-123");
    } finally {
      await a.close();
      await refusing.close();
    }
  });
});
