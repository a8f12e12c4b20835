import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DispatcherService } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { haproxyMissing, startHaproxy, type HaproxyProcess } from "../helpers/haproxy.js";
import { redisMissing, startRedis, type RedisProcess } from "../helpers/redis-server.js";
import { startReplicas, type Replicas } from "../helpers/replicas.js";

const missing = redisMissing() ?? haproxyMissing();

/** Where one call landed: the replica (dispatcher-replica header) and the worker (worker_id). */
interface Landing {
  replica: string;
  worker: string;
}

describe.skipIf(missing !== undefined)("affinity across 3 replicas behind HAProxy, pins in Redis", () => {
  let redis: RedisProcess;
  let replicas: Replicas;
  /** As examples/cluster/haproxy.cfg: consistent hashing with bounded load (hash-balance-factor 150). */
  let proxy: HaproxyProcess;
  /** Consistent hashing alone: a session moves only when its replica leaves the ring. */
  let plain: HaproxyProcess;
  let client: Client<typeof DispatcherService>;
  let plainClient: Client<typeof DispatcherService>;

  async function call(session: string, via = client): Promise<Landing> {
    let replica = "";
    const r = await via.submit({ backend: "llm" }, { headers: { "dispatcher-session": session }, timeoutMs: 10_000, onHeader: (h) => (replica = h.get("dispatcher-replica") ?? "") });
    return { replica, worker: r.workerId };
  }

  beforeAll(async () => {
    redis = await startRedis();
    replicas = await startReplicas({
      count: 3,
      redisUrl: redis.url,
      // Eight workers: a session that lost its pin lands on its old worker by chance only 1 time in 8.
      backends: [{ name: "llm", kind: "echo", workers: 8, max_concurrency: 64, affinity: { ttl: "10m" } }],
    });
    proxy = await startHaproxy({ servers: replicas.ports });
    plain = await startHaproxy({ servers: replicas.ports, hashBalanceFactor: 0 });
    client = createClient(DispatcherService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${proxy.port}` }));
    plainClient = createClient(DispatcherService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${plain.port}` }));
    // Until the health checks have let every replica in, sessions hash onto fewer replicas.
    for (const [via, p] of [[client, proxy], [plainClient, plain]] as const) {
      const seen = new Set<string>();
      const end = Date.now() + 20_000;
      for (let i = 0; seen.size < 3; i++) {
        if (Date.now() > end) throw new Error(`HAProxy sent calls to ${[...seen].join(", ")} only:\n${p.config}`);
        seen.add((await call(`probe-${i}`, via)).replica);
      }
    }
  }, 120_000);

  afterAll(async () => {
    await proxy?.stop();
    await plain?.stop();
    await replicas?.stop();
    await redis?.stop();
  });

  it("calls with the same dispatcher-session stick to one replica and one worker", async () => {
    const landings = new Map<string, Landing[]>();
    for (let round = 0; round < 5; round++) {
      await Promise.all(
        Array.from({ length: 60 }, async (_, s) => {
          const l = await call(`stick-${s}`);
          landings.set(`stick-${s}`, [...(landings.get(`stick-${s}`) ?? []), l]);
        }),
      );
    }
    const replicasUsed = new Set<string>();
    for (const [session, ls] of landings) {
      expect(new Set(ls.map((l) => `${l.replica} ${l.worker}`)).size, session).toBe(1);
      replicasUsed.add(ls[0]!.replica);
    }
    // The hash spreads sessions: 60 sessions on one replica would mean the header was not hashed.
    expect(replicasUsed.size).toBe(3);
  });

  it("with bounded load, calls a busy replica sheds land on another one and keep their worker", async () => {
    const sessions = Array.from({ length: 150 }, (_, i) => `load-${i}`);
    const first = new Map<string, Landing>();
    for (const s of sessions) first.set(s, await call(s));
    let calls = 0;
    let otherReplica = 0;
    let otherWorker = 0;
    let next = 0;
    const end = Date.now() + 2_000;
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        while (Date.now() < end) {
          const s = sessions[next++ % sessions.length]!;
          const l = await call(s);
          calls++;
          if (l.replica !== first.get(s)!.replica) otherReplica++;
          if (l.worker !== first.get(s)!.worker) otherWorker++;
        }
      }),
    );
    // How often HAProxy moved a call is its business (hash-balance-factor); the worker must not change.
    console.log(`bounded load: ${calls} calls, ${otherReplica} on another replica, ${otherWorker} on another worker`);
    expect(calls).toBeGreaterThan(100);
    expect(otherWorker).toBe(0);
  }, 60_000);

  it("SIGKILL of one replica mid-load: the others' sessions stay put; its own keep their worker on another replica", async () => {
    // Consistent hashing without bounded load: only the dead replica's sessions move.
    const call1 = (s: string) => call(s, plainClient);
    const sessions = Array.from({ length: 150 }, (_, i) => `conv-${i}`);
    const before = new Map<string, Landing>();
    for (const s of sessions) before.set(s, await call1(s));
    // Let the pins' writes (batched, behind the calls) reach Redis.
    await new Promise((r) => setTimeout(r, 300));
    const victim = "r1";
    const victimIndex = 1;

    const after = new Map<string, Landing[]>();
    let errors = 0;
    let killedAt = Infinity;
    let stop = false;
    let next = 0;
    const loops = Array.from({ length: 12 }, async () => {
      while (!stop) {
        const s = sessions[next++ % sessions.length]!;
        const started = Date.now();
        try {
          const l = await call1(s);
          // Only calls sent once the replica was dead say where sessions go after the kill.
          if (started > killedAt) after.set(s, [...(after.get(s) ?? []), l]);
        } catch {
          errors++;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 1_000));
    await replicas.kill(victimIndex, "SIGKILL");
    killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 3_000));
    stop = true;
    await Promise.all(loops);
    // Once HAProxy has seen the replica go, every session is answered.
    for (const s of sessions) after.set(s, [...(after.get(s) ?? []), await call1(s)]);

    let survivors = 0;
    let kept = 0;
    let moved = 0;
    let keptWorker = 0;
    for (const s of sessions) {
      const b = before.get(s)!;
      const ls = after.get(s)!;
      if (b.replica !== victim) {
        survivors++;
        if (ls.every((l) => l.replica === b.replica && l.worker === b.worker)) kept++;
      } else {
        moved++;
        const last = ls[ls.length - 1]!;
        expect(last.replica).not.toBe(victim);
        if (last.worker === b.worker) keptWorker++;
      }
    }
    const summary = { survivors, kept, moved, keptWorker, errors };
    console.log(`replica killed mid-load: ${JSON.stringify(summary)}`);
    expect(moved, JSON.stringify(summary)).toBeGreaterThan(0);
    expect(kept / survivors, JSON.stringify(summary)).toBeGreaterThanOrEqual(0.99);
    expect(keptWorker, JSON.stringify(summary)).toBe(moved);
  }, 60_000);
});
