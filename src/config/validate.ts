import { defaultLimits, type Limits } from "../server/limits.js";
import { ConfigError, formatIssues } from "./errors.js";
import { configFile, limitKeys, type ConfigFile } from "./schema.js";
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
    },
    backends: f.backends.map(toBackend),
    telemetry: { prometheusPort: t.prometheus_port, prometheusHost: t.prometheus_host ?? "127.0.0.1" },
    log: { level: f.log?.level ?? s.log_level ?? "info", access: f.log?.access ?? false },
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
    options: b.options ?? {},
  };
}
