import type { BackendEntry } from "./job.js";
import type { LimitSpec, LimitStatus } from "./limits.js";
import { loadOf, type WorkerState } from "./worker.js";

/** One priority tier of a worker's queue. */
export interface TierSnapshot {
  priority: number;
  queued: number;
  rejected: number;
  displaced: number;
  queueWaitP99Ms: number;
}

/** Tenants listed per worker at most; the rest are summed under OTHER_TENANTS, so a client cannot grow a snapshot. */
export const TOP_TENANTS = 10;
export const OTHER_TENANTS = "(other)";

export interface WorkerSnapshot {
  workerId: string;
  backend: string;
  endpoint: string | undefined;
  state: WorkerState;
  inflight: number;
  queued: number;
  queueCapacity: number;
  maxConcurrency: number;
  load: number;
  completed: number;
  errors: number;
  rejected: number;
  cancelled: number;
  displaced: number;
  ejections: number;
  sessions: number;
  queueWaitP50Ms: number;
  queueWaitP99Ms: number;
  executionP50Ms: number;
  executionP99Ms: number;
  openStreams: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  tiers: TierSnapshot[];
  /** The tenants with most queued jobs (at most TOP_TENANTS), then OTHER_TENANTS. */
  tenants: { tenant: string; queued: number }[];
  /** The worker's limits (its own, then its backend's), as the limit store last saw them; empty without limits. */
  limits: LimitStatus[];
}

/** Samples older than this are left out of the percentiles of a snapshot. */
const PERCENTILE_WINDOW_MS = 60_000;
/** Expired pins removed per backend per snapshot, so `sessions` stays current when traffic stops. */
const SNAPSHOT_SWEEP = 10_000;

/** Current load of every worker of the named backends (all when none are named). */
export function snapshotBackends(
  entries: ReadonlyMap<string, BackendEntry>,
  backends: readonly string[] | undefined,
  now: number,
  limitStatus: (spec: LimitSpec) => LimitStatus,
): WorkerSnapshot[] {
  const since = now - PERCENTILE_WINDOW_MS;
  const out: WorkerSnapshot[] = [];
  const names = backends === undefined || backends.length === 0 ? entries.keys() : backends;
  for (const name of names) {
    const entry = entries.get(name);
    if (entry === undefined) continue;
    entry.affinity?.sweep(now, SNAPSHOT_SWEEP);
    for (const w of entry.workers) {
      const [qw50, qw99] = w.queueWait.percentiles([0.5, 0.99], since);
      const [ex50, ex99] = w.execution.percentiles([0.5, 0.99], since);
      const [ttft50, ttft99] = w.ttft.percentiles([0.5, 0.99], since);
      out.push({
        workerId: w.id,
        backend: w.backend,
        endpoint: w.endpoint,
        state: w.state,
        inflight: w.inflight,
        queued: w.queue.length,
        queueCapacity: w.queueCapacity,
        maxConcurrency: w.maxConcurrency,
        load: loadOf(w),
        completed: w.completed,
        errors: w.errors,
        rejected: w.rejected,
        cancelled: w.cancelled,
        displaced: w.displaced,
        ejections: w.ejections,
        sessions: w.sessions,
        queueWaitP50Ms: qw50!,
        queueWaitP99Ms: qw99!,
        executionP50Ms: ex50!,
        executionP99Ms: ex99!,
        openStreams: w.streams,
        ttftP50Ms: ttft50!,
        ttftP99Ms: ttft99!,
        tiers: w.queue.tierLengths().map((queued, priority) => ({
          priority,
          queued,
          rejected: w.rejectedByTier[priority]!,
          displaced: w.displacedByTier[priority]!,
          queueWaitP99Ms: w.tierWait[priority]!.percentiles([0.99], since)[0]!,
        })),
        tenants: topTenants(w.queue.tenantCounts()),
        limits: w.limits === undefined ? [] : w.limits.specs.map(limitStatus),
      });
    }
  }
  return out;
}

function topTenants(counts: Map<string, number>): { tenant: string; queued: number }[] {
  const all = [...counts].map(([tenant, queued]) => ({ tenant, queued })).sort((a, b) => b.queued - a.queued);
  if (all.length <= TOP_TENANTS) return all;
  const top = all.slice(0, TOP_TENANTS);
  top.push({ tenant: OTHER_TENANTS, queued: all.slice(TOP_TENANTS).reduce((n, t) => n + t.queued, 0) });
  return top;
}
