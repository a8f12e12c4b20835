import type { BackendEntry } from "./job.js";
import { loadOf, type WorkerState } from "./worker.js";

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
      });
    }
  }
  return out;
}
