import { Redis, type RedisOptions } from "ioredis";

/** How the service connects to Redis (from `cluster`, src/config/types.ts ClusterConfig). */
export interface RedisSettings {
  url: string;
  /** Prefix of every key the service writes. */
  keyPrefix: string;
  /** Longest wait for one command, ms; past it the command fails and callers treat Redis as down. */
  timeoutMs: number;
}

/**
 * One ioredis connection with the service's rules: a command never waits
 * longer than `timeoutMs` (a Redis that stops answering must not hang a
 * Submit), commands issued while disconnected fail at once instead of piling
 * up in an offline queue, and reconnects back off up to 1 s forever (Redis
 * coming back is recovery, not a restart). Keys are not auto-prefixed:
 * scripts take full key names, so callers prefix them themselves.
 */
export function connectRedis(s: RedisSettings, extra: RedisOptions = {}): Redis {
  const redis = new Redis(s.url, {
    commandTimeout: s.timeoutMs,
    connectTimeout: Math.max(1000, s.timeoutMs),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // ioredis' default: the first try at once, then grow to 1 s; never give up.
    retryStrategy: (times) => Math.min(times * 50, 1000),
    lazyConnect: false,
    ...extra,
  });
  // Without a listener, ioredis prints every connection error to stderr; callers observe errors through failed commands.
  redis.on("error", () => {});
  return redis;
}

/** A Redis URL with its password, if any, replaced: safe for logs and errors. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "redis://(invalid url)";
  }
}

/**
 * Resolves once `redis` is connected, or false after `withinMs`. Commands
 * sent before that fail at once (no offline queue): the service starts and
 * serves with Redis down, as `cluster.on_redis_down` says.
 */
export function redisReady(redis: Redis, withinMs: number): Promise<boolean> {
  if (redis.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), withinMs);
    redis.on("ready", onReady);
  });
}
