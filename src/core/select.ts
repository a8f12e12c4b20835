import { withinLoadBound, type Pin } from "./affinity.js";
import type { BackendEntry, Job } from "./job.js";
import type { AffinityOutcome } from "./observer.js";
import { sharePin } from "./pins.js";
import { canAdmit, loadOf, type Worker } from "./worker.js";

/** A worker chosen for one attempt, and how the session's pin was used. */
export interface Selection {
  worker: Worker<Job> | undefined;
  affinity: AffinityOutcome;
  /** The session's live pin before this selection, if any (for counting a rejection on it). */
  pinned: Worker<Job> | undefined;
}

/**
 * Affinity wrapped around the backend's selection policy (as grpc-js wraps a
 * child load balancer): a live pin wins while its worker can admit (and is
 * within the load bound, if one is set); otherwise the policy picks and the
 * session is re-pinned to its choice. `avoid` is a worker the policy should
 * pass over when another can admit (a retry prefers a worker other than the
 * one that just failed it). `keepPin` false: the pin is not followed, only
 * re-pinned (a retry follows a pin only where the job came with a live one,
 * since only then does that worker hold the session's state). Selection and the reservation of a slot happen
 * in the caller's same synchronous step: no double booking.
 */
export function selectWorker(
  entry: BackendEntry,
  sessionId: string,
  now: number,
  random: () => number,
  avoid: Worker<Job> | undefined,
  keepPin = true,
): Selection {
  const table = sessionId === "" ? undefined : entry.affinity;
  if (table === undefined) return { worker: pick(entry, random, avoid), affinity: "none", pinned: undefined };
  const pin: Pin<Worker<Job>> | undefined = table.lookup(sessionId, now);
  let worker: Worker<Job> | undefined;
  let affinity: AffinityOutcome;
  if (
    keepPin &&
    pin !== undefined &&
    canAdmit(pin.worker) &&
    (entry.spillLoadFactor === 0 || withinLoadBound(pin.worker, entry.workers, entry.spillLoadFactor))
  ) {
    worker = pin.worker;
    affinity = "hit";
  } else {
    worker = pick(entry, random, avoid);
    affinity = pin === undefined ? "miss" : "spill";
  }
  if (worker !== undefined) {
    const p = table.pin(sessionId, worker, now, pin);
    if (entry.pinStore !== undefined) sharePin(entry.pinStore, entry, p, now, table.ttlMs);
  }
  return { worker, affinity, pinned: pin?.worker };
}

function pick(entry: BackendEntry, random: () => number, avoid: Worker<Job> | undefined): Worker<Job> | undefined {
  const workers = entry.workers;
  if (avoid !== undefined && workers.length > 1) {
    const others = workers.filter((w) => w !== avoid);
    const i = entry.policy.pick(others, random);
    if (i >= 0) return others[i];
  }
  const i = entry.policy.pick(workers, random);
  return i >= 0 ? workers[i] : undefined;
}

/** The worker a rejection is charged to: the pinned one, else the least loaded. */
export function rejectionWorker(entry: BackendEntry, pinned: Worker<Job> | undefined): Worker<Job> {
  let preferred = pinned;
  if (preferred === undefined) {
    for (const w of entry.workers) if (preferred === undefined || loadOf(w) < loadOf(preferred)) preferred = w;
  }
  return preferred!;
}
