import { spawn, spawnSync } from "node:child_process";
import { connect, createServer } from "node:net";
import { connectRedis, redisReady } from "../../src/cluster/redis.js";
import { RedisLimitStore } from "../../src/cluster/redis-limits.js";
import { createDispatcher, LocalLimitStore, systemClock, type LimitStore } from "../../src/core/index.js";
import { fmt, percentile, rounds, table, writeResult, type BenchContext } from "../lib/report.js";

/**
 * What a limit costs per admission: the time of one Submit through the core
 * with no limits, with limits held in process, and with limits shared through
 * Redis on loopback (one script round trip per start), against a bare Redis
 * PING measured in the same rounds. Calls one at a time: this is latency, not
 * throughput. The target (issue 13): Redis adds ≤ 0.3 ms p99 per admission.
 */
export async function limitsSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const missing = spawnSync("redis-server", ["--version"], { stdio: "ignore" });
  if (missing.error !== undefined || missing.status !== 0) {
    ctx.log("limits: redis-server not installed (apt-get install redis-server); suite skipped");
    return { unavailable: "redis-server not installed" };
  }
  const port = await freePort();
  const server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  try {
    await untilAccepts(port);
    const url = `redis://127.0.0.1:${port}`;
    const redis = connectRedis({ url, keyPrefix: "bench:", timeoutMs: 1_000 });
    await redisReady(redis, 5_000);
    const shared = new RedisLimitStore({ redis, keyPrefix: "bench:", replicaId: "bench", onRedisDown: "fail_closed", fallback: (s) => new LocalLimitStore(systemClock, s) });
    // Limits high enough never to refuse: the figure is the cost of asking, not of waiting.
    const limits = { requestsPerMinute: 100_000_000, tokensPerMinute: 1_000_000_000, maxConcurrency: 1_000_000 };
    const calls = ctx.mode === "full" ? 5_000 : ctx.mode === "quick" ? 1_000 : 100;
    const n = rounds(ctx, 5);
    const samples: Record<string, number[]> = { ping: [], none: [], local: [], redis: [] };
    const dispatchers = {
      none: createDispatcher({ backends: [{ name: "b", handler: () => ({ json: null }) }] }),
      local: createDispatcher({ backends: [{ name: "b", handler: () => ({ json: null }), limits }] }),
      redis: createDispatcher({ limitStore: shared as LimitStore, backends: [{ name: "b", handler: () => ({ json: null }), limits }] }),
    };
    for (let r = 0; r < n; r++) {
      // Interleaved, in a rotating order, so that drift in the machine's load falls on every target alike.
      const order = ["ping", "none", "local", "redis"];
      for (let k = 0; k < r % order.length; k++) order.push(order.shift()!);
      for (const key of order) {
        for (let i = 0; i < calls; i++) {
          const t0 = performance.now();
          if (key === "ping") await redis.ping();
          else await dispatchers[key as keyof typeof dispatchers].submit({ backend: "b" });
          samples[key]!.push(performance.now() - t0);
        }
      }
    }
    const row = (key: string, what: string) => [what, fmt(percentile(samples[key]!, 0.5) * 1000), fmt(percentile(samples[key]!, 0.99) * 1000), fmt(percentile(samples[key]!, 0.999) * 1000)];
    const p99 = (key: string) => percentile(samples[key]!, 0.99);
    const added = p99("redis") - p99("none");
    ctx.log(`\nLimits per admission: ${n} interleaved rounds × ${fmt(calls)} sequential Submits through the core (echo-like no-op handler), limits that never refuse`);
    ctx.log(table(["target", "p50 µs", "p99 µs", "p99.9 µs"], [
      row("ping", "Redis PING (baseline round trip)"),
      row("none", "Submit, no limits"),
      row("local", "Submit, limits in process"),
      row("redis", "Submit, limits in Redis (one script per start + release)"),
    ]));
    ctx.log(table(["figure", "value", "target"], [
      ["added p99 per admission, Redis vs no limits (ms)", fmt(added, 3), "≤ 0.3"],
      ["added p99 per admission, in process vs no limits (ms)", fmt(p99("local") - p99("none"), 3), ""],
    ]));
    await Promise.all(Object.values(dispatchers).map((d) => d.close()));
    await shared.close();
    redis.disconnect();
    const data = { calls, rounds: n, p50Ms: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, percentile(v, 0.5)])), p99Ms: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, percentile(v, 0.99)])), addedP99Ms: added };
    ctx.log(`wrote ${writeResult(ctx, "limits", data)}`);
    return data;
  } finally {
    server.kill("SIGTERM");
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function untilAccepts(port: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`redis-server did not accept connections on port ${port}`);
}
