/**
 * Span, attribute and metric names: the contract with dashboards and
 * queries (docs/telemetry.md lists them). DESIGN.md §7 fixes the RPC
 * attributes to the gRPC semantic conventions' rpc.system / rpc.service /
 * rpc.method / rpc.grpc.status_code, which the semantic-conventions package
 * keeps only in its unstable entry point, hence the local constants.
 */

/** Instrumentation scope of every span and instrument this service makes. */
export const SCOPE = "dispatcher";

export const SPAN_QUEUE_WAIT = "dispatcher.queue.wait";
export const SPAN_JOB_RUN = "dispatcher.job.run";

export const ATTR_RPC_SYSTEM = "rpc.system";
export const ATTR_RPC_SERVICE = "rpc.service";
export const ATTR_RPC_METHOD = "rpc.method";
export const ATTR_RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code";

export const ATTR_BACKEND = "dispatcher.backend";
export const ATTR_WORKER_ID = "dispatcher.worker.id";
/** hit / miss / spill / none (core/observer.ts AffinityOutcome). */
export const ATTR_AFFINITY = "dispatcher.affinity";
export const ATTR_ATTEMPT = "dispatcher.attempt";
/** On a failed attempt's run span: the backoff before the next attempt, in seconds. */
export const ATTR_RETRY_DELAY = "dispatcher.retry.delay";
/** ok / error / timeout / cancelled / deadline_exceeded / shutdown, or rejected. */
export const ATTR_OUTCOME = "dispatcher.outcome";

export const METRIC_QUEUE_WAIT = "dispatcher.queue.wait.duration";
export const METRIC_JOB_RUN = "dispatcher.job.run.duration";
export const METRIC_QUEUE_DEPTH = "dispatcher.queue.depth";
export const METRIC_INFLIGHT = "dispatcher.jobs.inflight";
export const METRIC_COMPLETED = "dispatcher.jobs.completed";
export const METRIC_ERRORS = "dispatcher.jobs.errors";
export const METRIC_REJECTED = "dispatcher.jobs.rejected";
export const METRIC_CANCELLED = "dispatcher.jobs.cancelled";
export const METRIC_RETRIES = "dispatcher.jobs.retries";
export const METRIC_TTFT = "dispatcher.stream.time_to_first_chunk.duration";
export const METRIC_INTER_CHUNK = "dispatcher.stream.inter_chunk.duration";
export const METRIC_CHUNKS = "dispatcher.stream.chunks";
export const METRIC_TOKENS = "dispatcher.stream.tokens";
export const METRIC_DISPLACED = "dispatcher.jobs.displaced";
export const METRIC_QUEUE_DEPTH_BY_PRIORITY = "dispatcher.queue.depth.by_priority";
export const METRIC_TENANT_REJECTED = "dispatcher.tenant.rejected";
export const METRIC_QUEUE_WAIT_BY_PRIORITY = "dispatcher.queue.wait.by_priority.duration";
export const ATTR_PRIORITY = "dispatcher.priority";
export const ATTR_TENANT = "dispatcher.tenant";
/** Tenants with their own label on a metric; the rest share OTHER_TENANT (tenant names come from clients). */
export const TOP_TENANT_LABELS = 10;
export const OTHER_TENANT = "(other)";
export const METRIC_WAIT_ESTIMATE_ERROR = "dispatcher.queue.wait.estimate_error";
/** Span event on a job's run span when its stream's first chunk came. */
export const EVENT_FIRST_CHUNK = "dispatcher.first_chunk";
export const METRIC_AFFINITY = "dispatcher.affinity.outcomes";

/**
 * Histogram bounds in seconds, from a millisecond to ten minutes: echo jobs
 * take well under a millisecond, LLM calls and long queues take minutes.
 */
export const DURATION_BUCKETS_S = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
];

/**
 * gRPC codes that mark a SERVER span as an error (semantic conventions for
 * gRPC: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
 * DATA_LOSS); the others are the client's doing and leave the status unset.
 */
export const SERVER_ERROR_CODES: ReadonlySet<number> = new Set([2, 4, 12, 13, 14, 15]);

/** Limits (docs/limits.md): what is left of each, labelled by its key; a paused limit is 1 until its pause ends. */
export const ATTR_LIMIT = "dispatcher.limit";
export const METRIC_LIMIT_REQUESTS_LEFT = "dispatcher.limit.requests.remaining";
export const METRIC_LIMIT_TOKENS_LEFT = "dispatcher.limit.tokens.remaining";
export const METRIC_LIMIT_CONCURRENCY_LEFT = "dispatcher.limit.concurrency.remaining";
export const METRIC_LIMIT_PAUSED = "dispatcher.limit.paused";
/** The shared store (cluster.redis_url): up (1/0), round trip p50/p99 in seconds, failed commands, live replicas. */
export const METRIC_REDIS_UP = "dispatcher.redis.up";
export const METRIC_REDIS_RTT = "dispatcher.redis.rtt";
export const METRIC_REDIS_ERRORS = "dispatcher.redis.errors";
export const METRIC_REPLICAS = "dispatcher.cluster.replicas";
export const ATTR_QUANTILE = "quantile";
/** Background jobs (docs/jobs.md) by backend and state. */
export const METRIC_BACKGROUND_JOBS = "dispatcher.background_jobs";
/** The server's request budgets in use (server.limits.max_decoding_bytes, max_held_request_bytes). */
export const METRIC_REQUEST_BYTES_DECODING = "dispatcher.server.requests.decoding";
export const METRIC_REQUEST_BYTES_HELD = "dispatcher.server.requests.held";
export const ATTR_JOB_STATE = "dispatcher.job.state";
