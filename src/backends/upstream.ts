import { Pool } from "undici";
import { DispatchError, type ErrorCode, type HandlerContext } from "../core/index.js";

/**
 * What the http and genai backends share: one keep-alive connection pool per
 * endpoint, configured headers (secrets from the environment), and the
 * mapping of upstream answers and transport failures to DispatchErrors.
 */

/** Where one worker's requests go, fixed by the config: no request field reaches the host or path. */
export interface Target {
  pool: Pool;
  /** Path and query of the endpoint URL joined with the kind's path. */
  path: string;
}

export interface Upstreams {
  /** The target of a worker's endpoint; throws INTERNAL if the worker has none (a config error caught at start). */
  target(ctx: HandlerContext): Target;
  close(): Promise<void>;
}

/** Options common to the http and genai kinds, validated. */
export interface CommonOptions {
  headers: Record<string, string>;
  maxResponseBytes: number;
  deadlineHeader: string | undefined;
}

/** Default for max_response_bytes: grpc-js clients refuse responses over 4 MiB anyway. */
export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** Most characters of an upstream's error body quoted in the error message. */
const ERROR_BODY_CHARS = 512;

/** One pool per endpoint origin; created at start, connecting on first use. */
export function createUpstreams(endpoints: readonly string[], path: string, at: string, kind: string): Upstreams {
  if (endpoints.length === 0) {
    throw new TypeError(`${at}.endpoints: required for kind "${kind}" (one worker per upstream URL)`);
  }
  const pools = new Map<string, Pool>();
  const targets = new Map<string, Target>();
  for (const [i, raw] of endpoints.entries()) {
    const where = `${at}.endpoints[${i}]`;
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new TypeError(`${where}: expected an http:// or https:// URL, got ${JSON.stringify(raw)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`${where}: expected an http:// or https:// URL, got ${JSON.stringify(raw)}`);
    }
    if (url.username !== "" || url.password !== "") {
      throw new TypeError(`${where}: credentials in the URL are not allowed; use options.headers with { env: VAR }`);
    }
    let pool = pools.get(url.origin);
    if (pool === undefined) {
      pool = new Pool(url.origin, { keepAliveTimeout: 30_000 });
      pools.set(url.origin, pool);
    }
    const base = url.pathname.endsWith("/") ? url.pathname.slice(0, -1) : url.pathname;
    targets.set(raw, { pool, path: `${base}${path}${url.search}` || "/" });
  }
  return {
    target(ctx) {
      const t = ctx.endpoint === undefined ? undefined : targets.get(ctx.endpoint);
      if (t === undefined) throw new DispatchError("internal", `worker ${ctx.workerId} has no configured endpoint`);
      return t;
    },
    async close() {
      await Promise.allSettled([...pools.values()].map((p) => p.close()));
    },
  };
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers the transport owns. */
const RESERVED = new Set(["host", "content-length", "connection", "transfer-encoding", "keep-alive", "upgrade", "te", "trailer"]);
/** Header names whose values are credentials: they must come from the environment, never from the config file. */
const SECRET = /auth|token|secret|key|cookie|password|credential/i;

/**
 * `headers:` maps a header name to a literal value, or to `{ env: VAR,
 * prefix?: "Bearer " }` read from the environment at start. Credential-like
 * names refuse literals, so a secret never sits in a config file.
 */
export function parseHeaders(raw: unknown, at: string, env: NodeJS.ProcessEnv): Record<string, string> {
  if (raw === undefined) return {};
  const o = mapping(raw, at);
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(o)) {
    const where = `${at}.${name}`;
    if (!TOKEN.test(name)) throw new TypeError(`${where}: not a valid header name`);
    if (RESERVED.has(name.toLowerCase())) throw new TypeError(`${where}: set by the transport; cannot be configured`);
    let value: string;
    if (typeof v === "string") {
      if (SECRET.test(name)) {
        throw new TypeError(`${where}: looks like a credential; take it from the environment: { env: VAR_NAME, prefix: "Bearer " }`);
      }
      value = v;
    } else {
      const s = mapping(v, where);
      for (const k of Object.keys(s)) {
        if (k !== "env" && k !== "prefix") throw new TypeError(`${where}.${k}: unknown key; known: env, prefix`);
      }
      const varName = s["env"];
      if (typeof varName !== "string" || varName === "") throw new TypeError(`${where}.env: expected an environment variable name, got ${JSON.stringify(varName)}`);
      const prefix = s["prefix"] ?? "";
      if (typeof prefix !== "string") throw new TypeError(`${where}.prefix: expected a string, got ${JSON.stringify(prefix)}`);
      const secret = env[varName];
      if (secret === undefined || secret === "") throw new TypeError(`${where}.env: environment variable ${varName} is not set`);
      value = prefix + secret;
    }
    if (/[\r\n\0]/.test(value)) throw new TypeError(`${where}: the value contains a line break or NUL`);
    out[name.toLowerCase()] = value;
  }
  return out;
}

