import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import type { OutlierOptions, RetryOptions } from "./core/index.js";
import { parseDuration } from "./duration.js";
import { defaultLimits, type Limits } from "./server/limits.js";

/**
 * The service's configuration: a YAML or JSON file (keys in snake_case),
 * overridden by environment variables and flags, validated into a complete
 * object. Every error names the key and the value it received.
 */
export interface Config {
  server: ServerConfig;
  backends: BackendConfig[];
  telemetry: TelemetryConfig;
}

/** Metrics endpoint. Tracing is configured by the standard OTEL_* environment variables, not here. */
export interface TelemetryConfig {
  /** Port of the Prometheus scrape endpoint (HTTP/1.1, GET /metrics). Default: none, no endpoint. 0 picks a free port. */
  prometheusPort: number | undefined;
  /** Interface of the scrape endpoint. Default 127.0.0.1, like server.host. */
  prometheusHost: string;
}

export interface ServerConfig {
  /** Default 127.0.0.1: exposing the service is a decision, not a default. */
  host: string;
  /** Default 8080. 0 picks a free port. */
  port: number;
  /** How long SIGTERM lets queued and running jobs finish, in ms. Default 30 s. */
  shutdownGraceMs: number;
  /** pino level. Default "info". */
  logLevel: string;
  /** Request and connection limits (`server.limits`); defaults in src/server/limits.ts. */
  limits: Limits;
  /** Serve gRPC server reflection. Default true: `buf curl` and grpcurl work without the .proto files. */
  reflection: boolean;
  /** Bearer-token auth; off unless a token source is set. */
  auth: AuthConfig | undefined;
  /** TLS; off (cleartext h2c + HTTP/1.1) unless both files are set. */
  tls: TlsConfig | undefined;
}

export interface AuthConfig {
  /** A file of tokens, one per line (# comments). */
  tokensFile: string | undefined;
  /** The name of an environment variable holding tokens, separated by commas or spaces. */
  tokensEnv: string | undefined;
}

export interface TlsConfig {
  /** PEM certificate chain. */
  certFile: string;
  /** PEM private key. */
  keyFile: string;
}

export interface BackendConfig {
  name: string;
  kind: string;
  workers: number | WorkerConfig[];
  maxConcurrency: number | undefined;
  queueCapacity: number | undefined;
  timeoutMs: number | undefined;
  policy: string | undefined;
  affinity: { ttlMs: number | undefined; maxPins: number | undefined; spillLoadFactor: number | undefined };
  /** Undefined: no retries. Unset fields take the core's defaults. */
  retry: RetryOptions | undefined;
  /** Undefined: the core's default (on, 5 failures). */
  outlier: OutlierOptions | undefined;
  /** Kind-specific settings, passed to the backend kind as written. */
  options: Record<string, unknown>;
  idempotent?: boolean;
  exposeUpstreamErrors?: boolean;
}

export interface WorkerConfig {
  name?: string;
  endpoint?: string;
  maxConcurrency?: number;
  queueCapacity?: number;
  weight?: number;
}

/** What `npm start` serves with no config file: an echo backend with 4 workers. */
export const defaultConfigFile = {
  backends: [{ name: "echo", kind: "echo", workers: 4, max_concurrency: 16, queue_capacity: 128 }],
};

export interface Overrides {
  host?: string;
  port?: number;
}

