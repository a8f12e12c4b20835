import { describe, expect, it } from "vitest";
import { createDispatcher, type HandlerResult } from "../../src/core/index.js";
import { deferred } from "../helpers/app.js";

/** Two workers of one slot each; every handler waits on a deferred the test settles. */
function setup(spillLoadFactor?: number) {
  const pending: ReturnType<typeof deferred<HandlerResult>>[] = [];
  const d = createDispatcher({
    random: () => 0,
    backends: [{
      name: "b",
      workers: 2,
      maxConcurrency: 1,
      queueCapacity: 8,
      affinity: { ttlMs: 60_000, spillLoadFactor },
      handler: () => {
        const p = deferred<HandlerResult>();
        pending.push(p);
        return p.promise;
      },
    }],
  });
  return { d, pending };
}

describe("affinity.spillLoadFactor", () => {
  it("is off by default: a hit stays on its busy worker while it can admit", async () => {
    const { d, pending } = setup();
    const results = [1, 2, 3].map(() => d.submit({ backend: "b", sessionId: "hot" }));
    expect(d.snapshot().map((w) => w.inflight + w.queued).sort()).toEqual([0, 3]);
    // Each job starts when the one before it ends.
    for (let i = 0; i < 3; i++) {
      await Promise.resolve();
      while (pending.length <= i) await new Promise((r) => setImmediate(r));
      pending[i]!.resolve({ json: i });
    }
    expect((await Promise.all(results)).map((r) => r.affinity)).toEqual(["miss", "hit", "hit"]);
    await d.close();
  });

  it("spills a hit to the least-loaded worker when the pin's load passes the bound, and re-pins", async () => {
    const { d, pending } = setup(1.25);
    const results = [
      d.submit({ backend: "b", sessionId: "hot" }), // miss: pinned to an idle worker
      d.submit({ backend: "b", sessionId: "hot" }), // hit: 2 jobs ≤ ⌈1.25 × 2 × ½⌉
      d.submit({ backend: "b", sessionId: "hot" }), // 3 jobs > ⌈1.25 × 3 × ½⌉ = 2: spills
    ];
    expect(d.snapshot().map((w) => w.inflight + w.queued).sort()).toEqual([1, 2]);
    for (let i = 0; i < 3; i++) {
      while (pending.length <= i) await new Promise((r) => setImmediate(r));
      pending[i]!.resolve({ json: i });
    }
    const [a, b, c] = await Promise.all(results);
    expect([a!.affinity, b!.affinity, c!.affinity]).toEqual(["miss", "hit", "spill"]);
    expect(c!.workerId).not.toBe(a!.workerId);
    // The session now lives on the worker it spilled to.
    const next = d.submit({ backend: "b", sessionId: "hot" });
    pending.at(-1)!.resolve({ json: 3 });
    const r = await next;
    expect(r.affinity).toBe("hit");
    expect(r.workerId).toBe(c!.workerId);
    await d.close();
  });

  it("rejects a factor between 0 and 1", () => {
    expect(() => setup(0.5)).toThrow(/affinity.spillLoadFactor: expected 0 \(off\) or a number ≥ 1, got 0.5/);
  });
});
