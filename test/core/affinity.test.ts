import { describe, expect, it } from "vitest";
import { AffinityTable } from "../../src/core/affinity.js";

function worker() {
  return { sessions: 0 };
}

describe("AffinityTable", () => {
  it("sweeps expired pins from the front in bounded batches", () => {
    const w = worker();
    const t = new AffinityTable<typeof w>(100, 1_000_000);
    for (let i = 0; i < 1_000; i++) t.pin(`s${i}`, w, 0);
    expect(w.sessions).toBe(1_000);
    // All expired: one lookup removes at most one batch, never the whole table.
    expect(t.lookup("new", 200)).toBeUndefined();
    expect(t.size).toBeGreaterThan(900);
    let calls = 0;
    while (t.size > 0 && calls < 100) {
      t.lookup("new", 200);
      calls++;
    }
    expect(t.size).toBe(0);
    expect(w.sessions).toBe(0);
    expect(calls).toBeLessThanOrEqual(20);
  });

  it("leaves live pins alone and keeps last-touch order", () => {
    const w = worker();
    const t = new AffinityTable<typeof w>(100, 10);
    t.pin("old", w, 0);
    t.pin("young", w, 50);
    const old = t.lookup("old", 60)!;
    t.pin("old", w, 60, old); // refreshed: now expires at 160, behind "young"
    expect(t.sweep(155)).toBe(1); // "young" (150) goes, "old" stays
    expect(t.lookup("old", 155)?.worker).toBe(w);
    expect(t.lookup("young", 155)).toBeUndefined();
  });

  it("never holds more than maxPins, evicting the least recently used", () => {
    const w = worker();
    const t = new AffinityTable<typeof w>(1_000_000, 3);
    for (let i = 0; i < 10_000; i++) t.pin(`s${i}`, w, i);
    expect(t.size).toBe(3);
    expect(w.sessions).toBe(3);
    expect(t.lookup("s9999", 10_000)).toBeDefined();
    expect(t.lookup("s0", 10_000)).toBeUndefined();
  });

  it("moves the worker's session count when a pin moves", () => {
    const a = worker();
    const b = worker();
    const t = new AffinityTable<typeof a>(100, 10);
    t.pin("s", a, 0);
    t.pin("s", b, 1, t.lookup("s", 1));
    expect([a.sessions, b.sessions]).toEqual([0, 1]);
    t.clear();
    expect(b.sessions).toBe(0);
  });
});
