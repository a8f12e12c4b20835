/**
 * Rate and concurrency limits (DESIGN.md §11): the interface the core owns.
 * The core asks a LimitStore for capacity before an attempt starts and
 * releases it when the attempt ends; where the counts live is the store's
 * business: in this process by default, in Redis (src/cluster/) when several
 * replicas share an upstream's limits. The core never imports a Redis client.
 */

/**
 * How long after its charge a request may reach its upstream, ms. The
 * upstream counts a request when it arrives, not when it was granted, and
 * the delay varies (queues, connection set-up, a busy event loop): two
 * requests granted just over a window apart can arrive just under one apart,
 * and a provider enforcing the same limit answers the second with 429. So a
 * charge counts from its grant until one window after the earlier of its
 * attempt's end and ARRIVAL_BOUND_MS after the grant: whatever the delay up
 * to this bound, the upstream never sees more than the limit in any of its
 * windows. The price: a fast call holds its charge its own duration longer,
 * a long one this bound longer (under 2 % of a one-minute window).
 */
export const ARRIVAL_BOUND_MS = 1_000;

/** Which limit refused an attempt. */
export type LimitKind = "requests_per_minute" | "tokens_per_minute" | "max_concurrency" | "paused";

/**
 * One set of limits, for one worker (an upstream endpoint or API key) or one
 * backend (all its workers together). Unset quantities are unlimited.
 */
export interface LimitSpec {
  /**
   * Names the counts on every replica: "worker:<worker id>" or
   * "backend:<backend name>". Replicas with the same config share them.
   */
  readonly key: string;
  /** Attempts started in any sliding window of `windowMs`. */
  readonly requestsPerMinute?: number;
  /** Tokens reserved (then settled from usage) in any sliding window of `windowMs`. */
  readonly tokensPerMinute?: number;
  /** Attempts running at once across every replica (leases that expire if a replica dies). */
  readonly maxConcurrency?: number;
  /** The rate limits' window, ms: 60,000 ("per minute") unless a test shortens it. */
  readonly windowMs: number;
}

/** What one attempt asks for before it starts. */
export interface CapacityRequest {
  /** Every limit the attempt must fit in (its worker's and its backend's): all are charged, or none. */
  readonly limits: readonly LimitSpec[];
  /** Tokens to reserve: the request's max_tokens or the backend's estimate; 0 when no limit counts tokens. */
  readonly tokens: number;
}

/** The store's answer: a lease, or which limit refused and when to ask again. */
export type CapacityAnswer =
  | { readonly granted: true; readonly lease: CapacityLease }
  | {
      readonly granted: false;
      /** The refusing limit's key ("worker:echo/0") and kind. */
      readonly key: string;
      readonly kind: LimitKind;
      /** When capacity may be back, ms from now (the oldest charge leaving the window, a pause ending, …). */
      readonly retryInMs: number;
    }
  /** The store cannot answer (Redis down with `on_redis_down: fail_closed`): the job fails UNAVAILABLE with `reason`. */
  | { readonly granted: false; readonly key: string; readonly kind: "unavailable"; readonly retryInMs: number; readonly reason: string };

/** Capacity held by one running attempt. */
export interface CapacityLease {
  /**
   * The attempt ended: frees its concurrency, counts its charges from now
   * (or from ARRIVAL_BOUND_MS after the grant, if that is earlier) until
   * they leave the window, and settles its tokens to
   * `tokensUsed` (the answer's usage; a refund or an extra charge), or keeps
   * the reservation when undefined. Called exactly once per granted lease.
   */
  release(tokensUsed?: number): void;
}

/** What WorkerMetrics and Prometheus show of one limit. A recent view: it may lag by one round trip. */
export interface LimitStatus {
  readonly key: string;
  /** Left in the current sliding window; undefined where that limit is unset. */
  readonly requestsLeft: number | undefined;
  readonly tokensLeft: number | undefined;
  readonly concurrencyLeft: number | undefined;
  /** Epoch ms until which an upstream 429 paused it; 0 when not paused. */
  readonly pausedUntil: number;
}

/** Where limits are counted: this process, or a store shared by replicas. */
export interface LimitStore {
  /**
   * Charges every limit of `req` and grants a lease, or charges none. The
   * in-process store answers synchronously; a shared one may return a
   * promise (one round trip), and must settle it within its own timeout.
   */
  acquire(req: CapacityRequest): CapacityAnswer | Promise<CapacityAnswer>;
  /**
   * The upstream behind `key` answered 429 (Retry-After `forMs`, or the
   * backend's default): no attempt starts under `key` for `forMs`, on any replica.
   */
  pause(key: string, forMs: number): void;
  /** The current view of one limit, for metrics. */
  status(spec: LimitSpec): LimitStatus;
  /** Frees what the store holds (timers, connections); leases not yet released expire on their own. */
  close(): Promise<void>;
}
