import type { BackendLog } from "../backends/log.js";
import type { ClusterConfig, JobsConfig } from "../config.js";
import { LocalJobStore, type JobStore } from "../core/index.js";
import { connectRedis, redactRedisUrl, redisReady } from "../cluster/redis.js";
import { RedisJobStore } from "../cluster/redis-jobs.js";

/**
 * Where background jobs are kept: in this process (bounded, lost on
 * restart), or with `cluster.redis_url` in Redis, durable across replicas.
 * The Redis store takes two connections of its own: one for commands, one
 * for the runner's blocking reads of the job queue.
 */
export async function jobStoreFor(cluster: ClusterConfig, jobs: JobsConfig, log: BackendLog | undefined): Promise<JobStore> {
  if (cluster.redisUrl === undefined) return new LocalJobStore({ resultTtlMs: jobs.resultTtlMs, maxJobs: jobs.maxJobs });
  const settings = { url: cluster.redisUrl, keyPrefix: cluster.keyPrefix, timeoutMs: cluster.redisTimeoutMs };
  const redis = connectRedis(settings);
  // Blocking reads wait up to a second: that connection's commands may take that long, by design.
  const blocking = connectRedis({ ...settings, timeoutMs: cluster.redisTimeoutMs + 2_000 });
  const [ready] = await Promise.all([redisReady(redis, 2_000), redisReady(blocking, 2_000)]);
  if (!ready) log?.warn({ redis: redactRedisUrl(cluster.redisUrl) }, "background jobs: Redis not reachable yet; Enqueue answers UNAVAILABLE until it is");
  return new RedisJobStore({
    redis,
    blocking,
    keyPrefix: cluster.keyPrefix,
    consumer: `${cluster.replicaId ?? "replica"}:${process.pid}:${Date.now().toString(36)}`,
    resultTtlMs: jobs.resultTtlMs,
    claimTimeoutMs: jobs.claimTimeoutMs,
  });
}
