import { DispatchError, type HandlerResult } from "../core/index.js";
import type { BackendInstance, KindContext } from "./kind.js";
import { checkKeys, COMMON_KEYS, createUpstreams, mapping, parseCommonOptions, send } from "./upstream.js";

/**
 * kind "genai": an OpenAI-compatible chat completion, `POST
 * {endpoint}/v1/chat/completions` — what OpenAI, vLLM, llama.cpp server,
 * Ollama and most gateways speak. The job's JSON payload is the request body
 * (config `defaults` beneath it, `model` from the config when absent); the
 * upstream's JSON answer is the result, its token usage in the metadata.
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
    handler: async (request, ctx): Promise<HandlerResult> => {
      const body = request.json;
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new DispatchError("invalid_argument", "json: expected a chat completion request object ({ messages: [...] })");
      }
      const req = { ...defaults, ...(body as Record<string, unknown>) };
      if (req["stream"] === true) throw new DispatchError("invalid_argument", "json.stream: streaming is not supported; Submit returns one answer");
      if (req["model"] === undefined) {
        if (model === undefined) throw new DispatchError("invalid_argument", "json.model: required (the backend's config names no model)");
        req["model"] = model;
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
  };
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