export async function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv, flags: Overrides): Promise<Config> {
  let raw: unknown = defaultConfigFile;
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      throw new TypeError(`config file ${file}: ${(e as Error).message}`);
    }
    try {
      raw = extname(file) === ".json" ? JSON.parse(text) : parseYaml(text);
    } catch (e) {
      throw new TypeError(`config file ${file}: not valid ${extname(file) === ".json" ? "JSON" : "YAML"}: ${(e as Error).message}`);
    }
  }
  const config = validateConfig(raw);
  if (env["HOST"]) config.server.host = env["HOST"];
  if (env["PORT"]) config.server.port = port(Number(env["PORT"]), "PORT");
  if (env["LOG_LEVEL"]) config.server.logLevel = env["LOG_LEVEL"];
  if (env["PROMETHEUS_PORT"]) config.telemetry.prometheusPort = port(Number(env["PROMETHEUS_PORT"]), "PROMETHEUS_PORT");
  if (env["SHUTDOWN_GRACE"]) config.server.shutdownGraceMs = parseDuration(env["SHUTDOWN_GRACE"], "SHUTDOWN_GRACE");
  if (env["REFLECTION"]) config.server.reflection = bool(env["REFLECTION"], "REFLECTION");
  if (env["AUTH_TOKENS_FILE"]) config.server.auth = { tokensFile: env["AUTH_TOKENS_FILE"], tokensEnv: config.server.auth?.tokensEnv };
  if (env["TLS_CERT_FILE"] || env["TLS_KEY_FILE"]) {
    config.server.tls = tls({ cert_file: env["TLS_CERT_FILE"], key_file: env["TLS_KEY_FILE"] }, "TLS_CERT_FILE/TLS_KEY_FILE");
  }
  if (flags.host !== undefined) config.server.host = flags.host;
  if (flags.port !== undefined) config.server.port = port(flags.port, "--port");
  return config;
}

export function validateConfig(raw: unknown): Config {
  const top = object(raw, "config");
  known(top, ["server", "backends", "telemetry"], "config");
  const s = top["server"] === undefined ? {} : object(top["server"], "server");
  known(s, ["host", "port", "shutdown_grace", "log_level", "limits", "reflection", "auth", "tls"], "server");
  const server: ServerConfig = {
    host: s["host"] === undefined ? "127.0.0.1" : string(s["host"], "server.host"),
    port: s["port"] === undefined ? 8080 : port(s["port"], "server.port"),
    shutdownGraceMs: s["shutdown_grace"] === undefined ? 30_000 : parseDuration(s["shutdown_grace"], "server.shutdown_grace"),
    logLevel: s["log_level"] === undefined ? "info" : string(s["log_level"], "server.log_level"),
    limits: limits(s["limits"]),
    reflection: s["reflection"] === undefined ? true : bool(s["reflection"], "server.reflection"),
    auth: s["auth"] === undefined ? undefined : auth(s["auth"]),
    tls: s["tls"] === undefined ? undefined : tls(s["tls"], "server.tls"),
  };
  if (!Array.isArray(top["backends"]) || top["backends"].length === 0) {
    throw new TypeError(`backends: expected a non-empty list, got ${JSON.stringify(top["backends"])}`);
  }
  const names = new Set<string>();
  const backends = top["backends"].map((b, i) => {
    const at = `backends[${i}]`;
    const o = object(b, at);
    known(o, ["name", "kind", "workers", "endpoints", "max_concurrency", "queue_capacity", "timeout", "policy", "affinity", "retry", "outlier", "options"], at);
    const name = string(o["name"], `${at}.name`);
    if (names.has(name)) throw new TypeError(`${at}.name: duplicate backend name "${name}"`);
    names.add(name);
    const aff = o["affinity"] === undefined ? {} : object(o["affinity"], `${at}.affinity`);
    known(aff, ["ttl", "max_pins", "spill_load_factor"], `${at}.affinity`);
    let workers: number | WorkerConfig[];
    if (o["endpoints"] !== undefined) {
      if (o["workers"] !== undefined) throw new TypeError(`${at}: set either workers or endpoints, not both`);
      if (!Array.isArray(o["endpoints"]) || o["endpoints"].length === 0) {
        throw new TypeError(`${at}.endpoints: expected a non-empty list, got ${JSON.stringify(o["endpoints"])}`);
      }
      workers = o["endpoints"].map((e, j) => endpoint(e, `${at}.endpoints[${j}]`));
    } else {
      workers = o["workers"] === undefined ? 1 : int(o["workers"], `${at}.workers`);
    }
    return {
      name,
      kind: string(o["kind"], `${at}.kind`),
      workers,
      maxConcurrency: optionalInt(o["max_concurrency"], `${at}.max_concurrency`),
      queueCapacity: optionalInt(o["queue_capacity"], `${at}.queue_capacity`),
      timeoutMs: o["timeout"] === undefined ? undefined : parseDuration(o["timeout"], `${at}.timeout`),
      policy: o["policy"] === undefined ? undefined : string(o["policy"], `${at}.policy`),
      affinity: {
        ttlMs: aff["ttl"] === undefined ? undefined : parseDuration(aff["ttl"], `${at}.affinity.ttl`),
        maxPins: optionalInt(aff["max_pins"], `${at}.affinity.max_pins`),
        spillLoadFactor: optionalNumber(aff["spill_load_factor"], `${at}.affinity.spill_load_factor`),
      },
      retry: o["retry"] === undefined ? undefined : retry(o["retry"], `${at}.retry`),
      outlier: o["outlier"] === undefined ? undefined : outlier(o["outlier"], `${at}.outlier`),
      options: o["options"] === undefined ? {} : object(o["options"], `${at}.options`),
    } satisfies BackendConfig;
  });
  const t = top["telemetry"] === undefined ? {} : object(top["telemetry"], "telemetry");
  known(t, ["prometheus_port", "prometheus_host"], "telemetry");
  const telemetry: TelemetryConfig = {
    prometheusPort: t["prometheus_port"] === undefined ? undefined : port(t["prometheus_port"], "telemetry.prometheus_port"),
    prometheusHost: t["prometheus_host"] === undefined ? "127.0.0.1" : string(t["prometheus_host"], "telemetry.prometheus_host"),
  };
  return { server, backends, telemetry };
}

