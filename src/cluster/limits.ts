import { hostname } from "node:os";
import type { BackendLog } from "../backends/log.js";
import type { ClusterConfig } from "../config.js";
import { LocalLimitStore, systemClock } from "../core/index.js";
import { connectRedis, redactRedisUrl, redisReady } from "./redis.js";
import { RedisLimitStore } from "./redis-limits.js";

/** Longest the start waits for Redis: a replica must start (and serve, as on_redis_down says) with Redis down. */
const READY_WAIT_MS = 2_000;

/**
 * The limit store of `cluster.redis_url` on its own connection (limit scripts
 * are on every limited start's path and must not wait behind bulk pin
 * writes), or undefined without Redis: the core then holds limits in process.
 */
export async function sharedLimits(
  cluster: ClusterConfig,
  log: BackendLog | undefined,
): Promise<{ store: RedisLimitStore; close(): Promise<void> } | undefined> {
  if (cluster.redisUrl === undefined) return undefined;
  const redis = connectRedis({ url: cluster.redisUrl, keyPrefix: cluster.keyPrefix, timeoutMs: cluster.redisTimeoutMs });
  const ready = await redisReady(redis, READY_WAIT_MS);
  const where = redactRedisUrl(cluster.redisUrl);
  const store = new RedisLimitStore({
    redis,
    keyPrefix: cluster.keyPrefix,
    // Unique per process: a restarted replica is a new member of the heartbeat set, the old one expires.
    replicaId: `${cluster.replicaId ?? hostname()}:${process.pid}`,
    onRedisDown: cluster.onRedisDown,
    fallback: (scale) => new LocalLimitStore(systemClock, scale),
    log: (level, msg) => log?.[level]({ redis: where }, msg),
  });
  if (!ready) {
    store.health.up = false;
    log?.warn({ redis: where }, `limits: Redis not reachable yet; ${cluster.onRedisDown === "fail_open" ? "held in process at this replica's share" : "limited work is refused (fail_closed)"} until it is`);
  }
  return {
    store,
    async close() {
      await store.close();
      redis.disconnect();
    },
  };
}
