import type { Clock } from "./clock.js";
import { ARRIVAL_BOUND_MS, type CapacityAnswer, type CapacityLease, type CapacityRequest, type LimitSpec, type LimitStatus, type LimitStore } from "./limits.js";

/**
 * How often a job refused for concurrency asks again, ms. A lease freed on
 * another worker (or another replica) has no way to wake this one, and a
 * short poll costs one map lookup.
 */
export const CONCURRENCY_POLL_MS = 25;

/** One charge of one attempt to one limit, kept while it is in the window. */
interface Charge {
  /** From when the window counts it: its grant + ARRIVAL_BOUND_MS, moved back to its attempt's end if sooner (limits.ts). */
  at: number;
  tokens: number;
  /** Left the window: settling it changes nothing that still counts. */
  gone: boolean;
}

/** The counts of one limit key. */
class Counts {
  /**
   * Charges in grant order; `head` is the oldest still held. Their `at` is
   * only nearly in order (an end moves it back by up to ARRIVAL_BOUND_MS):
   * pruning from the head then holds a charge a little longer, never shorter.
   */
  charges: Charge[] = [];
  head = 0;
  tokens = 0;
  running = 0;
  pausedUntil = 0;

  get requests(): number {
    return this.charges.length - this.head;
  }

  /** Drops the charges that left the window: a charge at `at` counts while now ≤ at + windowMs. */
  prune(now: number, windowMs: number): void {
    const cs = this.charges;
    while (this.head < cs.length && cs[this.head]!.at + windowMs < now) {
      this.tokens -= cs[this.head]!.tokens;
      cs[this.head]!.gone = true;
      cs[this.head++] = undefined as unknown as Charge;
    }
    // Compact now and then: the array never holds more than twice what the window does.
    if (this.head > 1024 && this.head * 2 > cs.length) {
      this.charges = cs.slice(this.head);
      this.head = 0;
    }
  }

  /** The charges held, earliest `at` first: asked only on a refusal, to say when to ask again. */
  private byTime(): Charge[] {
    return this.charges.slice(this.head).sort((a, b) => a.at - b.at);
  }

  /** When enough charges leave the window that one more request fits under `limit`, ms from now. */
  requestFreeIn(limit: number, now: number, windowMs: number): number {
    const held = this.byTime();
    return held[held.length - limit]!.at + windowMs - now + 1;
  }

  /** When enough charges leave the window that `need` more tokens fit, ms from now. */
  tokensFreeIn(need: number, limit: number, now: number, windowMs: number): number {
    let excess = this.tokens + need - limit;
    for (const c of this.byTime()) {
      excess -= c.tokens;
      if (excess <= 0) return c.at + windowMs - now + 1;
    }
    return windowMs;
  }
}

/**
 * Limits held in this process (DESIGN.md §11): the default, and what each
 * replica falls back to while a shared store is unreachable. Exact sliding
 * windows: every attempt's charge is kept with its time until it leaves the
 * window, so no window of `windowMs` ever holds more than the limit — not
 * fixed buckets, which let twice the limit through across a boundary.
 */
export class LocalLimitStore implements LimitStore {
  private readonly counts = new Map<string, Counts>();

  constructor(
    private readonly clock: Clock,
    /** Each limit held at this share of its configured value (fail-open fallback: 1 / replicas). */
    private readonly scale = 1,
  ) {}

