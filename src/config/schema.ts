import * as z from "zod";
import { policyNames } from "../core/policy.js";
import type { Limits } from "../server/limits.js";
import { bool, duration, int, logLevel, mapping, nonEmptyString, number, port, table } from "./fields.js";

/**
 * The config file's schema, key by key as the user writes it (snake_case).
 * Its rules are at least as strict as the core's validateBackendOptions, so
 * that a file that passes here never fails when the dispatcher is built;
 * test/config-property.test.ts holds the two together on random configs.
 */

/** The core's worker and backend name rule (src/core/options.ts NAME). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NAME_RULE = `expected letters, digits, ".", "_" or "-", starting with a letter or digit (1-63 chars)`;
export const name = z.string({ error: NAME_RULE }).regex(NAME, { error: NAME_RULE });

/** The core's defaults that a cross-key rule depends on (src/core/options.ts validateOutlier). */
const CORE_BASE_EJECTION_MS = 30_000;
const CORE_MAX_EJECTION_MS = 300_000;

/** A cross-key issue whose message already says what was found (durations in ms, not as written). */
const BARE = { bare: true };

/**
 * Workers of one backend given as a count. Each is a lane with its own queue,
 * counters and a line in every WorkerMetrics message; the core allocates them
 * up front, so `workers: 2147483647` would exhaust memory at start.
 */
const MAX_WORKERS = 1024;

/** SETTINGS_MAX_CONCURRENT_STREAMS is 32 bits; Node's http2 throws on more. */
const MAX_STREAMS = 2 ** 32 - 1;

/**
 * `server.limits`: key → Limits field and its schema. A new limit is one line
 * here (and its field and default in src/server/limits.ts).
 */
export const limitKeys = {
  max_request_bytes: { field: "maxRequestBytes", schema: int(1) },
  // 0 is allowed: it turns affinity off for clients rather than refusing every call.
  max_session_id_length: { field: "maxSessionIdLength", schema: int(0) },
  max_metadata_entries: { field: "maxMetadataEntries", schema: int(1) },
  max_metadata_size: { field: "maxMetadataSize", schema: int(1) },
  max_concurrent_streams: { field: "maxConcurrentStreams", schema: int(1, MAX_STREAMS) },
  max_metrics_subscribers: { field: "maxMetricsSubscribers", schema: int(1) },
  max_deadline: { field: "maxDeadlineMs", schema: duration },
  max_inflight_calls: { field: "maxInflightCalls", schema: int(1) },
  max_decoding_bytes: { field: "maxDecodingBytes", schema: int(1) },
  max_held_request_bytes: { field: "maxHeldRequestBytes", schema: int(0) },
  max_json_nodes: { field: "maxJsonNodes", schema: int(1) },
  max_json_depth: { field: "maxJsonDepth", schema: int(1) },
  max_metrics_streams_per_connection: { field: "maxMetricsStreamsPerConnection", schema: int(1) },
  headers_timeout: { field: "headersTimeoutMs", schema: duration },
  body_idle_timeout: { field: "bodyIdleTimeoutMs", schema: duration },
  idle_timeout: { field: "idleTimeoutMs", schema: duration },
  goaway_grace: { field: "goawayGraceMs", schema: duration },
} satisfies Record<string, { field: keyof Limits; schema: z.ZodType<number, unknown> }>;

const limits = table(
  Object.fromEntries(Object.entries(limitKeys).map(([k, v]) => [k, v.schema.optional()])) as {
    [K in keyof typeof limitKeys]: z.ZodOptional<(typeof limitKeys)[K]["schema"]>;
  },
);

