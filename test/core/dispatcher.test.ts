import { describe, expect, it } from "vitest";
import { createDispatcher, DispatchError, type JobResult } from "../../src/core/index.js";
import { flush } from "../helpers/manual-clock.js";
import { codeOf, setup } from "./dispatcher-setup.js";

// The core's admission, order, selection, affinity, deadlines and synchronous handlers;
// how jobs end otherwise (cancellation, failures, close, observer, options): dispatcher-endings.test.ts.

describe("admission", () => {
  it("names the known backends for an unknown one", async () => {
    const { d } = setup();
    const err = await d.submit({ backend: "nope" }).catch((e: DispatchError) => e);
    expect(err).toBeInstanceOf(DispatchError);
    expect((err as DispatchError).code).toBe("not_found");
    expect((err as DispatchError).message).toContain("known backends: b");
  });

  it("rejects an empty backend as invalid_argument", async () => {
    const { d } = setup();
    expect(await codeOf(d.submit({ backend: "" }))).toBe("invalid_argument");
  });

  it("rejects at once with resource_exhausted when every queue is full, counting it", async () => {
    const { d, g } = setup({ workers: 2, maxConcurrency: 1, queueCapacity: 1 });
    const accepted = Array.from({ length: 4 }, () => d.submit({ backend: "b" }));
    expect(g.calls).toHaveLength(2);
    expect(await codeOf(d.submit({ backend: "b" }))).toBe("resource_exhausted");
    const snap = d.snapshot();
    expect(snap.map((s) => s.inflight)).toEqual([1, 1]);
    expect(snap.map((s) => s.queued)).toEqual([1, 1]);
    expect(snap.reduce((n, s) => n + s.rejected, 0)).toBe(1);
    while (g.running().length > 0) {
      g.running().forEach((c) => c.resolve());
      await flush();
    }
    await Promise.all(accepted);
  });
});

