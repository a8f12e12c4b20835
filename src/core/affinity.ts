/**
 * Session → worker pins with a sliding TTL and a cap.
 *
 * A Map finds a session's pin; an intrusive doubly linked list through the
 * pins orders them by `listedUntil`, the expiry they had when last placed in
 * the list. A hit only moves `expiresAt` forward: it touches no other pin, so
 * a hit at a million sessions costs one Map lookup and one object write. The
 * list is put right lazily, when its head is reached: a head whose expiry has
 * passed is dropped; a head that was refreshed since it was listed goes to
 * the tail with its new expiry (a second chance, as in the CLOCK algorithm).
 * Every pin of a table has the same TTL, so the head is always the first to
 * have expired or been refreshed. Sweeps run only when the head's listed expiry
 * has passed and do a bounded amount of work per call; past the cap the first
 * head not used since it was listed is evicted (least recently used,
 * approximately). Each pin is relisted at most once per TTL, so the cost is
 * amortised O(1) per submit at any number of sessions (the original crate
 * swept the whole map on every submit).
 *
 * The list is ours rather than the Map's own insertion order: V8 leaves
 * deleted Map entries as holes that iteration from the front must skip until
 * the next rehash, which made evicting "the first entry" cost O(cap) under churn.
 */
import type { WorkerView } from "./worker.js";

export interface Pinnable {
  sessions: number;
}

export interface Pin<W extends Pinnable> {
  worker: W;
  expiresAt: number;
  /** `expiresAt` when the pin was last placed in the list; the list is sorted by it. */
  listedUntil: number;
  /** Used since it was last placed in the list: eviction passes it over once. */
  touched: boolean;
  /** The session this pin belongs to, to delete it from the Map when it leaves the list. */
  readonly session: string;
  prev: Pin<W> | null;
  next: Pin<W> | null;
}

/** Most list steps one sweep takes, so that a mass expiry never stalls one request. */
const SWEEP_BATCH = 64;

export class AffinityTable<W extends Pinnable> {
  private readonly pins = new Map<string, Pin<W>>();
  /** Smallest listedUntil. */
  private head: Pin<W> | null = null;
  /** Largest listedUntil. */
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
    if (this.head !== null && this.head.listedUntil <= now) this.sweep(now, SWEEP_BATCH);
    const pin = this.pins.get(session);
    if (pin === undefined) return undefined;
    if (pin.expiresAt <= now) {
      this.remove(pin);
      return undefined;
    }
    return pin;
  }

  /** Pins `session` to `worker`: a new pin, or a refresh (and maybe a move) of `existing`. */
  pin(session: string, worker: W, now: number, existing?: Pin<W>): void {
    const expiresAt = now + this.ttlMs;
    if (existing !== undefined) {
      if (existing.worker !== worker) {
        existing.worker.sessions--;
        worker.sessions++;
        existing.worker = worker;
      }
      existing.expiresAt = expiresAt;
      existing.touched = true;
      return;
    }
    if (this.pins.size >= this.maxPins) this.evictOne();
    worker.sessions++;
    const pin: Pin<W> = { worker, expiresAt, listedUntil: expiresAt, touched: false, session, prev: null, next: null };
    this.pins.set(session, pin);
    this.append(pin);
  }

  /**
   * Drops expired pins and relists refreshed ones from the head, taking at
   * most `limit` steps; returns how many pins it dropped.
   */
  sweep(now: number, limit = Infinity): number {
    let removed = 0;
    for (let steps = 0; steps < limit && this.head !== null && this.head.listedUntil <= now; steps++) {
      const head = this.head;
      if (head.expiresAt <= now) {
        this.remove(head);
        removed++;
      } else {
        this.relist(head);
      }
    }
    return removed;
  }

  clear(): void {
    for (let p = this.head; p !== null; p = p.next) p.worker.sessions--;
    this.pins.clear();
    this.head = null;
    this.tail = null;
  }

  /** Evicts the head, giving refreshed heads a second chance at the tail first. */
  private evictOne(): void {
    while (this.head !== null && this.head.touched) this.relist(this.head);
    if (this.head !== null) this.remove(this.head);
  }

  private relist(pin: Pin<W>): void {
    this.unlink(pin);
    pin.listedUntil = pin.expiresAt;
    pin.touched = false;
    this.append(pin);
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
