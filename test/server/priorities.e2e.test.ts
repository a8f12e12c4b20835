import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { echoHandler } from "../../src/backends/echo.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";

/**
 * Priorities, tenant fairness and deadline-aware admission end to end: a real
 * server, real clients, a slow echo backend of one slot (each call 40 ms).
 */
let app: App;
const SERVICE_MS = 40;

beforeAll(async () => {
  app = await startTestApp({ backends: [{ name: "echo", kind: "echo" }] });
  for (const name of ["fair", "tiers", "full", "deadlines"]) {
    app.dispatcher.register({
      name,
      handler: echoHandler({ delayMs: SERVICE_MS }),
      maxConcurrency: 1,
      queueCapacity: name === "full" ? 3 : 64,
      scheduling: { tenantQueueShare: name === "fair" ? 0.75 : 1, deadlineAware: name === "deadlines" },
      outlier: { consecutiveFailures: 0 },
    });
  }
});
afterAll(async () => {
  await app?.close();
});

const ms = (d: { seconds: bigint; nanos: number } | undefined) => (d === undefined ? 0 : Number(d.seconds) * 1000 + d.nanos / 1e6);

describe("scheduling end to end", () => {
  it("a flooding tenant does not hold a quiet tenant behind its backlog", async () => {
    const client = connectClient(app.server.port, "grpc");
    const flood = Array.from({ length: 30 }, () => client.submit({ backend: "fair", tenant: "flood" }));
    await new Promise((r) => setTimeout(r, 20));
    const quiet = await client.submit({ backend: "fair", tenant: "quiet" });
    // FIFO would put it behind ~29 flood calls (over a second); round-robin serves it within about one call.
    expect(ms(quiet.queueWait)).toBeLessThan(4 * SERVICE_MS);
    await Promise.all(flood);
  });

  it("a tier-0 call is served before a tier-2 backlog", async () => {
    const client = connectClient(app.server.port, "grpc");
    const batch = Array.from({ length: 20 }, () => client.submit({ backend: "tiers", priority: 2 }));
    await new Promise((r) => setTimeout(r, 20));
    const urgent = await client.submit({ backend: "tiers", priority: 0 });
    expect(ms(urgent.queueWait)).toBeLessThan(3 * SERVICE_MS);
    await Promise.all(batch);
  });

  it("on a full queue a more urgent call displaces the newest low-tier call, answered RESOURCE_EXHAUSTED", async () => {
    const client = connectClient(app.server.port, "grpc");
    const low = Array.from({ length: 4 }, () => client.submit({ backend: "full", priority: 3 }).then(() => "ok", (e: unknown) => ConnectError.from(e)));
    await new Promise((r) => setTimeout(r, 20));
    const urgent = await client.submit({ backend: "full", priority: 0 });
    expect(urgent.workerId).toBe("full/0");
    const results = await Promise.all(low);
    const displaced = results.filter((r): r is ConnectError => r instanceof ConnectError);
    expect(displaced).toHaveLength(1);
    expect(displaced[0]!.code).toBe(Code.ResourceExhausted);
    expect(displaced[0]!.rawMessage).toMatch(/displaced from the queue of full\/0 by a more urgent call/);
    expect(app.dispatcher.snapshot(["full"])[0]!.displaced).toBe(1);
  });

  it("refuses at once a call whose deadline its estimated wait would miss", async () => {
    const client = connectClient(app.server.port, "grpc");
    for (let i = 0; i < 5; i++) await client.submit({ backend: "deadlines" });
    const backlog = Array.from({ length: 10 }, () => client.submit({ backend: "deadlines" }));
    await new Promise((r) => setTimeout(r, 20));
    const err = await client.submit({ backend: "deadlines" }, { timeoutMs: 100 }).catch((e: unknown) => ConnectError.from(e));
    // RESOURCE_EXHAUSTED naming the estimate: refused at admission (a call that waited would end DEADLINE_EXCEEDED).
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((err as ConnectError).rawMessage).toMatch(/estimated queue wait on deadlines\/0 is \d+ ms, more than the \d+ ms left/);
    await Promise.all(backlog);
  });

  it("WorkerMetrics shows tiers and tenants", async () => {
    // A backend whose one slot stays taken until the test lets go: the queue holds still while it is read.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    app.dispatcher.register({ name: "held", maxConcurrency: 1, handler: async (p) => (await held, p) });
    const client = connectClient(app.server.port, "grpc");
    const pending = [
      ...Array.from({ length: 3 }, () => client.submit({ backend: "held", priority: 1, tenant: "a" })),
      ...Array.from({ length: 2 }, () => client.submit({ backend: "held", priority: 2, tenant: "b" })),
    ];
    await expect.poll(() => app.dispatcher.snapshot(["held"])[0]!.queued, { timeout: 5_000 }).toBe(4);
    let first;
    for await (const m of client.workerMetrics({ backends: ["held"] })) {
      first = m.workers[0]!;
      break;
    }
    expect(first!.tiers.map((t) => t.queued)).toEqual([0, 2, 2, 0]);
    expect(first!.tenants.map((t) => [t.tenant, t.queued]).sort()).toEqual([["a", 2], ["b", 2]]);
    release();
    await Promise.all(pending);
  });
});
