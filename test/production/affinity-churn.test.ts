import { describe, expect, it } from "vitest";
import { AffinityTable } from "../../src/core/affinity.js";
import { gc } from "../helpers/gc.js";

/**
 * The table driven as the dispatcher drives it on every Submit with a
 * session_id (lookup, then pin), at the rate of a busy server: 1,000,000
 * distinct sessions, ~100,000 per TTL, against a cap of 2,000 pins.
 */
describe("affinity table under churn", () => {
  it("1,000,000 sessions through a short TTL keep the pin count under the cap and memory flat", () => {
    const MAX_PINS = 2_000;
    const TTL = 1_000;
    const workers = Array.from({ length: 4 }, () => ({ sessions: 0 }));
    const table = new AffinityTable<{ sessions: number }>(TTL, MAX_PINS);
    let now = 0;
    let maxSize = 0;
    let heapAt100k = 0;
    for (let i = 0; i < 1_000_000; i++) {
      if (i % 1000 === 0) now += 10;
      const session = `session-${i}`;
      const pin = table.lookup(session, now);
      table.pin(session, workers[i % 4]!, now, pin);
      // Every tenth call comes back for a recent session: a hit refreshes its pin.
      if (i % 10 === 0 && i > 100) {
        const back = `session-${i - 100}`;
        table.pin(back, workers[0]!, now, table.lookup(back, now));
      }
      if (table.size > maxSize) maxSize = table.size;
      if (i === 100_000) {
        gc();
        heapAt100k = process.memoryUsage().heapUsed;
      }
    }
    expect(maxSize).toBeLessThanOrEqual(MAX_PINS);
    expect(workers.reduce((n, w) => n + w.sessions, 0)).toBe(table.size);
    gc();
    expect(process.memoryUsage().heapUsed - heapAt100k).toBeLessThan(8 * 1024 * 1024);
    // Traffic stops and the TTL passes: sweeping empties the table and every worker's count.
    now += 2 * TTL;
    table.sweep(now);
    expect(table.size).toBe(0);
    expect(workers.every((w) => w.sessions === 0)).toBe(true);
  });

  it("with a TTL shorter than the cap fills, the sweep alone bounds the table", () => {
    const table = new AffinityTable<{ sessions: number }>(100, 1_000_000);
    const w = { sessions: 0 };
    let now = 0;
    let maxSize = 0;
    for (let i = 0; i < 1_000_000; i++) {
      if (i % 1000 === 0) now += 10; // 10,000 sessions per 100 ms TTL
      table.pin(`s${i}`, w, now, table.lookup(`s${i}`, now));
      if (table.size > maxSize) maxSize = table.size;
    }
    expect(maxSize).toBeLessThanOrEqual(11_000 + 64);
    expect(w.sessions).toBe(table.size);
  });
});
