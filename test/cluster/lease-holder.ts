// A replica in miniature, run as its own process by redis-limits.test.ts: it takes
// leases under a cluster-wide max_concurrency, says so, and holds them until killed.
import { connectRedis, redisReady } from "../../src/cluster/redis.js";
import { RedisLimitStore } from "../../src/cluster/redis-limits.js";
import { LocalLimitStore, systemClock } from "../../src/core/index.js";

async function main(): Promise<void> {
  const [url, prefix, count, ttl] = process.argv.slice(2) as [string, string, string, string];
  const redis = connectRedis({ url, keyPrefix: prefix, timeoutMs: 1_000 });
  await redisReady(redis, 5_000);
  const store = new RedisLimitStore({
    redis, keyPrefix: prefix, replicaId: "holder", onRedisDown: "fail_closed",
    fallback: (s) => new LocalLimitStore(systemClock, s), leaseTtlMs: Number(ttl),
  });
  const spec = { key: "worker:b/0", windowMs: 60_000, maxConcurrency: Number(count) };
  let held = 0;
  while (held < Number(count)) {
    const a = await store.acquire({ limits: [spec], tokens: 0 });
    if (a.granted) held++;
  }
  console.log(`held ${held}`);
  setInterval(() => {}, 1_000);
}

void main();
