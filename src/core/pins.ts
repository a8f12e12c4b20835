/**
 * Session pins shared between replicas (DESIGN.md §11, issue 13 part 4): the
 * interface the core owns. Each replica keeps its pins in its own
 * AffinityTable; a PinStore is where they are also written (Redis, in
 * src/cluster/redis-pins.ts) so that a session that lands on another replica
 * after a scale event, or after its replica died, keeps its worker and so the
 * upstream's prompt cache. The core never imports a Redis client.
 *
 * The store is never on a call's critical path but for one case: a call with
 * a session that has no live pin in this process (a local miss) waits for
 * `lookup`, which the store bounds in time and which never rejects.
 */
import type { Pin } from "./affinity.js";
import type { BackendEntry, Job } from "./job.js";
import { canAdmit, type Worker } from "./worker.js";

export interface PinStore {
  /**
   * A pin was made, moved or refreshed here: keep `session` → `workerId` for
   * `ttlMs` from now (a sliding TTL, as the local pin's). Fire-and-forget: it
   * must return at once and never throw; a store batches these.
   */
  write(backend: string, session: string, workerId: string, ttlMs: number): void;
  /**
   * The worker id another replica pinned `session` to, or undefined (none,
   * expired, or the store was slow or down). Never rejects; resolves within
   * the store's own time bound.
   */
  lookup(backend: string, session: string): Promise<string | undefined>;
}

/**
 * Share a pin at most this often per TTL: a hot session refreshes its local
 * pin on every call, but the store's copy only needs to outlive the local one
 * by about the same margin. Writing on every hit would make Redis traffic
 * proportional to calls rather than to sessions.
 */
const SHARE_FRACTION = 10;

/** Writes `pin` through to the store if it is new, moved, or its shared copy is 1/10 of a TTL old. */
export function sharePin(store: PinStore, entry: BackendEntry, pin: Pin<Worker<Job>>, now: number, ttlMs: number): void {
  if (pin.sharedWorker === pin.worker && now - pin.sharedAt < ttlMs / SHARE_FRACTION) return;
  pin.sharedWorker = pin.worker;
  pin.sharedAt = now;
  store.write(entry.name, pin.session, pin.worker.id, ttlMs);
}

/**
 * After a local miss: asks the store for the session's pin and, when it names
 * a worker of this backend that can admit, pins the session to it here, so
 * that the selection that follows is a hit. A pin made meanwhile by another
 * call of the same session wins.
 */
export async function seedFromStore(store: PinStore, entry: BackendEntry, session: string, now: () => number): Promise<void> {
  const workerId = await store.lookup(entry.name, session);
  const table = entry.affinity;
  if (workerId === undefined || table === undefined) return;
  const t = now();
  if (table.lookup(session, t) !== undefined) return;
  const worker = entry.workers.find((w) => w.id === workerId);
  if (worker === undefined || !canAdmit(worker)) return;
  const pin = table.pin(session, worker, t);
  // The store already holds this pin: no write back until it is refreshed.
  pin.sharedWorker = worker;
  pin.sharedAt = t;
}
