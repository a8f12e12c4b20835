import type { LimitOptions, OutlierOptions, RetryOptions, SchedulingOptions } from "../core/index.js";
import type { Limits } from "../server/limits.js";

/**
 * The service's configuration: a YAML or JSON file (keys in snake_case),
 * overridden by environment variables and flags, validated into a complete
 * object. Every error names the key and the value it received.
 */
export interface Config {
  server: ServerConfig;
  backends: BackendConfig[];
  telemetry: TelemetryConfig;
  log: LogConfig;
  /** Serve the live dashboard page at `/`. Default true. */
  dashboard: boolean;
  cluster: ClusterConfig;
  jobs: JobsConfig;
}

/** Background jobs (`jobs`, docs/jobs.md). */
export interface JobsConfig {
  /** How long an ended job, its result and its idempotency key are kept, ms. Default 1 h. */
  resultTtlMs: number;
  /** Most queued background jobs per backend; past it Enqueue is RESOURCE_EXHAUSTED. Default 1000. */
  maxQueued: number;
  /** Largest result kept, bytes; a larger one fails the job RESOURCE_EXHAUSTED. Default 1 MiB. */
  maxResultBytes: number;
  /** Most jobs the in-process store keeps, ended ones included. Default 10000. */
  maxJobs: number;
  /** Timeout of a job whose Enqueue sets none, ms. Default 1 h. */
  defaultTimeoutMs: number;
  /** Longest timeout an Enqueue may set, ms. Default 24 h. */
  maxTimeoutMs: number;
  /** Background jobs one replica runs at once. Default 64. */
  maxRunning: number;
  /** With Redis: a job whose runner has not renewed its claim for this long is run by another replica, ms. Default 15 s. */
  claimTimeoutMs: number;
}

/**
 * Shared state across replicas (`cluster`, DESIGN.md §11). With no Redis URL,
 * limits, pins and async jobs live in this process.
 */
export interface ClusterConfig {
  /** `redis://[user:pass@]host:port[/db]`; REDIS_URL overrides. Default: none. */
  redisUrl: string | undefined;
  /** Prefix of every key the service writes, so that several deployments can share one Redis. Default "dispatcher:". */
  keyPrefix: string;
  /** Longest wait for one Redis round trip before it counts as Redis being down, ms. Default 250. */
  redisTimeoutMs: number;
  /**
   * What limits do while Redis is unreachable: "fail_open" holds each limit in
   * this process at its local share (limit ÷ replicas seen), "fail_closed"
   * refuses work that needs a limit with UNAVAILABLE. Default "fail_open".
   */
  onRedisDown: "fail_open" | "fail_closed";
  /**
   * This replica's name, sent back as the `dispatcher-replica` response header
   * of Submit and SubmitStream (docs/replicas.md); REPLICA_ID overrides.
   * Default: none, no header.
   */
  replicaId: string | undefined;
}

/** Logging (`log`). */
export interface LogConfig {
  /** pino level: fatal, error, warn, info, debug, trace or silent. Default "info"; `server.log_level` is an alias; LOG_LEVEL overrides. */
  level: string;
  /** One log line per RPC. Default false. */
  access: boolean;
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
  /** Request and connection limits (`server.limits`); defaults in src/server/limits.ts. */
  limits: Limits;
  /** Serve gRPC server reflection. Default true: `buf curl` and grpcurl work without the .proto files. */
  reflection: boolean;
  /** Bearer-token auth; off unless a token source is set. */
  auth: AuthConfig | undefined;
  /** TLS; off (cleartext h2c + HTTP/1.1) unless both files are set. */
  tls: TlsConfig | undefined;
  /** Origins whose pages may call the service across origins (`server.cors.allowed_origins`; "*" for any). Default []: no CORS headers. */
  corsAllowedOrigins: string[];
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
  outlier: OutlierConfig | undefined;
  /**
   * The upstream may safely run a request twice. Default false: a failure
   * after the upstream response began is not retried unless this is true.
   */
  idempotent: boolean;
  /** Pass upstream error bodies to callers. Default false: callers get a message without upstream details. */
  exposeUpstreamErrors: boolean;
  /** Streaming answers: longest wait for an attempt's first chunk, and between chunks, in ms. Undefined: no limit. */
  ttftTimeoutMs: number | undefined;
  stallTimeoutMs: number | undefined;
  /** Priority tiers, tenant fairness and deadline-aware admission; unset fields take the core's defaults. */
  scheduling: SchedulingOptions;
  /** Limits of all the backend's workers together (`limits`). */
  limits: LimitOptions | undefined;
  /** Kind-specific settings, passed to the backend kind as written. */
  options: Record<string, unknown>;
}

export interface WorkerConfig {
  name?: string;
  endpoint?: string;
  maxConcurrency?: number;
  queueCapacity?: number;
  weight?: number;
  /** This endpoint's own limits (its API key's). */
  limits?: LimitOptions;
}


/**
 * The core's outlier options. `maxEjectionPercent` (most workers of a backend
 * ejected at once, as a percentage; at least one may go, never the last
 * serving; default 10, Envoy's max_ejection_percent) is spelled out here too,
 * so the config carries it whether or not the core's type declares it yet.
 */
export type OutlierConfig = OutlierOptions & { maxEjectionPercent?: number };