  acquire(req: CapacityRequest): CapacityAnswer {
    const now = this.clock.now();
    // Check every limit first: all are charged, or none.
    for (const spec of req.limits) {
      const c = this.countsOf(spec.key);
      c.prune(now, spec.windowMs);
      if (c.pausedUntil > now) return refusal(spec.key, "paused", c.pausedUntil - now);
      const rpm = this.share(spec.requestsPerMinute);
      if (rpm !== undefined && c.requests + 1 > rpm) {
        return refusal(spec.key, "requests_per_minute", c.requestFreeIn(rpm, now, spec.windowMs));
      }
      const tpm = this.share(spec.tokensPerMinute);
      if (tpm !== undefined && req.tokens > 0 && c.tokens + Math.min(req.tokens, tpm) > tpm) {
        return refusal(spec.key, "tokens_per_minute", c.tokensFreeIn(Math.min(req.tokens, tpm), tpm, now, spec.windowMs));
      }
      const max = this.share(spec.maxConcurrency);
      if (max !== undefined && c.running + 1 > max) return refusal(spec.key, "max_concurrency", CONCURRENCY_POLL_MS);
    }
    const held: Held[] = [];
    for (const spec of req.limits) {
      const c = this.countsOf(spec.key);
      const tpm = this.share(spec.tokensPerMinute);
      // A reservation larger than the whole window's budget could never fit: it takes the whole budget.
      const charge: Charge = { at: now + ARRIVAL_BOUND_MS, tokens: tpm === undefined ? 0 : Math.min(req.tokens, tpm), gone: false };
      c.charges.push(charge);
      c.tokens += charge.tokens;
      const concurrent = spec.maxConcurrency !== undefined;
      if (concurrent) c.running++;
      held.push({ c, charge, concurrent, tokensCounted: tpm !== undefined });
    }
    return { granted: true, lease: new LocalLease(held, this.clock) };
  }

  pause(key: string, forMs: number): void {
    const c = this.countsOf(key);
    c.pausedUntil = Math.max(c.pausedUntil, this.clock.now() + forMs);
  }

  status(spec: LimitSpec): LimitStatus {
    const now = this.clock.now();
    const c = this.countsOf(spec.key);
    c.prune(now, spec.windowMs);
    const left = (limit: number | undefined, used: number) => (limit === undefined ? undefined : Math.max(0, limit - used));
    return {
      key: spec.key,
      requestsLeft: left(this.share(spec.requestsPerMinute), c.requests),
      tokensLeft: left(this.share(spec.tokensPerMinute), c.tokens),
      concurrencyLeft: left(this.share(spec.maxConcurrency), c.running),
      // Epoch ms for clients: the pause's remaining time from now on the wall clock.
      pausedUntil: c.pausedUntil > now ? Date.now() + (c.pausedUntil - now) : 0,
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private countsOf(key: string): Counts {
    let c = this.counts.get(key);
    if (c === undefined) {
      c = new Counts();
      this.counts.set(key, c);
    }
    return c;
  }

  /** A limit at this store's share; at least 1, so that a replica never refuses everything. */
  private share(limit: number | undefined): number | undefined {
    if (limit === undefined || this.scale === 1) return limit;
    return Math.max(1, Math.floor(limit * this.scale));
  }
}

interface Held {
  c: Counts;
  charge: Charge;
  concurrent: boolean;
  tokensCounted: boolean;
}

class LocalLease implements CapacityLease {
  constructor(
    private held: Held[] | undefined,
    private readonly clock: Clock,
  ) {}

  release(tokensUsed?: number): void {
    const held = this.held;
    if (held === undefined) return;
    this.held = undefined;
    const now = this.clock.now();
    for (const h of held) {
      // Counted from its end, if that came before its arrival bound: the upstream had it by then.
      if (h.charge.at > now) h.charge.at = now;
      if (h.concurrent) h.c.running--;
      // Settled in place: the charge keeps its time, and counts only while it is still in the window.
      if (tokensUsed !== undefined && h.tokensCounted && tokensUsed >= 0) {
        if (!h.charge.gone) h.c.tokens += tokensUsed - h.charge.tokens;
        h.charge.tokens = tokensUsed;
      }
    }
  }
}

function refusal(key: string, kind: "paused" | "requests_per_minute" | "tokens_per_minute" | "max_concurrency", retryInMs: number): CapacityAnswer {
  return { granted: false, key, kind, retryInMs: Math.max(1, Math.ceil(retryInMs)) };
}