/** Validates the options both kinds take; returns them and the keys it read. */
export function parseCommonOptions(o: Record<string, unknown>, at: string, env: NodeJS.ProcessEnv): CommonOptions {
  const max = o["max_response_bytes"] ?? DEFAULT_MAX_RESPONSE_BYTES;
  if (typeof max !== "number" || !Number.isInteger(max) || max < 1) {
    throw new TypeError(`${at}.max_response_bytes: expected a positive integer, got ${JSON.stringify(max)}`);
  }
  const dh = o["deadline_header"];
  if (dh !== undefined && (typeof dh !== "string" || !TOKEN.test(dh))) {
    throw new TypeError(`${at}.deadline_header: expected a header name, got ${JSON.stringify(dh)}`);
  }
  return { headers: parseHeaders(o["headers"], `${at}.headers`, env), maxResponseBytes: max, deadlineHeader: dh?.toLowerCase() };
}

export const COMMON_KEYS = ["headers", "max_response_bytes", "deadline_header"];

export function checkKeys(o: Record<string, unknown>, keys: readonly string[], at: string, kind: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw new TypeError(`${at}.${k}: unknown option for kind "${kind}"; known: ${keys.join(", ")}`);
  }
}

export function mapping(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new TypeError(`${at}: expected a mapping, got ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}

export interface UpstreamResponse {
  status: number;
  contentType: string;
  body: Buffer;
}

/**
 * Sends one request to `t` and reads the whole answer (bounded). The job's
 * signal aborts it; its deadline bounds the wait for headers and body, and
 * is announced in `deadline_header` when configured. Rejects with a
 * DispatchError for transport failures and for non-2xx answers.
 */
export async function send(
  t: Target,
  ctx: HandlerContext,
  common: CommonOptions,
  method: string,
  body: Uint8Array | string,
  contentType: string,
): Promise<UpstreamResponse> {
  const headers: Record<string, string> = { ...common.headers, ...ctx.traceHeaders(), "content-type": contentType };
  // 0 disables undici's own timers: the job's signal (backend timeout, deadline) is then the bound.
  let timeout = 0;
  if (ctx.deadline !== undefined) {
    timeout = Math.max(1, Math.ceil(ctx.deadline - Date.now()));
    if (common.deadlineHeader !== undefined) headers[common.deadlineHeader] = String(timeout);
  }
  let res;
  try {
    res = await t.pool.request({
      path: t.path,
      method: method as "POST",
      headers,
      body,
      signal: ctx.signal,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
  } catch (e) {
    throw transportError(e, ctx);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > common.maxResponseBytes) {
        res.body.destroy();
        throw new DispatchError("resource_exhausted", `upstream ${ctx.workerId} sent more than max_response_bytes (${common.maxResponseBytes})`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    throw e instanceof DispatchError ? e : transportError(e, ctx);
  }
  const out: UpstreamResponse = {
    status: res.statusCode,
    contentType: String(res.headers["content-type"] ?? ""),
    body: Buffer.concat(chunks, size),
  };
  if (out.status < 200 || out.status > 299) throw statusError(out, res.headers["retry-after"], ctx.workerId);
  return out;
}

/** Upstream HTTP status → gRPC code (issue 3's table); 429 and 5xx are retryable. */
export function codeOfStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
    case 422:
      return "invalid_argument";
    case 401:
    case 403:
      // Our configured credentials were refused, not the caller's: PERMISSION_DENIED, not UNAUTHENTICATED.
      return "permission_denied";
    case 404:
      return "not_found";
    case 408:
    case 504:
      return "deadline_exceeded";
    case 429:
      return "resource_exhausted";
  }
  if (status >= 500) return "unavailable";
  // Other 4xx: the upstream understood and refused; 1xx/3xx: redirects are not followed (the config fixes the URL).
  return status >= 400 ? "failed_precondition" : "unknown";
}

function statusError(r: UpstreamResponse, retryAfter: string | string[] | undefined, workerId: string): DispatchError {
  const code = codeOfStatus(r.status);
  const retryable = r.status === 429 || (r.status >= 500 && code === "unavailable");
  let text = r.body.toString("utf8", 0, Math.min(r.body.length, ERROR_BODY_CHARS * 4)).replace(/\s+/g, " ").trim();
  if (text.length > ERROR_BODY_CHARS) text = `${text.slice(0, ERROR_BODY_CHARS)}…`;
  return new DispatchError(code, `upstream ${workerId} answered HTTP ${r.status}${text === "" ? "" : `: ${text}`}`, {
    retryable,
    retryAfterMs: retryable ? parseRetryAfter(retryAfter) : undefined,
  });
}

/** Retry-After: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), as ms; undefined when absent or unreadable. */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || s.trim() === "") return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const TIMEOUTS = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

/** A failure before or while reading the answer: timeouts → DEADLINE_EXCEEDED; reset, refused, … → UNAVAILABLE (retryable). */
function transportError(e: unknown, ctx: HandlerContext): DispatchError {
  if (ctx.signal.aborted) return DispatchError.from(ctx.signal.reason, "cancelled");
  const code = (e as { code?: unknown })?.code;
  const message = e instanceof Error ? e.message : String(e);
  if (typeof code === "string" && TIMEOUTS.has(code)) {
    return new DispatchError("deadline_exceeded", `upstream ${ctx.workerId} did not answer before the deadline`, { cause: e });
  }
  if (code === "UND_ERR_INVALID_ARG" || code === "UND_ERR_NOT_SUPPORTED") {
    return new DispatchError("internal", `request to upstream ${ctx.workerId} could not be built: ${message}`, { cause: e });
  }
  return new DispatchError("unavailable", `upstream ${ctx.workerId} unreachable: ${typeof code === "string" ? `${code} ` : ""}${message}`, {
    retryable: true,
    cause: e,
  });
}
