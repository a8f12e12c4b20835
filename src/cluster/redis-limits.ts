import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { ARRIVAL_BOUND_MS, type CapacityAnswer, type CapacityLease, type CapacityRequest, type LimitKind, type LimitSpec, type LimitStatus, type LimitStore } from "../core/index.js";
import { ACQUIRE, PAUSE, RELEASE, RENEW, STATUS } from "./limit-scripts.js";
import { RedisHealth } from "./redis-health.js";

/** How long a lease lives without renewal: a replica that dies frees its leases within this. */
export const LEASE_TTL_MS = 15_000;
/** While Redis is down, how often one PING asks whether it is back. */
const PROBE_EVERY_MS = 500;
const STATUS_EVERY_MS = 1_000;
const HEARTBEAT_EVERY_MS = 2_000;

export interface RedisLimitOptions {
  redis: Redis;
  keyPrefix: string;
  /** This replica's id in the heartbeat set (any unique string). */
  replicaId: string;
  /** "fail_open": while Redis is down, each limit is held in process at its local share; "fail_closed": refuse. */
  onRedisDown: "fail_open" | "fail_closed";
  /** The in-process store to fall back on, holding each limit at `scale` (1 / live replicas). */
  fallback: (scale: number) => LimitStore;
  /** How long a lease lives unless renewed (renewed every third of it). Default LEASE_TTL_MS. */
  leaseTtlMs?: number;
  /** Told once when Redis goes down and once when it is back. */
  log?: (level: "warn" | "info", msg: string) => void;
}

type Commands = Redis & {
  dispatcherAcquire(...args: (string | number)[]): Promise<[number, number?, string?, number?]>;
  dispatcherRelease(...args: (string | number)[]): Promise<number>;
  dispatcherRenew(...args: (string | number)[]): Promise<number>;
  dispatcherPause(...args: (string | number)[]): Promise<number>;
  dispatcherStatus(...args: (string | number)[]): Promise<number[]>;
};

/**
 * Limits shared by every replica through Redis 7 (DESIGN.md §11): one Lua
 * script checks and charges all the limits of an attempt atomically, on
 * Redis' clock; concurrency leases expire unless renewed, so a replica that
 * dies frees them within LEASE_TTL_MS. Redis unreachable → the configured
 * behaviour: limits held in process at this replica's share, or UNAVAILABLE;
 * never a hang (every command is bounded by the connection's timeout).
 */
export class RedisLimitStore implements LimitStore {
  readonly health = new RedisHealth();
  private readonly r: Commands;
  private readonly held = new Map<string, { concKeys: string[] }>();
  private readonly specs = new Map<string, LimitSpec>();
  private readonly statuses = new Map<string, LimitStatus>();
  private fallbackStore: LimitStore | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private probing = false;
  private readonly ttl: number;

  constructor(private readonly o: RedisLimitOptions) {
    const r = o.redis as Commands;
    r.defineCommand("dispatcherAcquire", { lua: ACQUIRE });
    r.defineCommand("dispatcherRelease", { lua: RELEASE });
    r.defineCommand("dispatcherRenew", { lua: RENEW });
    r.defineCommand("dispatcherPause", { lua: PAUSE, numberOfKeys: 1 });
    r.defineCommand("dispatcherStatus", { lua: STATUS });
    this.r = r;
    this.ttl = o.leaseTtlMs ?? LEASE_TTL_MS;
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    every(Math.max(100, Math.floor(this.ttl / 3)), () => void this.renew());
    every(STATUS_EVERY_MS, () => void this.refreshStatus());
    every(HEARTBEAT_EVERY_MS, () => void this.heartbeat());
    every(PROBE_EVERY_MS, () => void this.probe());
    void this.heartbeat();
  }

  acquire(req: CapacityRequest): CapacityAnswer | Promise<CapacityAnswer> {
    for (const s of req.limits) this.specs.set(s.key, s);
    if (!this.health.up) return this.whileDown(req);
    const id = randomUUID();
    const keys: string[] = [];
    const args: (string | number)[] = [id, req.tokens, this.ttl, ARRIVAL_BOUND_MS];
    for (const s of req.limits) {
      keys.push(...this.keysOf(s.key));
      args.push(s.windowMs, s.requestsPerMinute ?? -1, s.tokensPerMinute ?? -1, s.maxConcurrency ?? -1);
    }
    const started = performance.now();
    return this.r.dispatcherAcquire(keys.length, ...keys, ...args).then(
      (a) => {
        this.health.ok(performance.now() - started);
        if (a[0] === 1) return { granted: true as const, lease: this.lease(id, req.limits) };
        const spec = req.limits[(a[1] ?? 1) - 1]!;
        return { granted: false as const, key: spec.key, kind: a[2] as LimitKind, retryInMs: Math.max(1, Number(a[3])) };
      },
      (e: unknown) => {
        this.wentDown(e);
        return this.whileDown(req);
      },
    );
  }

  pause(key: string, forMs: number): void {
    this.fallback().pause(key, forMs);
    if (!this.health.up) return;
    this.r.dispatcherPause(this.k(key, "pause"), Math.ceil(forMs)).catch((e: unknown) => this.wentDown(e));
  }

