import { DispatchError, type Chunk, type ChunkStream, type HandlerContext, type HandlerResult } from "../core/index.js";
import { checkStreamed, EventReader } from "./event-stream.js";
import type { BackendInstance, KindContext } from "./kind.js";
import { checkKeys, COMMON_KEYS, createUpstreams, discard, mapping, open, parseCommonOptions, release, send, type CommonOptions, type Target } from "./upstream.js";

/**
 * kind "genai": an OpenAI-compatible chat completion, `POST
 * {endpoint}/v1/chat/completions` — what OpenAI, vLLM, llama.cpp server,
 * Ollama and most gateways speak. The job's JSON payload is the request body
 * (config `defaults` beneath it, `model` from the config when absent); the
 * upstream's JSON answer is the result, its token usage in the metadata.
 * With `"stream": true` the answer streams (server-sent events): content
 * deltas as text chunks, tool-call deltas as JSON chunks, the finish reason
 * in a chunk's metadata, token usage (asked for with
 * stream_options.include_usage) in the stream's final metadata.
 */
export function genaiBackend(o: Record<string, unknown>, at: string, kind: KindContext): BackendInstance {
  const oat = `${at}.options`;
  checkKeys(o, ["model", "api_key_env", "defaults", "path", ...COMMON_KEYS], oat, "genai");
  const model = o["model"];
  if (model !== undefined && (typeof model !== "string" || model === "")) {
    throw new TypeError(`${oat}.model: expected a model name, got ${JSON.stringify(model)}`);
  }
  const defaults = o["defaults"] === undefined ? {} : mapping(o["defaults"], `${oat}.defaults`);
  const path = o["path"] ?? "/v1/chat/completions";
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new TypeError(`${oat}.path: expected a path starting with "/", got ${JSON.stringify(path)}`);
  }
  const common = parseCommonOptions(o, oat, kind);
  const keyVar = o["api_key_env"];
  if (keyVar !== undefined) {
    if (typeof keyVar !== "string" || keyVar === "") {
      throw new TypeError(`${oat}.api_key_env: expected an environment variable name, got ${JSON.stringify(keyVar)}`);
    }
    const key = kind.env[keyVar];
    if (key === undefined || key === "") throw new TypeError(`${oat}.api_key_env: environment variable ${keyVar} is not set`);
    common.headers["authorization"] = `Bearer ${key}`;
  }
  const upstreams = createUpstreams(kind.endpoints, path, at, "genai");
  return {
    tokensFor: (request) => maxTokens(request.json) ?? maxTokens(defaults),
    handler: async (request, ctx): Promise<HandlerResult | ChunkStream> => {
      const body = request.json;
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new DispatchError("invalid_argument", "json: expected a chat completion request object ({ messages: [...] })");
      }
      const req = { ...defaults, ...(body as Record<string, unknown>) };
      if (req["model"] === undefined) {
        if (model === undefined) throw new DispatchError("invalid_argument", "json.model: required (the backend's config names no model)");
        req["model"] = model;
      }
      if (req["stream"] === true) {
        const options = typeof req["stream_options"] === "object" && req["stream_options"] !== null ? req["stream_options"] : {};
        req["stream_options"] = { ...options, include_usage: true };
        return chatStream(upstreams.target(ctx), ctx, common, JSON.stringify(req));
      }
      const res = await send(upstreams.target(ctx), ctx, common, "POST", JSON.stringify(req), "application/json");
      let json: unknown;
      try {
        json = JSON.parse(res.body.toString("utf8"));
      } catch {
        throw new DispatchError("unavailable", `upstream ${ctx.workerId} answered HTTP ${res.status} with a body that is not JSON`);
      }
      return { json, metadata: usageOf(json) };
    },
    close: () => upstreams.close(),
    ambientTrace: false,
  };
}

/**
 * The chunks of a streamed chat completion. A generator, so that the
 * dispatcher's first-chunk timeout covers the whole wait for the first token
 * (connection, headers and first event), and an error status before it is a
 * failure of the attempt that may fail over.
 *
 * A stream succeeds only when it says it finished: `[DONE]` or a
 * finish_reason. An error event (`data: {"error": …}`, as OpenAI and vLLM send
 * mid-stream) or an answer that ends without either is UNAVAILABLE: a cut-off
 * completion must not read as a whole one. However the generator ends (done,
 * failed, or closed early by the dispatcher), the upstream's answer is closed:
 * an upstream that sends `[DONE]` and keeps the response open is not left
 * holding a connection (past a second's grace for its end to come, so that
 * a connection that ends normally is reused).
 */
