import { describe, expect, it } from "vitest";
import { AffinityTable } from "../../src/core/affinity.js";
import { seededRandom } from "../helpers/manual-clock.js";

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

  it("drops a refreshed pin at its own expiry, even behind pins created after it", () => {
    const w = worker();
    const t = new AffinityTable<typeof w>(100, 10);
    t.pin("a", w, 0);
    t.pin("a", w, 5, t.lookup("a", 5)); // expires at 105
    t.pin("b", w, 8); // expires at 108
    t.sweep(101); // "a" is refiled, under 105
    expect(t.sweep(106)).toBe(1); // "a" goes at 105 though "b" (108) was filed before it was refiled
    expect(t.size).toBe(1);
    expect(w.sessions).toBe(1);
  });

  it("after a sweep, holds exactly the live pins (seeded random use against a model)", () => {
    const random = seededRandom(7);
    const workers = [worker(), worker(), worker()];
    const ttl = 50;
    const t = new AffinityTable<(typeof workers)[number]>(ttl, 1_000_000);
    const model = new Map<string, number>(); // session → expiresAt
    let now = 0;
    for (let step = 0; step < 20_000; step++) {
      now += random() * 3;
      const s = `s${Math.floor(random() * 200)}`;
      const w = workers[Math.floor(random() * 3)]!;
      const pin = t.lookup(s, now);
      const live = (model.get(s) ?? -1) > now;
      expect(pin !== undefined).toBe(live);
      t.pin(s, pin?.worker ?? w, now, pin);
      model.set(s, now + ttl);
      if (step % 97 === 0) {
        t.sweep(now);
        const alive = [...model.values()].filter((e) => e > now).length;
        expect(t.size).toBe(alive);
        expect(workers.reduce((n, x) => n + x.sessions, 0)).toBe(alive);
      }
    }
  });
});