  status(spec: LimitSpec): LimitStatus {
    this.specs.set(spec.key, spec);
    if (!this.health.up) return this.fallback().status(spec);
    return this.statuses.get(spec.key) ?? { key: spec.key, requestsLeft: spec.requestsPerMinute, tokensLeft: spec.tokensPerMinute, concurrencyLeft: spec.maxConcurrency, pausedUntil: 0 };
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.r.zrem(`${this.o.keyPrefix}replicas`, this.o.replicaId).catch(() => undefined);
  }

  private lease(id: string, limits: readonly LimitSpec[]): CapacityLease {
    const concKeys = limits.filter((s) => s.maxConcurrency !== undefined).map((s) => this.k(s.key, "conc"));
    if (concKeys.length > 0) this.held.set(id, { concKeys });
    let done = false;
    return {
      release: (tokensUsed?: number) => {
        if (done) return;
        done = true;
        this.held.delete(id);
        const keys: string[] = [];
        for (const s of limits) keys.push(this.k(s.key, "log"), this.k(s.key, "tok"), this.k(s.key, "sum"), this.k(s.key, "conc"));
        // Fire and forget: a release that fails leaves a lease to expire and a reservation unsettled, never a stuck job.
        this.r.dispatcherRelease(keys.length, ...keys, id, tokensUsed ?? -1).catch((e: unknown) => this.health.error(e));
      },
    };
  }

  private whileDown(req: CapacityRequest): CapacityAnswer | Promise<CapacityAnswer> {
    if (this.o.onRedisDown === "fail_closed") {
      return { granted: false, key: req.limits[0]?.key ?? "", kind: "unavailable", retryInMs: 0, reason: "the shared limit store (Redis) is unreachable" };
    }
    return this.fallback().acquire(req);
  }

  private fallback(): LimitStore {
    this.fallbackStore ??= this.o.fallback(1 / Math.max(1, this.health.replicas));
    return this.fallbackStore;
  }

  private wentDown(e: unknown): void {
    this.health.error(e);
    if (!this.health.up) return;
    this.health.up = false;
    // A fresh local share each outage: the replica count may have changed since the last.
    this.fallbackStore = undefined;
    this.o.log?.("warn", `Redis unreachable: limits ${this.o.onRedisDown === "fail_open" ? "held in process at this replica's share" : "refuse new work (fail_closed)"} until it is back`);
  }

  private async probe(): Promise<void> {
    if (this.health.up || this.probing) return;
    this.probing = true;
    try {
      const started = performance.now();
      await this.r.ping();
      this.health.ok(performance.now() - started);
      this.health.up = true;
      this.o.log?.("info", "Redis reachable again: limits shared across replicas again");
    } catch (e) {
      this.health.error(e);
    } finally {
      this.probing = false;
    }
  }

  private async renew(): Promise<void> {
    if (!this.health.up || this.held.size === 0) return;
    const keys: string[] = [];
    const ids: string[] = [];
    for (const [id, h] of this.held) {
      for (const k of h.concKeys) {
        keys.push(k);
        ids.push(id);
      }
    }
    await this.r.dispatcherRenew(keys.length, ...keys, this.ttl, ...ids).catch((e: unknown) => this.wentDown(e));
  }

  private async heartbeat(): Promise<void> {
    if (!this.health.up) return;
    const set = `${this.o.keyPrefix}replicas`;
    try {
      const now = Date.now();
      const started = performance.now();
      const [, , count] = (await this.r
        .multi()
        .zadd(set, now + 3 * HEARTBEAT_EVERY_MS, this.o.replicaId)
        .zremrangebyscore(set, "-inf", now)
        .zcard(set)
        .exec())!.map(([err, v]) => {
        if (err) throw err;
        return v;
      }) as [unknown, unknown, number];
      this.health.ok(performance.now() - started);
      this.health.replicas = count;
    } catch (e) {
      this.wentDown(e);
    }
  }

  private async refreshStatus(): Promise<void> {
    if (!this.health.up || this.specs.size === 0) return;
    const specs = [...this.specs.values()];
    const keys: string[] = [];
    const args: number[] = [];
    for (const s of specs) {
      keys.push(...this.keysOf(s.key));
      args.push(s.windowMs, s.requestsPerMinute ?? -1, s.tokensPerMinute ?? -1, s.maxConcurrency ?? -1);
    }
    try {
      const out = await this.r.dispatcherStatus(keys.length, ...keys, ...args);
      specs.forEach((s, i) => {
        const [requests, tokens, leases, pauseMs] = out.slice(i * 4, i * 4 + 4) as [number, number, number, number];
        const left = (limit: number | undefined, used: number) => (limit === undefined ? undefined : Math.max(0, limit - used));
        this.statuses.set(s.key, {
          key: s.key,
          requestsLeft: left(s.requestsPerMinute, requests),
          tokensLeft: left(s.tokensPerMinute, tokens),
          concurrencyLeft: left(s.maxConcurrency, leases),
          pausedUntil: pauseMs > 0 ? Date.now() + pauseMs : 0,
        });
      });
    } catch (e) {
      this.wentDown(e);
    }
  }

  private keysOf(key: string): string[] {
    return [this.k(key, "log"), this.k(key, "tok"), this.k(key, "sum"), this.k(key, "conc"), this.k(key, "pause")];
  }

  private k(key: string, part: string): string {
    return `${this.o.keyPrefix}lim:${key}:${part}`;
  }
}
