import type { BackendLog } from "../backends/log.js";
import type { ClusterConfig } from "../config.js";
import { connectRedis, redactRedisUrl, redisReady } from "./redis.js";
import { RedisPinStore } from "./redis-pins.js";

/** Longest the start waits for Redis: a replica must start (and serve, pins local) with Redis down. */
const READY_WAIT_MS = 2_000;

/**
 * The pin store of `cluster.redis_url`, on its own connection (pin writes are
 * pipelined in bulk and must not queue ahead of limit scripts), or undefined
 * without Redis. `close` sends the writes still held, then disconnects.
 */
export async function sharedPins(
  cluster: ClusterConfig,
  log: BackendLog | undefined,
): Promise<{ store: RedisPinStore; close(): Promise<void> } | undefined> {
  if (cluster.redisUrl === undefined) return undefined;
  const redis = connectRedis({ url: cluster.redisUrl, keyPrefix: cluster.keyPrefix, timeoutMs: cluster.redisTimeoutMs });
  if (!(await redisReady(redis, READY_WAIT_MS))) {
    log?.warn({ redis: redactRedisUrl(cluster.redisUrl) }, "session pins: Redis not reachable yet; pins stay in this process until it is");
  }
  const store = new RedisPinStore(redis, cluster.keyPrefix);
  return {
    store,
    async close() {
      await store.flush();
      redis.disconnect();
    },
  };
}
