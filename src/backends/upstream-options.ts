import type { KindContext } from "./kind.js";
import { noopLog, type BackendLog } from "./log.js";

/** Options common to the http and genai kinds, validated, with the backend-level keys they act on. */
export interface CommonOptions {
  headers: Record<string, string>;
  maxResponseBytes: number;
  deadlineHeader: string | undefined;
  /** Failures after the request may have reached the upstream are retryable too (the backend's `idempotent`). */
  idempotent: boolean;
  /** Quote upstream error bodies to clients (the backend's `expose_upstream_errors`). */
  exposeUpstreamErrors: boolean;
  log: BackendLog;
}

/** Default for max_response_bytes: grpc-js clients refuse responses over 4 MiB anyway. */
export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

export const COMMON_KEYS = ["headers", "max_response_bytes", "deadline_header"];

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

/** Validates the options both kinds take, and joins the backend-level keys of `kind`. */
export function parseCommonOptions(o: Record<string, unknown>, at: string, kind: KindContext): CommonOptions {
  const max = o["max_response_bytes"] ?? DEFAULT_MAX_RESPONSE_BYTES;
  if (typeof max !== "number" || !Number.isInteger(max) || max < 1) {
    throw new TypeError(`${at}.max_response_bytes: expected a positive integer, got ${JSON.stringify(max)}`);
  }
  const dh = o["deadline_header"];
  if (dh !== undefined && (typeof dh !== "string" || !TOKEN.test(dh))) {
    throw new TypeError(`${at}.deadline_header: expected a header name, got ${JSON.stringify(dh)}`);
  }
  return {
    headers: parseHeaders(o["headers"], `${at}.headers`, kind.env),
    maxResponseBytes: max,
    deadlineHeader: dh?.toLowerCase(),
    idempotent: kind.idempotent ?? false,
    exposeUpstreamErrors: kind.exposeUpstreamErrors ?? false,
    log: kind.log ?? noopLog,
  };
}

export function checkKeys(o: Record<string, unknown>, keys: readonly string[], at: string, kind: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw new TypeError(`${at}.${k}: unknown option for kind "${kind}"; known: ${keys.join(", ")}`);
  }
}

export function mapping(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new TypeError(`${at}: expected a mapping, got ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}
