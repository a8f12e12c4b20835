import type { BackendEntry, Job } from "./job.js";
import type { Worker } from "./worker.js";

export interface Displacement {
  /** The worker whose queue gives up `victim`'s place. */
  readonly target: Worker<Job>;
  readonly victim: Job;
  /** What the victim is told (RESOURCE_EXHAUSTED). */
  readonly message: string;
}

/**
 * Every queue is full: a more urgent call takes the place of the newest
 * queued job of the lowest tier below it; failing that, a tenant below its
 * weighted share of its tier takes the place of the newest job of the
 * tier's heaviest tenant. On the serving worker with the best such victim;
 * undefined when no queued job may be displaced.
 */
export function findDisplacement(entry: BackendEntry, priority: number, tenant: string): Displacement | undefined {
  let target: Worker<Job> | undefined;
  let victim: Job | undefined;
  for (const w of entry.workers) {
    if (w.state !== "serving") continue;
    const v = w.queue.victimFor(priority);
    if (v !== undefined && (victim === undefined || v.priority > victim.priority)) {
      target = w;
      victim = v;
    }
  }
  if (victim === undefined) {
    for (const w of entry.workers) {
      if (w.state !== "serving") continue;
      victim = w.queue.fairVictimFor(priority, tenant);
      if (victim !== undefined) {
        target = w;
        break;
      }
    }
  }
  if (victim === undefined || target === undefined) return undefined;
  const message =
    victim.priority > priority
      ? `displaced from the queue of ${target.id} by a more urgent call (priority ${priority} over ${victim.priority})`
      : `displaced from the queue of ${target.id}: tenant "${victim.tenant}" held more than its share of the full queue`;
  return { target, victim, message };
}
