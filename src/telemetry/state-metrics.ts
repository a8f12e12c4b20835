import type { Meter, ObservableResult } from "@opentelemetry/api";
import type { ClusterSnapshot } from "../cluster/redis-health.js";
import type { WorkerSnapshot } from "../core/index.js";
import type { JobCounts } from "../jobs/counts.js";
import * as n from "./names.js";

/** What the service's state gauges read at each scrape. */
export interface StateSource {
  snapshot(): WorkerSnapshot[];
  /** The shared store's health; undefined when state lives in this process. */
  cluster: (() => ClusterSnapshot) | undefined;
  /** Background jobs by backend and state. */
  jobs?: () => JobCounts;
  /** Bytes in the server's request budgets: being decoded, held by calls in progress. */
  requestBytes?: () => { decoding: number; held: number };
}

/**
 * Gauges read from the dispatcher's state at each scrape (not from job
 * events): what each limit has left and whether it is paused, and the health
 * of the shared store. One snapshot per scrape serves every limit gauge.
 */
export function observeState(meter: Meter, source: StateSource): void {
  const requests = meter.createObservableGauge(n.METRIC_LIMIT_REQUESTS_LEFT, { unit: "{request}", description: "Requests left in the limit's sliding window" });
  const tokens = meter.createObservableGauge(n.METRIC_LIMIT_TOKENS_LEFT, { unit: "{token}", description: "Tokens left in the limit's sliding window" });
  const leases = meter.createObservableGauge(n.METRIC_LIMIT_CONCURRENCY_LEFT, { unit: "{lease}", description: "Concurrency leases left, cluster-wide" });
  const paused = meter.createObservableGauge(n.METRIC_LIMIT_PAUSED, { unit: "1", description: "1 while an upstream 429 pauses the limit" });
  meter.addBatchObservableCallback(
    (r) => {
      // A backend's limit appears on each of its workers: report each key once.
      const seen = new Set<string>();
      for (const w of source.snapshot()) {
        for (const l of w.limits) {
          if (seen.has(l.key)) continue;
          seen.add(l.key);
          const attrs = { [n.ATTR_LIMIT]: l.key };
          if (l.requestsLeft !== undefined) r.observe(requests, l.requestsLeft, attrs);
          if (l.tokensLeft !== undefined) r.observe(tokens, l.tokensLeft, attrs);
          if (l.concurrencyLeft !== undefined) r.observe(leases, l.concurrencyLeft, attrs);
          r.observe(paused, l.pausedUntil > Date.now() ? 1 : 0, attrs);
        }
      }
    },
    [requests, tokens, leases, paused],
  );
  const jobs = source.jobs;
  if (jobs !== undefined) {
    meter
      .createObservableGauge(n.METRIC_BACKGROUND_JOBS, { unit: "{job}", description: "Background jobs: queued and running now, ended ones in total, by state" })
      .addCallback((r) => {
        for (const [backend, byState] of Object.entries(jobs())) {
          for (const [state, count] of Object.entries(byState)) r.observe(count ?? 0, { [n.ATTR_BACKEND]: backend, [n.ATTR_JOB_STATE]: state });
        }
      });
  }
  const requestBytes = source.requestBytes;
  if (requestBytes !== undefined) {
    meter
      .createObservableGauge(n.METRIC_REQUEST_BYTES_DECODING, { unit: "By", description: "Request bytes being read and decoded (server.limits.max_decoding_bytes)" })
      .addCallback((r) => r.observe(requestBytes().decoding));
    meter
      .createObservableGauge(n.METRIC_REQUEST_BYTES_HELD, { unit: "By", description: "Decoded requests held by calls in progress, estimated (server.limits.max_held_request_bytes)" })
      .addCallback((r) => r.observe(requestBytes().held));
  }
  const cluster = source.cluster;
  if (cluster === undefined) return;
  meter.createObservableGauge(n.METRIC_REDIS_UP, { unit: "1", description: "1 while Redis answers" }).addCallback((r) => r.observe(cluster().redisUp ? 1 : 0));
  meter
    .createObservableGauge(n.METRIC_REDIS_RTT, { unit: "s", description: "Round trip of the service's Redis commands over the last minute" })
    .addCallback((r: ObservableResult) => {
      const c = cluster();
      r.observe(c.rttP50Ms / 1000, { [n.ATTR_QUANTILE]: "0.5" });
      r.observe(c.rttP99Ms / 1000, { [n.ATTR_QUANTILE]: "0.99" });
    });
  meter.createObservableCounter(n.METRIC_REDIS_ERRORS, { unit: "{error}", description: "Redis commands that failed or timed out" }).addCallback((r) => r.observe(cluster().errors));
  meter.createObservableGauge(n.METRIC_REPLICAS, { unit: "{replica}", description: "Replicas whose heartbeat in Redis is fresh" }).addCallback((r) => r.observe(cluster().replicas));
}
