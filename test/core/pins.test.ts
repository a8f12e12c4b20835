import { describe, expect, it } from "vitest";
import { createDispatcher, type PinStore } from "../../src/core/index.js";
import { manualClock } from "../helpers/manual-clock.js";

/** An in-process PinStore: what another replica would have written, and what this one writes. */
class MemoryPins implements PinStore {
  readonly pins = new Map<string, string>();
  readonly writes: string[] = [];
  lookups = 0;
  write(backend: string, session: string, workerId: string, ttlMs: number): void {
    this.writes.push(`${backend}|${session}|${workerId}|${ttlMs}`);
    this.pins.set(`${backend}|${session}`, workerId);
  }
  lookup(backend: string, session: string): Promise<string | undefined> {
    this.lookups++;
    return Promise.resolve(this.pins.get(`${backend}|${session}`));
  }
}

function dispatcher(store: PinStore, ttlMs = 1_000) {
  const clock = manualClock();
  const d = createDispatcher({
    clock,
    pinStore: store,
    backends: [{ name: "b", handler: (_p, ctx) => ({ json: ctx.workerId }), workers: 3, affinity: { ttlMs } }],
  });
  return { d, clock };
}

describe("pins shared through a PinStore", () => {
  it("a local miss takes the worker another replica pinned, as a hit, and writes nothing back", async () => {
    const store = new MemoryPins();
    store.pins.set("b|s1", "b/2");
    const { d } = dispatcher(store);
    const r = await d.submit({ backend: "b", sessionId: "s1" });
    expect(r.workerId).toBe("b/2");
    expect(r.affinity).toBe("hit");
    expect(store.lookups).toBe(1);
    expect(store.writes).toEqual([]);
    // Now pinned here: no second lookup.
    const again = await d.submit({ backend: "b", sessionId: "s1" });
    expect([again.workerId, again.affinity]).toEqual(["b/2", "hit"]);
    expect(store.lookups).toBe(1);
  });

  it("a new pin is written through with the backend's TTL; hits rewrite it only once a tenth of the TTL has passed", async () => {
    const store = new MemoryPins();
    const { d, clock } = dispatcher(store, 1_000);
    const first = await d.submit({ backend: "b", sessionId: "s" });
    expect(first.affinity).toBe("miss");
    expect(store.writes).toEqual([`b|s|${first.workerId}|1000`]);
    await d.submit({ backend: "b", sessionId: "s" });
    clock.advance(50);
    await d.submit({ backend: "b", sessionId: "s" });
    expect(store.writes).toHaveLength(1);
    clock.advance(60);
    const later = await d.submit({ backend: "b", sessionId: "s" });
    expect(later.affinity).toBe("hit");
    expect(store.writes).toEqual([`b|s|${first.workerId}|1000`, `b|s|${first.workerId}|1000`]);
  });

  it("a stored pin naming no worker of the backend is ignored: an ordinary miss", async () => {
    const store = new MemoryPins();
    store.pins.set("b|s", "b/9");
    const { d } = dispatcher(store);
    const r = await d.submit({ backend: "b", sessionId: "s" });
    expect(r.affinity).toBe("miss");
    expect(r.workerId).not.toBe("b/9");
    expect(store.pins.get("b|s")).toBe(r.workerId);
  });

  it("a store that fails to answer leaves the call a miss, never an error", async () => {
    const store: PinStore = { write() {}, lookup: () => Promise.resolve(undefined) };
    const { d } = dispatcher(store);
    const r = await d.submit({ backend: "b", sessionId: "s" });
    expect(r.affinity).toBe("miss");
  });

  it("calls without a session never ask the store", async () => {
    const store = new MemoryPins();
    const { d } = dispatcher(store);
    const r = await d.submit({ backend: "b" });
    expect(r.affinity).toBe("none");
    expect(store.lookups).toBe(0);
    expect(store.writes).toEqual([]);
  });

  it("the wait for the store counts against the call's deadline", async () => {
    const clock = manualClock();
    let answer: (id: string | undefined) => void = () => {};
    const store: PinStore = { write() {}, lookup: () => new Promise((r) => (answer = r)) };
    const d = createDispatcher({ clock, pinStore: store, backends: [{ name: "b", handler: () => ({ json: 1 }), workers: 1 }] });
    const p = d.submit({ backend: "b", sessionId: "s", timeoutMs: 100 });
    clock.advance(150);
    answer("b/0");
    await expect(p).rejects.toMatchObject({ code: "deadline_exceeded" });
  });
});
