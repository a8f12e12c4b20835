import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRedis, redisReady } from "../src/cluster/redis.js";
import { redisMissing, startRedis, type RedisProcess } from "./helpers/redis-server.js";

const missing = redisMissing();

describe.skipIf(missing !== undefined)("a real redis-server for the tests", () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it("answers, fails fast while stopped, and answers again after a restart", async () => {
    const c = connectRedis({ url: redis.url, keyPrefix: "t:", timeoutMs: 250 });
    try {
      expect(await redisReady(c, 5_000)).toBe(true);
      await c.set("t:k", "1");
      expect(await c.get("t:k")).toBe("1");
      await redis.stop();
      const t0 = Date.now();
      await expect(c.get("t:k")).rejects.toThrow();
      // Fails at once or at the command timeout: never hangs.
      expect(Date.now() - t0).toBeLessThan(5_000);
      await redis.restart();
      let back = false;
      for (let i = 0; i < 200 && !back; i++) {
        back = await c.ping().then(() => true, () => false);
        if (!back) await new Promise((r) => setTimeout(r, 25));
      }
      expect(back).toBe(true);
      // A restarted Redis is empty: nothing is persisted.
      expect(await c.get("t:k")).toBeNull();
    } finally {
      c.disconnect();
    }
  });
});

if (missing !== undefined) console.warn(`skipping Redis tests: ${missing}`);
