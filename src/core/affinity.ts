/**
 * Session → worker pins with a sliding TTL and a cap.
 *
 * The Map is kept in last-touch order (a hit deletes and re-inserts its key),
 * and every pin of a table has the same TTL, so the pins that expire first are
 * always at the front. Expired pins are swept from the front only when the
 * front's expiry has passed, a bounded number per call: each pin is inserted
 * and removed once, so the cost is amortised O(1) per submit at any number of
 * sessions (the original crate swept the whole map on every submit).
 */
import type { WorkerView } from "./worker.js";

export interface Pinnable {
  sessions: number;
}

export interface Pin<W extends Pinnable> {
  worker: W;
  expiresAt: number;
}

/** Most expired pins removed by one sweep, so that a mass expiry never stalls one request. */
const SWEEP_BATCH = 64;

export class AffinityTable<W extends Pinnable> {
  private readonly pins = new Map<string, Pin<W>>();
  /** Expiry of the front pin or earlier; Infinity when empty. */
  private frontExpiry = Infinity;

  constructor(
    readonly ttlMs: number,
    readonly maxPins: number,
  ) {}

  get size(): number {
    return this.pins.size;
  }

  /** The live pin of `session`, or undefined. An expired pin is dropped here. */
  lookup(session: string, now: number): Pin<W> | undefined {
    if (now >= this.frontExpiry) this.sweep(now, SWEEP_BATCH);
    const pin = this.pins.get(session);
    if (pin === undefined) return undefined;
    if (pin.expiresAt <= now) {
      this.pins.delete(session);
      pin.worker.sessions--;
      return undefined;
    }
    return pin;
  }

  /** Pins `session` to `worker` (new pin, refresh or re-pin), moving it to the back. */
  pin(session: string, worker: W, now: number, existing?: Pin<W>): void {
    const expiresAt = now + this.ttlMs;
    if (existing !== undefined) {
      if (existing.worker !== worker) {
        existing.worker.sessions--;
        worker.sessions++;
        existing.worker = worker;
      }
      existing.expiresAt = expiresAt;
      this.pins.delete(session);
      this.pins.set(session, existing);
      return;
    }
    if (this.pins.size >= this.maxPins) this.evictOldest();
    worker.sessions++;
    this.pins.set(session, { worker, expiresAt });
    if (this.pins.size === 1) this.frontExpiry = expiresAt;
  }

  /** Removes up to `limit` expired pins from the front; returns how many. */
  sweep(now: number, limit = Infinity): number {
    let removed = 0;
    for (const [session, pin] of this.pins) {
      if (pin.expiresAt > now) {
        this.frontExpiry = pin.expiresAt;
        return removed;
      }
      if (removed >= limit) {
        this.frontExpiry = now; // more to do: the next call continues
        return removed;
      }
      this.pins.delete(session);
      pin.worker.sessions--;
      removed++;
    }
    this.frontExpiry = Infinity;
    return removed;
  }

  clear(): void {
    for (const pin of this.pins.values()) pin.worker.sessions--;
    this.pins.clear();
    this.frontExpiry = Infinity;
  }

  private evictOldest(): void {
    for (const [session, pin] of this.pins) {
      this.pins.delete(session);
      pin.worker.sessions--;
      return;
    }
  }
}

/**
 * Whether `pinned` may take one more job under a load bound: counting the
 * job, it holds at most ⌈factor × its share of all the backend's jobs⌉, its
 * share being its capacity over the backend's (bounded-load consistent
 * hashing, Mirrokni et al. 2018; AffinityOptions.spillLoadFactor).
 */
export function withinLoadBound(pinned: WorkerView, workers: readonly WorkerView[], factor: number): boolean {
  let jobs = 1;
  let capacity = 0;
  for (const w of workers) {
    jobs += w.inflight + w.queued;
    capacity += w.maxConcurrency * w.weight;
  }
  const share = (pinned.maxConcurrency * pinned.weight) / capacity;
  return pinned.inflight + pinned.queued + 1 <= Math.ceil(factor * jobs * share);
}
