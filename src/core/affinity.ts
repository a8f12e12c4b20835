/**
 * Session → worker pins with a sliding TTL and a cap.
 *
 * A Map finds a session's pin. A hit only moves the pin's `expiresAt`
 * forward: it touches no other pin, so a hit at a million sessions costs one
 * Map lookup and one object write. Expiry is found from `listedUntil`, the
 * expiry a pin had when it was last filed, in two places ordered by it:
 * - a list of new pins, in creation order: every pin of a table has the same
 *   TTL and the clock only moves forward, so creation order is listedUntil order;
 * - a binary min-heap of pins refiled after they were refreshed: their
 *   listedUntil (last touch + TTL) can be earlier than that of pins created
 *   since, so appending them to the list would hide an expired pin behind a
 *   live one (and keep it counted in `sessions`).
 * A sweep takes the earlier of the two heads while it is due: a pin that has
 * expired is dropped; one refreshed since it was filed is refiled in the heap
 * with its new expiry (a second chance, as in the CLOCK algorithm). Each pin
 * is refiled at most once per TTL, so the cost is amortised O(1) per submit
 * (O(log n) per refile) at any number of sessions; sweeps do a bounded amount
 * of work per call. Past the cap the first filed pin not used since it was
 * filed is evicted (least recently used, approximately). The original crate
 * swept the whole map on every submit.
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
  /** `expiresAt` when the pin was last filed; the list and the heap are ordered by it. */
  listedUntil: number;
  /** Used since it was last filed: eviction passes it over once. */
  touched: boolean;
  /** The session this pin belongs to, to delete it from the Map when it leaves. */
  readonly session: string;
  prev: Pin<W> | null;
  next: Pin<W> | null;
  /** Position in the heap of refiled pins; -1 while in the list of new pins. */
  heapIndex: number;
  /** The worker last written to the shared pin store (pins.ts), and when; undefined when never or without a store. */
  sharedWorker: W | undefined;
  sharedAt: number;
}

/** Most steps one sweep takes, so that a mass expiry never stalls one request. */
const SWEEP_BATCH = 64;

export class AffinityTable<W extends Pinnable> {
  private readonly pins = new Map<string, Pin<W>>();
  /** New pins: smallest listedUntil first. */
  private head: Pin<W> | null = null;
  private tail: Pin<W> | null = null;
  /** Refiled pins: a min-heap on listedUntil. */
  private readonly heap: Pin<W>[] = [];

  constructor(
    readonly ttlMs: number,
    readonly maxPins: number,
  ) {}

  get size(): number {
    return this.pins.size;
  }

  /** The live pin of `session`, or undefined. An expired pin is dropped here. */
  lookup(session: string, now: number): Pin<W> | undefined {
    const first = this.first();
    if (first !== null && first.listedUntil <= now) this.sweep(now, SWEEP_BATCH);
    const pin = this.pins.get(session);
    if (pin === undefined) return undefined;
    if (pin.expiresAt <= now) {
      this.remove(pin);
      return undefined;
    }
    return pin;
  }

  /** Pins `session` to `worker`: a new pin, or a refresh (and maybe a move) of `existing`. Returns the pin. */
  pin(session: string, worker: W, now: number, existing?: Pin<W>): Pin<W> {
    const expiresAt = now + this.ttlMs;
    if (existing !== undefined) {
      if (existing.worker !== worker) {
        existing.worker.sessions--;
        worker.sessions++;
        existing.worker = worker;
      }
      existing.expiresAt = expiresAt;
      existing.touched = true;
      return existing;
    }
    if (this.pins.size >= this.maxPins) this.evictOne();
    worker.sessions++;
    const pin: Pin<W> = {
      worker, expiresAt, listedUntil: expiresAt, touched: false, session, prev: null, next: null, heapIndex: -1,
      sharedWorker: undefined, sharedAt: 0,
    };
    this.pins.set(session, pin);
    this.append(pin);
    return pin;
  }

  /**
   * Drops expired pins and refiles refreshed ones, earliest first, taking at
   * most `limit` steps; returns how many pins it dropped.
   */
  sweep(now: number, limit = Infinity): number {
    let removed = 0;
    for (let steps = 0; steps < limit; steps++) {
      const first = this.first();
      if (first === null || first.listedUntil > now) break;
      if (first.expiresAt <= now) {
        this.remove(first);
        removed++;
      } else {
        this.refile(first);
      }
    }
    return removed;
  }

  clear(): void {
    for (const p of this.pins.values()) p.worker.sessions--;
    this.pins.clear();
    this.head = null;
    this.tail = null;
    this.heap.length = 0;
  }

  /** The filed pin with the smallest listedUntil. */
  private first(): Pin<W> | null {
    const top = this.heap[0];
    if (top === undefined) return this.head;
    return this.head === null || top.listedUntil < this.head.listedUntil ? top : this.head;
  }

  /** Evicts the earliest filed pin, giving refreshed ones a second chance first. */
  private evictOne(): void {
    for (let p = this.first(); p !== null; p = this.first()) {
      if (!p.touched) {
        this.remove(p);
        return;
      }
      this.refile(p);
    }
  }

  /** Files a refreshed pin again, under its new expiry. */
  private refile(pin: Pin<W>): void {
    this.unfile(pin);
    pin.listedUntil = pin.expiresAt;
    pin.touched = false;
    this.heapPush(pin);
  }

  private remove(pin: Pin<W>): void {
    this.unfile(pin);
    this.pins.delete(pin.session);
    pin.worker.sessions--;
  }

  private unfile(pin: Pin<W>): void {
    if (pin.heapIndex >= 0) this.heapRemove(pin);
    else this.unlink(pin);
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

  private heapPush(pin: Pin<W>): void {
    pin.heapIndex = this.heap.length;
    this.heap.push(pin);
    this.siftUp(pin.heapIndex);
  }

  private heapRemove(pin: Pin<W>): void {
    const h = this.heap;
    const i = pin.heapIndex;
    const last = h.pop()!;
    pin.heapIndex = -1;
    if (last === pin) return;
    h[i] = last;
    last.heapIndex = i;
    this.siftDown(i);
    this.siftUp(last.heapIndex);
  }

  private siftUp(i: number): void {
    const h = this.heap;
    const p = h[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const q = h[parent]!;
      if (q.listedUntil <= p.listedUntil) break;
      h[i] = q;
      q.heapIndex = i;
      i = parent;
    }
    h[i] = p;
    p.heapIndex = i;
  }

  private siftDown(i: number): void {
    const h = this.heap;
    const n = h.length;
    const p = h[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && h[c + 1]!.listedUntil < h[c]!.listedUntil) c++;
      const q = h[c]!;
      if (q.listedUntil >= p.listedUntil) break;
      h[i] = q;
      q.heapIndex = i;
      i = c;
    }
    h[i] = p;
    p.heapIndex = i;
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