function retry(v: unknown, at: string): RetryOptions {
  const o = object(v, at);
  known(o, ["max_attempts", "initial_backoff", "max_backoff", "multiplier", "budget_percent", "min_retry_concurrency"], at);
  const m = o["multiplier"];
  if (m !== undefined && !(typeof m === "number" && m >= 1)) throw new TypeError(`${at}.multiplier: expected a number ≥ 1, got ${JSON.stringify(m)}`);
  const b = o["budget_percent"];
  if (b !== undefined && !(typeof b === "number" && b >= 0 && b <= 100)) {
    throw new TypeError(`${at}.budget_percent: expected a percentage 0-100, got ${JSON.stringify(b)}`);
  }
  return {
    maxAttempts: optionalInt(o["max_attempts"], `${at}.max_attempts`),
    initialBackoffMs: optionalDuration(o["initial_backoff"], `${at}.initial_backoff`),
    maxBackoffMs: optionalDuration(o["max_backoff"], `${at}.max_backoff`),
    multiplier: optionalNumber(o["multiplier"], `${at}.multiplier`),
    budgetPercent: optionalNumber(o["budget_percent"], `${at}.budget_percent`),
    minRetryConcurrency: optionalInt(o["min_retry_concurrency"], `${at}.min_retry_concurrency`),
  };
}

function outlier(v: unknown, at: string): OutlierOptions {
  const o = object(v, at);
  known(o, ["consecutive_failures", "base_ejection", "max_ejection"], at);
  return {
    consecutiveFailures: optionalInt(o["consecutive_failures"], `${at}.consecutive_failures`),
    baseEjectionMs: optionalDuration(o["base_ejection"], `${at}.base_ejection`),
    maxEjectionMs: optionalDuration(o["max_ejection"], `${at}.max_ejection`),
  };
}

function optionalDuration(v: unknown, what: string): number | undefined {
  return v === undefined ? undefined : parseDuration(v, what);
}

function optionalNumber(v: unknown, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new TypeError(`${what}: expected a number ≥ 0, got ${JSON.stringify(v)}`);
  return v;
}

