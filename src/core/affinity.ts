/**
 * Session → worker pins with a sliding TTL and a cap.
 *
 * A Map finds a session's pin; an intrusive doubly linked list through the
 * pins keeps them in last-touch order (a hit moves its pin to the tail). Every
 * pin of a table has the same TTL, so the pins that expire first are always
 * at the head. Expired pins are swept from the head only when the head's
 * expiry has passed, a bounded number per call; past the cap the head is
 * evicted. Each pin is linked and unlinked once, so the cost is O(1) per
 * submit at any number of sessions (the original crate swept the whole map on
 * every submit).
 *
 * The list is ours rather than the Map's own insertion order: V8 leaves
 * deleted Map entries as holes that iteration from the front must skip until
 * the next rehash, which made evicting "the first entry" cost O(cap) under
 * churn. A hit also no longer deletes and re-inserts its key.
 */
import type { WorkerView } from "./worker.js";

export interface Pinnable {
  sessions: number;
}

export interface Pin<W extends Pinnable> {
  worker: W;
  expiresAt: number;
  /** The session this pin belongs to, to delete it from the Map when it leaves the list. */
  readonly session: string;
  prev: Pin<W> | null;
  next: Pin<W> | null;
}

/** Most expired pins removed by one sweep, so that a mass expiry never stalls one request. */
const SWEEP_BATCH = 64;

export class AffinityTable<W extends Pinnable> {
  private readonly pins = new Map<string, Pin<W>>();
  /** Least recently touched (expires first). */
  private head: Pin<W> | null = null;
  /** Most recently touched. */
  private tail: Pin<W> | null = null;

  constructor(
    readonly ttlMs: number,
    readonly maxPins: number,
  ) {}

  get size(): number {
    return this.pins.size;
  }

  /** The live pin of `session`, or undefined. An expired pin is dropped here. */
  lookup(session: string, now: number): Pin<W> | undefined {
    if (this.head !== null && this.head.expiresAt <= now) this.sweep(now, SWEEP_BATCH);
    const pin = this.pins.get(session);
    if (pin === undefined) return undefined;
    if (pin.expiresAt <= now) {
      this.remove(pin);
      return undefined;
    }
    return pin;
  }

  /** Pins `session` to `worker` (new pin, refresh or re-pin), moving it to the tail. */
  pin(session: string, worker: W, now: number, existing?: Pin<W>): void {
    const expiresAt = now + this.ttlMs;
    if (existing !== undefined) {
      if (existing.worker !== worker) {
        existing.worker.sessions--;
        worker.sessions++;
        existing.worker = worker;
      }
      existing.expiresAt = expiresAt;
      if (existing !== this.tail) {
        this.unlink(existing);
        this.append(existing);
      }
      return;
    }
    if (this.pins.size >= this.maxPins && this.head !== null) this.remove(this.head);
    worker.sessions++;
    const pin: Pin<W> = { worker, expiresAt, session, prev: null, next: null };
    this.pins.set(session, pin);
    this.append(pin);
  }

  /** Removes up to `limit` expired pins from the head; returns how many. */
  sweep(now: number, limit = Infinity): number {
    let removed = 0;
    while (this.head !== null && this.head.expiresAt <= now && removed < limit) {
      this.remove(this.head);
      removed++;
    }
    return removed;
  }

  clear(): void {
    for (let p = this.head; p !== null; p = p.next) p.worker.sessions--;
    this.pins.clear();
    this.head = null;
    this.tail = null;
  }

  private remove(pin: Pin<W>): void {
    this.unlink(pin);
    this.pins.delete(pin.session);
    pin.worker.sessions--;
  }

  private append(pin: Pin<W>): void {
    pin.prev = this.tail;
    pin.next = null;
    if (this.tail === null) this.head = pin;
    else this.tail.next = pin;
    this.tail = pin;
  }

  private unlink(pin: Pin<W>): void {
    if (pin.prev === null) this.head = pin.next;
    else pin.prev.next = pin.next;
    if (pin.next === null) this.tail = pin.prev;
    else pin.next.prev = pin.prev;
    pin.prev = null;
    pin.next = null;
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