describe("concurrency and order", () => {
  it("holds the concurrency limit exactly and runs the queue FIFO", async () => {
    const { d, g, w } = setup({ workers: 1, maxConcurrency: 3, queueCapacity: 10 });
    const results = Array.from({ length: 10 }, (_, i) => d.submit({ backend: "b", payload: { json: i } }));
    expect(g.calls).toHaveLength(3);
    expect(w("b/0").inflight).toBe(3);
    expect(w("b/0").queued).toBe(7);
    let maxRunning = 0;
    while (g.running().length > 0) {
      maxRunning = Math.max(maxRunning, g.running().length);
      g.running()[0]!.resolve();
      await flush();
    }
    expect(maxRunning).toBe(3);
    expect(g.calls.map((c) => c.request.json)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const out = await Promise.all(results);
    expect(out.map((r) => r.payload.json)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(w("b/0").completed).toBe(10);
    expect(w("b/0").inflight + w("b/0").queued).toBe(0);
  });

  it("reports queue wait and execution from the clock", async () => {
    const { d, g, clock } = setup({ workers: 1, maxConcurrency: 1, queueCapacity: 1 });
    const first = d.submit({ backend: "b" });
    const second = d.submit({ backend: "b" });
    clock.advance(40);
    g.calls[0]!.resolve();
    await flush();
    clock.advance(15);
    g.calls[1]!.resolve();
    const [a, b] = await Promise.all([first, second]);
    expect(a.queueWaitMs).toBe(0);
    expect(a.executionMs).toBe(40);
    expect(b.queueWaitMs).toBe(40);
    expect(b.executionMs).toBe(15);
  });
});

describe("least-loaded selection", () => {
  it("sends each job to the least-loaded worker", async () => {
    const { d, g, w } = setup({ workers: 3, maxConcurrency: 2, queueCapacity: 5 });
    for (let i = 0; i < 6; i++) void d.submit({ backend: "b" });
    expect([w("b/0"), w("b/1"), w("b/2")].map((s) => s.inflight)).toEqual([2, 2, 2]);
    // Free two slots on b/1: it is now the least loaded and takes the next two jobs.
    const onB1 = g.running().filter((c) => c.ctx.workerId === "b/1");
    onB1.forEach((c) => c.resolve());
    await flush();
    void d.submit({ backend: "b" });
    void d.submit({ backend: "b" });
    expect(w("b/1").inflight).toBe(2);
    expect(w("b/0").queued + w("b/2").queued).toBe(0);
  });
});

describe("session affinity", () => {
  it("keeps a session on one worker and reports hit / miss / none", async () => {
    const { d, g } = setup({ workers: 4, maxConcurrency: 10, queueCapacity: 10 });
    const results: Promise<JobResult>[] = [];
    for (let i = 0; i < 5; i++) results.push(d.submit({ backend: "b", sessionId: "alice" }));
    results.push(d.submit({ backend: "b" }));
    g.calls.forEach((c) => c.resolve());
    const out = await Promise.all(results);
    expect(new Set(out.slice(0, 5).map((r) => r.workerId)).size).toBe(1);
    expect(out.map((r) => r.affinity)).toEqual(["miss", "hit", "hit", "hit", "hit", "none"]);
  });

  it("expires a pin after the TTL since its last use (sliding)", async () => {
    const { d, g, clock } = setup({ workers: 2, maxConcurrency: 10, queueCapacity: 10, ttlMs: 1_000 });
    const run = async (sid: string) => {
      const p = d.submit({ backend: "b", sessionId: sid });
      g.running().forEach((c) => c.resolve());
      return p;
    };
    expect((await run("s")).affinity).toBe("miss");
    clock.advance(900);
    expect((await run("s")).affinity).toBe("hit");
    clock.advance(900); // 1,800 ms after first use, 900 after the last: still live
    expect((await run("s")).affinity).toBe("hit");
    expect(d.snapshot().reduce((n, s) => n + s.sessions, 0)).toBe(1);
    clock.advance(1_000);
    expect((await run("s")).affinity).toBe("miss");
    clock.advance(1_001);
    expect(d.snapshot().reduce((n, s) => n + s.sessions, 0)).toBe(0);
  });

  it("spills to another worker when the pinned one is full, and re-pins there", async () => {
    const { d, g } = setup({ workers: 2, maxConcurrency: 1, queueCapacity: 0 });
    const first = d.submit({ backend: "b", sessionId: "s" });
    const pinned = g.calls[0]!.ctx.workerId;
    const second = d.submit({ backend: "b", sessionId: "s" });
    const other = g.calls[1]!.ctx.workerId;
    expect(other).not.toBe(pinned);
    g.calls.forEach((c) => c.resolve());
    expect((await first).affinity).toBe("miss");
    expect((await second).affinity).toBe("spill");
    const third = d.submit({ backend: "b", sessionId: "s" });
    g.calls[2]!.resolve();
    const r = await third;
    expect(r.affinity).toBe("hit");
    expect(r.workerId).toBe(other);
    expect(d.snapshot().find((s) => s.workerId === other)!.sessions).toBe(1);
    expect(d.snapshot().find((s) => s.workerId === pinned)!.sessions).toBe(0);
  });

  it("evicts the least recently used pin past the cap", async () => {
    const { d, g } = setup({ workers: 2, maxConcurrency: 10, queueCapacity: 10, maxPins: 2 });
    const run = async (sid: string) => {
      const p = d.submit({ backend: "b", sessionId: sid });
      g.running().forEach((c) => c.resolve());
      return (await p).affinity;
    };
    await run("a");
    await run("b");
    await run("a"); // a is now the most recent
    await run("c"); // evicts b
    expect(d.snapshot().reduce((n, s) => n + s.sessions, 0)).toBe(2);
    expect(await run("a")).toBe("hit");
    expect(await run("b")).toBe("miss");
  });
});

describe("deadlines", () => {
  it("removes a job whose deadline passes while queued, without running it", async () => {
    const { d, g, clock, w } = setup({ workers: 1, maxConcurrency: 1, queueCapacity: 5 });
    const running = d.submit({ backend: "b" });
    const queued = d.submit({ backend: "b", timeoutMs: 100, payload: { json: "late" } });
    expect(w("b/0").queued).toBe(1);
    clock.advance(100);
    expect(await codeOf(queued)).toBe("deadline_exceeded");
    expect(w("b/0").queued).toBe(0);
    g.calls[0]!.resolve();
    await running;
    await flush();
    expect(g.calls.map((c) => c.request.json)).not.toContain("late");
    expect(w("b/0").cancelled).toBe(1);
    expect(w("b/0").errors).toBe(0);
  });

  it("aborts a running handler's signal when the deadline passes, and frees its slot", async () => {
    const { d, g, clock, w } = setup({ workers: 1, maxConcurrency: 1, queueCapacity: 5 });
    const p = d.submit({ backend: "b", timeoutMs: 50 });
    const next = d.submit({ backend: "b" });
    const ctx = g.calls[0]!.ctx;
    expect(ctx.deadline).toBeGreaterThan(Date.now() - 1_000);
    clock.advance(50);
    expect(await codeOf(p)).toBe("deadline_exceeded");
    expect(ctx.signal.aborted).toBe(true);
    expect((ctx.signal.reason as DispatchError).code).toBe("deadline_exceeded");
    expect(g.calls).toHaveLength(2); // the queued job took the freed slot
    expect(w("b/0").inflight).toBe(1);
    g.calls[1]!.resolve();
    await next;
  });

  it("refuses a call whose deadline has already passed", async () => {
    const { d, g } = setup();
    expect(await codeOf(d.submit({ backend: "b", timeoutMs: 0 }))).toBe("deadline_exceeded");
    expect(g.calls).toHaveLength(0);
  });

  it("times out a handler that never settles, counting an error and freeing the slot", async () => {
    const { d, g, clock, w } = setup({ workers: 1, maxConcurrency: 1, timeoutMs: 200 });
    const p = d.submit({ backend: "b" });
    clock.advance(200);
    const err = await p.catch((e: DispatchError) => e);
    expect((err as DispatchError).code).toBe("deadline_exceeded");
    expect((err as DispatchError).message).toContain("timed out");
    expect(g.calls[0]!.ctx.signal.aborted).toBe(true);
    expect(w("b/0").inflight).toBe(0);
    expect(w("b/0").errors).toBe(1);
  });

  it("times out each running job at its own start + timeoutMs with one timer per worker, and leaves none when idle", async () => {
    const { d, g, clock, w } = setup({ workers: 1, maxConcurrency: 3, timeoutMs: 200 });
    const a = codeOf(d.submit({ backend: "b" }));
    clock.advance(50);
    const b = codeOf(d.submit({ backend: "b" }));
    clock.advance(50);
    const c = d.submit({ backend: "b" });
    expect(clock.pending).toBe(1);
    g.calls[0]!.resolve(); // the oldest finishes: the timer, armed for it, re-arms for the next
    await flush();
    expect(await a).toBe("ok");
    clock.advance(149); // past a's expiry, which b's timer was armed for
    expect(g.calls[1]!.ctx.signal.aborted).toBe(false);
    expect(clock.pending).toBe(1);
    clock.advance(1); // b: started at 50
    expect(await b).toBe("deadline_exceeded");
    expect(g.calls[1]!.ctx.signal.aborted).toBe(true);
    expect(g.calls[2]!.ctx.signal.aborted).toBe(false);
    g.calls[2]!.resolve();
    expect((await c).workerId).toBe("b/0");
    expect(w("b/0").errors).toBe(1);
    expect(w("b/0").inflight).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it("a call's deadline before the backend's timeout still ends a running job as the deadline", async () => {
    const { d, clock } = setup({ workers: 1, maxConcurrency: 1, timeoutMs: 200 });
    const p = d.submit({ backend: "b", timeoutMs: 100 });
    clock.advance(100);
    const err = await p.catch((e: DispatchError) => e);
    expect((err as DispatchError).message).toContain("deadline passed");
    expect(clock.pending).toBe(0);
  });
});

describe("synchronous handlers", () => {
  it("settle after submit returns, each exactly once, and free their slots for the queued", async () => {
    let calls = 0;
    const d = createDispatcher({
      backends: [{
        name: "s",
        workers: 1,
        maxConcurrency: 2,
        queueCapacity: 10,
        handler: (p) => {
          calls++;
          if (p.json === "throw") throw new DispatchError("unavailable", "sync failure");
          return p;
        },
      }],
    });
    const order: string[] = [];
    const ps = ["a", "throw", "c", "d", "throw"].map((v, i) =>
      d.submit({ backend: "s", payload: { json: v } }).then(
        (r) => order.push(`${i}:${String(r.payload.json)}`),
        (e: DispatchError) => order.push(`${i}:${e.code}`),
      ),
    );
    expect(order).toEqual([]);
    expect(calls).toBe(2); // the rest queued until a slot frees
    await Promise.all(ps);
    expect(calls).toBe(5);
    expect(order.sort()).toEqual(["0:a", "1:unavailable", "2:c", "3:d", "4:unavailable"]);
    const [snap] = d.snapshot();
    expect([snap!.completed, snap!.errors, snap!.inflight, snap!.queued]).toEqual([3, 2, 0, 0]);
  });
});
