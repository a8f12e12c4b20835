import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { connectRedis, redisReady } from "../../src/cluster/redis.js";
import { RedisPinStore } from "../../src/cluster/redis-pins.js";
import { validateConfig } from "../../src/config.js";
import { connectClient } from "../helpers/clients.js";
import { redisMissing, startRedis, type RedisProcess } from "../helpers/redis-server.js";

const missing = redisMissing();

function replica(url: string, id: string): Promise<App> {
  return startApp(
    validateConfig({
      server: { port: 0, shutdown_grace: "2s" },
      cluster: { redis_url: url, key_prefix: "pins-test:", replica_id: id },
      // Eight workers: two replicas picking the same one for a new session by chance is 1 in 8 per session.
      backends: [{ name: "echo", kind: "echo", workers: 8, affinity: { ttl: "5s" } }],
    }),
  );
}

/** A connection of the test's own, to look at and plant keys. */
async function peekAt(url: string) {
  const c = connectRedis({ url, keyPrefix: "pins-test:", timeoutMs: 1_000 });
  if (!(await redisReady(c, 5_000))) throw new Error("redis not ready");
  return c;
}

async function until(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(missing !== undefined)("session pins shared through Redis", () => {
  let redis: RedisProcess;
  let a: App;
  let b: App;
  beforeAll(async () => {
    redis = await startRedis();
    [a, b] = await Promise.all([replica(redis.url, "a"), replica(redis.url, "b")]);
  });
  afterAll(async () => {
    await Promise.allSettled([a?.close(), b?.close()]);
    await redis?.stop();
  });

  it("a session pinned on one replica keeps its worker on another, as a hit", async () => {
    const ca = connectClient(a.server.port, "grpc");
    const cb = connectClient(b.server.port, "grpc");
    const peek = await peekAt(redis.url);
    try {
      for (let i = 0; i < 20; i++) {
        const session = `conv-${i}`;
        const first = await ca.submit({ backend: "echo" }, { headers: { "dispatcher-session": session } });
        expect(first.affinity).toBe("miss");
        // Written behind the call, not before its answer: wait for the write to land.
        await until(async () => (await peek.get(`pins-test:pin:echo:${session}`)) === first.workerId);
        const pttl = await peek.pttl(`pins-test:pin:echo:${session}`);
        expect(pttl).toBeGreaterThan(0);
        expect(pttl).toBeLessThanOrEqual(5_000);
        const there = await cb.submit({ backend: "echo", sessionId: session });
        expect([there.workerId, there.affinity]).toEqual([first.workerId, "hit"]);
      }
    } finally {
      peek.disconnect();
    }
  });

  it("a pin naming a worker the backend does not have is passed over", async () => {
    const peek = await peekAt(redis.url);
    try {
      await peek.set("pins-test:pin:echo:stale", "echo/99", "PX", 5_000);
      const r = await connectClient(b.server.port, "grpc").submit({ backend: "echo", sessionId: "stale" });
      expect(r.affinity).toBe("miss");
      expect(r.workerId).toMatch(/^echo\/[0-7]$/);
    } finally {
      peek.disconnect();
    }
  });

  it("the store batches writes into one pipeline per turn and shares one GET between concurrent lookups", async () => {
    const peek = await peekAt(redis.url);
    const store = new RedisPinStore(peek, "batch:");
    try {
      for (let i = 0; i < 1_000; i++) store.write("echo", `s${i}`, `echo/${i % 8}`, 60_000);
      // Rewrites of one session in the same turn are one command.
      store.write("echo", "s0", "echo/7", 60_000);
      await new Promise((r) => setImmediate(r));
      await until(async () => store.stats.written === 1_000);
      expect(await peek.get("batch:pin:echo:s0")).toBe("echo/7");
      expect(await peek.get("batch:pin:echo:s999")).toBe("echo/7");
      expect(await peek.pttl("batch:pin:echo:s500")).toBeGreaterThan(50_000);
      const [a, b] = await Promise.all([store.lookup("echo", "s3"), store.lookup("echo", "s3")]);
      expect([a, b]).toEqual(["echo/3", "echo/3"]);
      expect(store.stats.lookups).toBe(1);
      expect(await store.lookup("echo", "nobody")).toBeUndefined();
      expect(store.stats).toMatchObject({ lookups: 2, found: 1, errors: 0, dropped: 0 });
    } finally {
      peek.disconnect();
    }
  });

  it("with Redis stopped, calls with a session are answered (a miss), within the Redis timeout", async () => {
    const store = new RedisPinStore(connectRedis({ url: redis.url, keyPrefix: "x:", timeoutMs: 250 }), "x:");
    await redis.stop();
    try {
      const client = connectClient(a.server.port, "grpc");
      const r = await client.submit({ backend: "echo", sessionId: "while-down" }, { timeoutMs: 5_000 });
      expect(r.affinity).toBe("miss");
      expect(await store.lookup("echo", "while-down")).toBeUndefined();
      expect(store.stats.errors).toBe(1);
    } finally {
      await redis.restart();
    }
  });
});