async function* chatStream(t: Target, ctx: HandlerContext, common: CommonOptions, body: string): AsyncGenerator<Chunk, Record<string, string>> {
  const res = await open(t, ctx, common, "POST", body, "application/json");
  let finished = false;
  try {
    checkStreamed(res, ctx, common, "sse");
    const events = new EventReader(res, ctx, common);
    let final: Record<string, string> = {};
    for (let e = await events.next(); e !== undefined; e = await events.next()) {
      if (e.data === "[DONE]") {
        finished = true;
        break;
      }
      let event: unknown;
      try {
        event = JSON.parse(e.data);
      } catch {
        throw new DispatchError("unavailable", `upstream ${ctx.workerId} sent a stream event that is not JSON`);
      }
      // Not an object: no chunk in it (and nothing to read fields of).
      if (typeof event !== "object" || event === null) continue;
      const ev = event as { model?: unknown; usage?: unknown; error?: unknown; choices?: { delta?: Record<string, unknown>; finish_reason?: unknown }[] };
      if (ev.error !== undefined && ev.error !== null) throw streamError(ev.error, ctx, common);
      // Usage comes once, in the last event; every event names the model.
      if (typeof ev.usage === "object" && ev.usage !== null) final = { ...final, ...usageOf(ev) };
      else if (typeof ev.model === "string") final["model"] = ev.model;
      const choice = Array.isArray(ev.choices) ? ev.choices[0] : undefined;
      if (typeof choice !== "object" || choice === null) continue;
      const delta = choice.delta ?? {};
      const chunk: Chunk = {};
      if (typeof delta["content"] === "string" && delta["content"] !== "") chunk.text = delta["content"];
      if (delta["tool_calls"] !== undefined) chunk.json = { tool_calls: delta["tool_calls"] };
      if (typeof choice.finish_reason === "string") {
        chunk.metadata = { finish_reason: choice.finish_reason };
        final["finish_reason"] = choice.finish_reason;
        finished = true;
      }
      // A delta with only a role, or nothing, is not a chunk: the first chunk is the first content.
      if (chunk.text !== undefined || chunk.json !== undefined || chunk.metadata !== undefined) yield chunk;
    }
    if (!finished) {
      const message = `upstream ${ctx.workerId} ended its stream before it finished (no finish_reason, no [DONE])`;
      common.log.warn({ worker: ctx.workerId, endpoint: ctx.endpoint, attempt: ctx.attempt }, message);
      throw new DispatchError("unavailable", message, { retryable: common.idempotent });
    }
    return final;
  } finally {
    // Finished: let the answer end on its own, so its connection is reused. Anything else: close it now.
    if (finished) release(res.body);
    else discard(res.body);
  }
}

/** An error event in a stream: logged whole; quoted to the client (its message, truncated) only where the backend exposes upstream errors. */
function streamError(error: unknown, ctx: HandlerContext, common: CommonOptions): DispatchError {
  const raw = typeof error === "string" ? error : (error as { message?: unknown }).message;
  let text = typeof raw === "string" ? raw.replace(/\s+/g, " ").trim() : "";
  if (text.length > 512) text = `${text.slice(0, 512)}…`;
  const line = `upstream ${ctx.workerId} sent an error in its stream`;
  common.log.warn({ worker: ctx.workerId, endpoint: ctx.endpoint, attempt: ctx.attempt, error }, line);
  return new DispatchError("unavailable", common.exposeUpstreamErrors && text !== "" ? `${line}: ${text}` : line, { retryable: common.idempotent });
}

/** Token usage and model of an OpenAI-style answer, as response metadata; cached_tokens shows what affinity saves. */
function usageOf(answer: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof answer !== "object" || answer === null) return out;
  const a = answer as { model?: unknown; usage?: Record<string, unknown> };
  if (typeof a.model === "string") out["model"] = a.model;
  const u = a.usage;
  if (typeof u === "object" && u !== null) {
    for (const k of ["prompt_tokens", "completion_tokens", "total_tokens"]) {
      if (typeof u[k] === "number") out[k] = String(u[k]);
    }
    const cached = (u["prompt_tokens_details"] as { cached_tokens?: unknown } | undefined)?.cached_tokens;
    if (typeof cached === "number") out["cached_tokens"] = String(cached);
  }
  return out;
}

/**
 * The completion tokens a chat request may use (max_completion_tokens, or the
 * older max_tokens): what token limits reserve before the call; its usage
 * settles the charge after it.
 */
function maxTokens(body: unknown): number | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const b = body as Record<string, unknown>;
  const v = b["max_completion_tokens"] ?? b["max_tokens"];
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}
