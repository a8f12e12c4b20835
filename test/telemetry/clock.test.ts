import { describe, expect, it } from "vitest";
import { spanMs, spanMsAt } from "../../src/telemetry/clock.js";

describe("the span clock", () => {
  it("reads a past performance timestamp without moving its anchor, however long it was idle", async () => {
    spanMs();
    // Past the once-a-second check, then a timestamp half a second old (a handler's own, say).
    await new Promise((r) => setTimeout(r, 1_700));
    const old = performance.now() - 500;
    expect(Math.abs(spanMsAt(old) - (Date.now() - 500))).toBeLessThan(5);
    expect(Math.abs(spanMs() - Date.now())).toBeLessThan(5);
  });
});
