import type { Redis } from "ioredis";
import type { PinStore } from "../core/index.js";

/** Most pin writes held for one flush: past it, new writes are dropped (a pin is a hint, Redis is behind). */
const MAX_PENDING = 10_000;

export interface RedisPinStats {
  /** Pins written, lookups answered (found or not), and commands that failed or timed out. */
  written: number;
  lookups: number;
  found: number;
  errors: number;
  /** Writes dropped because too many were waiting for Redis. */
  dropped: number;
}

/**
 * Session pins in Redis (DESIGN.md §11): `<prefix>pin:<backend>:<session>` →
 * worker id, with a sliding TTL (`SET … PX ttl` on every write). Writes are
 * collected and sent as one pipeline per turn of the event loop, so a burst
 * of calls costs one round trip and no caller waits for Redis. A lookup is one
 * GET bounded by the connection's command timeout (cluster.redis_timeout);
 * concurrent lookups of one session share it; any error reads as "no pin".
 */
export class RedisPinStore implements PinStore {
  readonly stats: RedisPinStats = { written: 0, lookups: 0, found: 0, errors: 0, dropped: 0 };
  private pending = new Map<string, { workerId: string; ttlMs: number }>();
  private scheduled = false;
  private readonly inflight = new Map<string, Promise<string | undefined>>();
  private readonly flushBound = () => this.flush();

  constructor(
    private readonly redis: Redis,
    private readonly keyPrefix: string,
  ) {}

  key(backend: string, session: string): string {
    // Backend names have no ":" (config rule), so the key splits one way only.
    return `${this.keyPrefix}pin:${backend}:${session}`;
  }

  write(backend: string, session: string, workerId: string, ttlMs: number): void {
    if (this.pending.size >= MAX_PENDING) {
      this.stats.dropped++;
      return;
    }
    this.pending.set(this.key(backend, session), { workerId, ttlMs: Math.max(1, Math.round(ttlMs)) });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }

  lookup(backend: string, session: string): Promise<string | undefined> {
    const key = this.key(backend, session);
    let p = this.inflight.get(key);
    if (p === undefined) {
      this.stats.lookups++;
      p = this.redis.get(key).then(
        (v) => {
          this.inflight.delete(key);
          if (v === null) return undefined;
          this.stats.found++;
          return v;
        },
        () => {
          this.inflight.delete(key);
          this.stats.errors++;
          return undefined;
        },
      );
      this.inflight.set(key, p);
    }
    return p;
  }

  /** Sends the writes collected so far; resolves when Redis answered them (or failed). */
  flush(): Promise<void> {
    this.scheduled = false;
    if (this.pending.size === 0) return Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    const pipe = this.redis.pipeline();
    for (const [key, { workerId, ttlMs }] of batch) pipe.set(key, workerId, "PX", ttlMs);
    return pipe.exec().then(
      (results) => {
        for (const [err] of results ?? []) {
          if (err === null) this.stats.written++;
          else this.stats.errors++;
        }
      },
      () => {
        this.stats.errors += batch.size;
      },
    );
  }
}