function limits(v: unknown): Limits {
  const out = { ...defaultLimits };
  if (v === undefined) return out;
  const o = object(v, "server.limits");
  const sizes = {
    max_request_bytes: "maxRequestBytes",
    max_session_id_length: "maxSessionIdLength",
    max_metadata_entries: "maxMetadataEntries",
    max_metadata_size: "maxMetadataSize",
    max_concurrent_streams: "maxConcurrentStreams",
    max_metrics_subscribers: "maxMetricsSubscribers",
    max_inflight_calls: "maxInflightCalls",
    max_decoding_bytes: "maxDecodingBytes",
    max_json_nodes: "maxJsonNodes",
    max_json_depth: "maxJsonDepth",
    max_metrics_streams_per_connection: "maxMetricsStreamsPerConnection",
  } as const;
  const durations = {
    headers_timeout: "headersTimeoutMs",
    body_idle_timeout: "bodyIdleTimeoutMs",
    idle_timeout: "idleTimeoutMs",
    goaway_grace: "goawayGraceMs",
  } as const;
  known(o, [...Object.keys(sizes), ...Object.keys(durations), "max_deadline"], "server.limits");
  for (const [key, field] of Object.entries(durations)) {
    if (o[key] !== undefined) out[field] = parseDuration(o[key], `server.limits.${key}`);
  }
  for (const [key, field] of Object.entries(sizes)) {
    if (o[key] === undefined) continue;
    const n = int(o[key], `server.limits.${key}`);
    // A limit of 0 would refuse everything; max_session_id_length 0 is allowed (it turns affinity off for clients).
    if (n === 0 && key !== "max_session_id_length") throw new TypeError(`server.limits.${key}: expected a positive integer, got 0`);
    out[field] = n;
  }
  if (o["max_deadline"] !== undefined) out.maxDeadlineMs = parseDuration(o["max_deadline"], "server.limits.max_deadline");
  return out;
}

function auth(v: unknown): AuthConfig {
  const o = object(v, "server.auth");
  known(o, ["tokens_file", "tokens_env"], "server.auth");
  const a: AuthConfig = {
    tokensFile: o["tokens_file"] === undefined ? undefined : string(o["tokens_file"], "server.auth.tokens_file"),
    tokensEnv: o["tokens_env"] === undefined ? undefined : string(o["tokens_env"], "server.auth.tokens_env"),
  };
  if (a.tokensFile === undefined && a.tokensEnv === undefined) {
    throw new TypeError("server.auth: set tokens_file or tokens_env (or remove server.auth to turn auth off)");
  }
  return a;
}

function tls(v: unknown, what: string): TlsConfig {
  const o = object(v, what);
  known(o, ["cert_file", "key_file"], what);
  return { certFile: string(o["cert_file"], `${what}.cert_file`), keyFile: string(o["key_file"], `${what}.key_file`) };
}

function bool(v: unknown, what: string): boolean {
  if (v === true || v === "true" || v === "1") return true;
  if (v === false || v === "false" || v === "0") return false;
  throw new TypeError(`${what}: expected true or false, got ${JSON.stringify(v)}`);
}

function endpoint(v: unknown, at: string): WorkerConfig {
  if (typeof v === "string") return { endpoint: v };
  const o = object(v, at);
  known(o, ["url", "name", "max_concurrency", "queue_capacity", "weight"], at);
  const w: WorkerConfig = { endpoint: string(o["url"], `${at}.url`) };
  if (o["name"] !== undefined) w.name = string(o["name"], `${at}.name`);
  if (o["max_concurrency"] !== undefined) w.maxConcurrency = int(o["max_concurrency"], `${at}.max_concurrency`);
  if (o["queue_capacity"] !== undefined) w.queueCapacity = int(o["queue_capacity"], `${at}.queue_capacity`);
  if (o["weight"] !== undefined) {
    if (typeof o["weight"] !== "number" || !(o["weight"] > 0)) throw new TypeError(`${at}.weight: expected a positive number, got ${JSON.stringify(o["weight"])}`);
    w.weight = o["weight"];
  }
  return w;
}

function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new TypeError(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}

function known(o: Record<string, unknown>, keys: string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw new TypeError(`${what}.${k}: unknown key; known: ${keys.join(", ")}`);
  }
}

function string(v: unknown, what: string): string {
  if (typeof v !== "string" || v === "") throw new TypeError(`${what}: expected a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function int(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new TypeError(`${what}: expected an integer ≥ 0, got ${JSON.stringify(v)}`);
  return v;
}

function optionalInt(v: unknown, what: string): number | undefined {
  return v === undefined ? undefined : int(v, what);
}

function port(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 65535) {
    throw new TypeError(`${what}: expected a port number 0-65535, got ${JSON.stringify(v)}`);
  }
  return v;
}
