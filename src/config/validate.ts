import { defaultLimits, type Limits } from "../server/limits.js";
import { ConfigError, formatIssues } from "./errors.js";
import { configFile, limitKeys, type ConfigFile, type LimitsFile } from "./schema.js";
import type { LimitOptions, SchedulingOptions } from "../core/index.js";
import type { BackendConfig, Config, WorkerConfig } from "./types.js";

/**
 * A config as written (snake_case, from YAML or JSON) → a complete Config
 * with defaults. Throws a ConfigError listing every problem.
 */
export function validateConfig(raw: unknown): Config {
  const r = configFile.safeParse(raw, { reportInput: true });
  if (!r.success) throw new ConfigError(formatIssues(r.error.issues));
  return toConfig(r.data);
}

function toConfig(f: ConfigFile): Config {
  const s = f.server ?? {};
  const t = f.telemetry ?? {};
  return {
    server: {
      host: s.host ?? "127.0.0.1",
      port: s.port ?? 8080,
      shutdownGraceMs: s.shutdown_grace ?? 30_000,
      limits: toLimits(s.limits ?? {}),
      reflection: s.reflection ?? true,
      auth: s.auth === undefined ? undefined : { tokensFile: s.auth.tokens_file, tokensEnv: s.auth.tokens_env },
      tls: s.tls === undefined ? undefined : { certFile: s.tls.cert_file, keyFile: s.tls.key_file },
      corsAllowedOrigins: s.cors?.allowed_origins ?? [],
    },
    backends: f.backends.map(toBackend),
    telemetry: { prometheusPort: t.prometheus_port, prometheusHost: t.prometheus_host ?? "127.0.0.1" },
    log: { level: f.log?.level ?? s.log_level ?? "info", access: f.log?.access ?? false },
    dashboard: f.dashboard ?? true,
    jobs: {
      resultTtlMs: f.jobs?.result_ttl ?? 3_600_000,
      maxQueued: f.jobs?.max_queued ?? 1_000,
      maxResultBytes: f.jobs?.max_result_bytes ?? 1024 * 1024,
      maxJobs: f.jobs?.max_jobs ?? 10_000,
      defaultTimeoutMs: f.jobs?.default_timeout ?? 3_600_000,
      maxTimeoutMs: f.jobs?.max_timeout ?? 86_400_000,
      maxRunning: f.jobs?.max_running ?? 64,
      claimTimeoutMs: f.jobs?.claim_timeout ?? 15_000,
    },
    cluster: {
      redisUrl: f.cluster?.redis_url,
      keyPrefix: f.cluster?.key_prefix ?? "dispatcher:",
      redisTimeoutMs: f.cluster?.redis_timeout ?? 250,
      onRedisDown: f.cluster?.on_redis_down ?? "fail_open",
      replicaId: f.cluster?.replica_id,
    },
  };
}

function toLimits(l: Partial<Record<keyof typeof limitKeys, number>>): Limits {
  const out = { ...defaultLimits };
  for (const [key, { field }] of Object.entries(limitKeys)) {
    const v = l[key as keyof typeof limitKeys];
    if (v !== undefined) out[field] = v;
  }
  return out;
}

function toBackend(b: ConfigFile["backends"][number]): BackendConfig {
  const workers: number | WorkerConfig[] =
    b.endpoints === undefined
      ? (b.workers ?? 1)
      : b.endpoints.map((e) => {
          const w: WorkerConfig = { endpoint: e.url };
          if (e.name !== undefined) w.name = e.name;
          if (e.max_concurrency !== undefined) w.maxConcurrency = e.max_concurrency;
          if (e.queue_capacity !== undefined) w.queueCapacity = e.queue_capacity;
          if (e.weight !== undefined) w.weight = e.weight;
          if (e.limits !== undefined) w.limits = toLimitOptions(e.limits);
          return w;
        });
  const r = b.retry;
  const o = b.outlier;
  return {
    name: b.name,
    kind: b.kind,
    workers,
    maxConcurrency: b.max_concurrency,
    queueCapacity: b.queue_capacity,
    timeoutMs: b.timeout,
    policy: b.policy,
    affinity: { ttlMs: b.affinity?.ttl, maxPins: b.affinity?.max_pins, spillLoadFactor: b.affinity?.spill_load_factor },
    retry:
      r === undefined
        ? undefined
        : {
            maxAttempts: r.max_attempts,
            initialBackoffMs: r.initial_backoff,
            maxBackoffMs: r.max_backoff,
            multiplier: r.multiplier,
            budgetPercent: r.budget_percent,
            minRetryConcurrency: r.min_retry_concurrency,
          },
    outlier:
      o === undefined
        ? undefined
        : {
            consecutiveFailures: o.consecutive_failures,
            baseEjectionMs: o.base_ejection,
            maxEjectionMs: o.max_ejection,
            // Only when set: unset takes the core's default.
            ...(o.max_ejection_percent === undefined ? {} : { maxEjectionPercent: o.max_ejection_percent }),
          },
    idempotent: b.idempotent ?? false,
    exposeUpstreamErrors: b.expose_upstream_errors ?? false,
    ttftTimeoutMs: b.ttft_timeout,
    stallTimeoutMs: b.stall_timeout,
    scheduling: scheduling(b.scheduling),
    limits: b.limits === undefined ? undefined : toLimitOptions(b.limits),
    options: b.options ?? {},
  };
}

/** `limits` → the core's LimitOptions, only the keys that were set. */
function toLimitOptions(l: LimitsFile): LimitOptions {
  const out: LimitOptions = {};
  if (l.requests_per_minute !== undefined) out.requestsPerMinute = l.requests_per_minute;
  if (l.tokens_per_minute !== undefined) out.tokensPerMinute = l.tokens_per_minute;
  if (l.max_concurrency !== undefined) out.maxConcurrency = l.max_concurrency;
  if (l.window !== undefined) out.windowMs = l.window;
  if (l.token_estimate !== undefined) out.tokenEstimate = l.token_estimate;
  if (l.adaptive_concurrency !== undefined) out.adaptiveConcurrency = l.adaptive_concurrency;
  return out;
}

/** `scheduling` → the core's SchedulingOptions, only the keys that were set (the rest take the core's defaults). */
function scheduling(s: ConfigFile["backends"][number]["scheduling"]): SchedulingOptions {
  if (s === undefined) return {};
  const out: SchedulingOptions = {};
  if (s.priority_levels !== undefined) out.priorityLevels = s.priority_levels;
  if (s.default_priority !== undefined) out.defaultPriority = s.default_priority;
  if (s.aging !== undefined) out.agingMs = s.aging;
  if (s.tenant_weights !== undefined) out.tenantWeights = s.tenant_weights;
  if (s.default_tenant_weight !== undefined) out.defaultTenantWeight = s.default_tenant_weight;
  if (s.tenant_queue_share !== undefined) out.tenantQueueShare = s.tenant_queue_share;
  if (s.tenant_from_metadata !== undefined) out.tenantMetadataKey = s.tenant_from_metadata;
  if (s.deadline_aware !== undefined) out.deadlineAware = s.deadline_aware;
  if (s.displace !== undefined) out.displace = s.displace;
  return out;
}