/** What a browser sends as Origin: scheme://host[:port], nothing after; or "*" for any origin. */
const corsOrigin = z
  .string({ error: 'expected "*" or an origin such as "https://app.example.com"' })
  .regex(/^(\*|https?:\/\/[^/\s?#]+)$/, { error: 'expected "*" or an origin such as "https://app.example.com" (scheme://host[:port], no path)' });

const server = table({
  host: nonEmptyString.optional(),
  port: port.optional(),
  shutdown_grace: duration.optional(),
  log_level: logLevel.optional(),
  limits: limits.optional(),
  reflection: bool.optional(),
  auth: table({ tokens_file: nonEmptyString.optional(), tokens_env: nonEmptyString.optional() })
    .refine((a) => a.tokens_file !== undefined || a.tokens_env !== undefined, {
      error: "set tokens_file or tokens_env (or remove server.auth to turn auth off)",
    })
    .optional(),
  tls: table({ cert_file: nonEmptyString, key_file: nonEmptyString }).optional(),
  cors: table({ allowed_origins: z.array(corsOrigin, { error: "expected a list of origins" }).optional() }).optional(),
});

/** Rate and concurrency limits of a backend or one endpoint (DESIGN.md §11; docs/limits.md). */
const limitFields = {
  requests_per_minute: int(1).optional(),
  tokens_per_minute: int(1).optional(),
  max_concurrency: int(1).optional(),
  window: duration.refine((ms) => ms > 0, { error: "expected a duration > 0" }).optional(),
  token_estimate: int(0).optional(),
};
const limitsTable = table(limitFields);
/** A backend's limits may also adapt each worker's concurrency to its upstream's 429s. */
const backendLimitsTable = table({ ...limitFields, adaptive_concurrency: bool.optional() });

const endpoint = z.preprocess(
  (v) => (typeof v === "string" ? { url: v } : v),
  table({
    url: nonEmptyString,
    name: name.optional(),
    max_concurrency: int(1).optional(),
    queue_capacity: int(0).optional(),
    weight: z.number({ error: "expected a number > 0" }).positive({ error: "expected a number > 0" }).optional(),
    limits: limitsTable.optional(),
  }),
);

const policy = z.string({ error: () => `expected one of ${policyNames().join(", ")}` }).refine((p) => policyNames().includes(p), {
  error: () => `expected one of ${policyNames().join(", ")}`,
});

const spillLoadFactor = z
  .number({ error: "expected 0 (off) or a number ≥ 1" })
  .refine((f) => f === 0 || f >= 1, { error: "expected 0 (off) or a number ≥ 1" });

const list = <T extends z.ZodType>(item: T) =>
  z.array(item, { error: "expected a non-empty list" }).min(1, { error: "expected a non-empty list" });

const backend = table({
  name,
  kind: nonEmptyString,
  workers: int(1, MAX_WORKERS).optional(),
  endpoints: list(endpoint).optional(),
  max_concurrency: int(1).optional(),
  queue_capacity: int(0).optional(),
  timeout: duration.optional(),
  policy: policy.optional(),
  affinity: table({ ttl: duration.optional(), max_pins: int(1).optional(), spill_load_factor: spillLoadFactor.optional() }).optional(),
  retry: table({
    max_attempts: int(1).optional(),
    initial_backoff: duration.optional(),
    max_backoff: duration.optional(),
    multiplier: number(1).optional(),
    budget_percent: number(0, 100, "expected a percentage 0-100").optional(),
    min_retry_concurrency: int(0).optional(),
  }).optional(),
  outlier: table({
    consecutive_failures: int(0).optional(),
    base_ejection: duration.optional(),
    max_ejection: duration.optional(),
    max_ejection_percent: number(0, 100, "expected a percentage 0-100").optional(),
  }).optional(),
  idempotent: bool.optional(),
  expose_upstream_errors: bool.optional(),
  ttft_timeout: duration.optional(),
  stall_timeout: duration.optional(),
  limits: backendLimitsTable.optional(),
  scheduling: table({
    priority_levels: int(1, 16).optional(),
    default_priority: int(0, 15).optional(),
    aging: duration.optional(),
    tenant_weights: z.record(z.string(), int(1, 1000), { error: "expected a mapping of tenant name to weight (1-1000)" }).optional(),
    default_tenant_weight: int(1, 1000).optional(),
    tenant_queue_share: z
      .number({ error: "expected a fraction in (0, 1]" })
      .refine((v) => v > 0 && v <= 1, { error: "expected a fraction in (0, 1]" })
      .optional(),
    tenant_from_metadata: nonEmptyString.optional(),
    deadline_aware: bool.optional(),
    displace: bool.optional(),
  }).optional(),
  options: mapping.optional(),
}).check(z.superRefine(backendRules, { when: () => true }));

/**
 * Rules across keys of one backend. They run even when another key of the
 * backend failed (every error at once), so each looks only at values that
 * passed their own check.
 */
function backendRules(b: Record<string, unknown>, ctx: z.RefinementCtx): void {
  if (!isMapping(b)) return;
  if (b["workers"] !== undefined && b["endpoints"] !== undefined) {
    ctx.addIssue({ code: "custom", path: ["endpoints"], message: "set either workers or endpoints, not both", input: b["endpoints"] });
  }
  if (Array.isArray(b["endpoints"])) {
    // The core names a worker by its name or else its index: "1" named on worker 0 collides with worker 1.
    const seen = new Map<string, number>();
    b["endpoints"].forEach((e: unknown, i) => {
      const n = isMapping(e) ? e["name"] : undefined;
      const id = typeof n === "string" ? n : String(i);
      const first = seen.get(id);
      if (first !== undefined) {
        const issue = typeof n === "string"
          ? { message: `duplicate worker name "${id}"`, input: n }
          : { message: `duplicate worker name "${id}": unnamed, this worker takes its index, already the name of endpoints[${first}]`, params: BARE };
        ctx.addIssue({ code: "custom", path: ["endpoints", i, "name"], ...issue });
      }
      seen.set(id, first ?? i);
    });
  }
  const sched = isMapping(b["scheduling"]) ? b["scheduling"] : {};
  const levels = typeof sched["priority_levels"] === "number" ? sched["priority_levels"] : 4;
  if (typeof sched["default_priority"] === "number" && sched["default_priority"] >= levels) {
    ctx.addIssue({
      code: "custom",
      path: ["scheduling", "default_priority"],
      message: `expected a tier below scheduling.priority_levels (${levels}), got ${sched["default_priority"]}`,
      params: BARE,
    });
  }
  const retry = isMapping(b["retry"]) ? b["retry"] : {};
  const initial = retry["initial_backoff"];
  const max = retry["max_backoff"];
  if (typeof initial === "number" && typeof max === "number" && max < initial) {
    ctx.addIssue({ code: "custom", path: ["retry", "max_backoff"], message: `expected ≥ retry.initial_backoff (${initial} ms), got ${max} ms`, params: BARE });
  }
  const outlier = isMapping(b["outlier"]) ? b["outlier"] : {};
  const base = outlier["base_ejection"];
  const maxEj = outlier["max_ejection"];
  if (typeof base === "number" || typeof maxEj === "number") {
    const b0 = typeof base === "number" ? base : CORE_BASE_EJECTION_MS;
    const m0 = typeof maxEj === "number" ? maxEj : CORE_MAX_EJECTION_MS;
    if (m0 < b0 && maxEj !== undefined) {
      ctx.addIssue({ code: "custom", path: ["outlier", "max_ejection"], message: `expected ≥ outlier.base_ejection (${b0} ms), got ${m0} ms`, params: BARE });
    } else if (m0 < b0) {
      ctx.addIssue({
        code: "custom",
        path: ["outlier", "base_ejection"],
        message: `expected ≤ max_ejection (default ${CORE_MAX_EJECTION_MS} ms), got ${b0} ms; set outlier.max_ejection too`,
        params: BARE,
      });
    }
  }
}

const backends = list(backend).check(
  z.superRefine((bs: unknown[], ctx) => {
    if (!Array.isArray(bs)) return;
    const seen = new Set<unknown>();
    bs.forEach((b, i) => {
      const n = isMapping(b) ? b["name"] : undefined;
      if (typeof n !== "string") return;
      if (seen.has(n)) ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate backend name "${n}"`, input: n });
      seen.add(n);
    });
  }, { when: () => true }),
);

const telemetry = table({ prometheus_port: port.optional(), prometheus_host: nonEmptyString.optional() });

const log = table({ level: logLevel.optional(), access: bool.optional() });

/** A Redis URL as ioredis takes it: redis:// or rediss:// (TLS). */
const redisUrl = z
  .string({ error: "expected a redis:// or rediss:// URL" })
  .regex(/^rediss?:\/\/[^\s]+$/, { error: "expected a redis:// or rediss:// URL" });

/** Shared state across replicas (DESIGN.md §11): absent = everything held in this process. */
const cluster = table({
  redis_url: redisUrl.optional(),
  key_prefix: nonEmptyString.optional(),
  redis_timeout: duration.optional(),
  on_redis_down: z.enum(["fail_open", "fail_closed"], { error: "expected fail_open or fail_closed" }).optional(),
  replica_id: name.optional(),
});

/** Background jobs (DESIGN.md §12; docs/jobs.md). */
const positiveDuration = duration.refine((ms) => ms > 0, { error: "expected a duration > 0" });
const jobs = table({
  result_ttl: positiveDuration.optional(),
  max_queued: int(1).optional(),
  max_result_bytes: int(1).optional(),
  max_jobs: int(1).optional(),
  default_timeout: positiveDuration.optional(),
  max_timeout: positiveDuration.optional(),
  max_running: int(1, 100_000).optional(),
  claim_timeout: positiveDuration.optional(),
});

export const configFile = table({
  server: server.optional(),
  backends,
  telemetry: telemetry.optional(),
  log: log.optional(),
  dashboard: bool.optional(),
  cluster: cluster.optional(),
  jobs: jobs.optional(),
}).check(
  z.superRefine((c: Record<string, unknown>, ctx) => {
    if (!isMapping(c)) return;
    const alias = isMapping(c["server"]) ? c["server"]["log_level"] : undefined;
    const level = isMapping(c["log"]) ? c["log"]["level"] : undefined;
    if (typeof alias === "string" && typeof level === "string" && alias !== level) {
      ctx.addIssue({
        code: "custom",
        path: ["server", "log_level"],
        message: `conflicts with log.level "${level}"; server.log_level is an alias of log.level: set one`,
        input: alias,
      });
    }
  }, { when: () => true }),
);

/** Cross-key rules see values that may have failed their own checks: anything may be there. */
function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export type ConfigFile = z.output<typeof configFile>;

export type LimitsFile = z.output<typeof backendLimitsTable>;
