import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createDispatcher, DispatchError } from "../../src/core/index.js";
import { createLogObserver } from "../../src/telemetry/log-observer.js";
import { flush, manualClock } from "../helpers/manual-clock.js";

function capture() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  return { log: pino({ level: "debug" }, stream), lines };
}

describe("operator logs from lifecycle events", () => {
  it("warn on ejection and on upstream failures (throttled, with a count), info on recovery", async () => {
    const { log, lines } = capture();
    const clock = manualClock();
    let wall = 0;
    const d = createDispatcher({
      clock,
      observer: createLogObserver(log, { now: () => wall, failureIntervalMs: 5_000 }),
      random: () => 0.99, // ties go to the first worker: b/0 takes the calls until it is ejected
      backends: [
        {
          name: "b",
          workers: 2,
          handler: () => {
            throw new DispatchError("unavailable", "upstream answered 503", { retryable: true });
          },
          outlier: { consecutiveFailures: 3, baseEjectionMs: 1_000, maxEjectionPercent: 50 },
        },
      ],
    });
    for (let i = 0; i < 6; i++) await d.submit({ backend: "b", sessionId: "s" }).catch(() => undefined);
    await flush();
    const warn = lines.filter((l) => l.level === 40);
    const failures = warn.filter((l) => l.msg.startsWith("upstream failure") && l.worker === "b/0");
    // Three failures on b/0 within the interval: one line; the rest are counted into the next.
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ worker: "b/0", code: "unavailable", failures: 1 });
    const ejected = warn.filter((l) => String(l.msg).includes("ejected for"));
    expect(ejected[0]).toMatchObject({ worker: "b/0", ejected_for_ms: 1_000 });
    expect(String(ejected[0]!.reason)).toContain("3 upstream faults in a row");
    wall += 5_000;
    clock.advance(1_000);
    await d.submit({ backend: "b" }).catch(() => undefined);
    await flush();
    expect(lines.some((l) => l.level === 30 && l.msg.startsWith("worker b/0 back in service"))).toBe(true);
    const next = lines.filter((l) => l.level === 40 && l.msg.startsWith("upstream failure") && l.worker === "b/0").at(-1)!;
    expect(next.failures).toBeGreaterThan(1);
    expect(next.msg).toMatch(/failures since the last report/);
  });

  it("warns when the retry budget stops a retry, and logs each retry at debug", async () => {
    const { log, lines } = capture();
    const d = createDispatcher({
      observer: createLogObserver(log),
      backends: [
        {
          name: "r",
          workers: 1,
          maxConcurrency: 8,
          handler: () => new Promise((_, reject) => setTimeout(() => reject(new DispatchError("unavailable", "reset", { retryable: true })), 5)),
          retry: { maxAttempts: 2, initialBackoffMs: 1, budgetPercent: 0, minRetryConcurrency: 1 },
          outlier: { consecutiveFailures: 0 },
        },
      ],
    });
    await Promise.all(Array.from({ length: 4 }, () => d.submit({ backend: "r" }).catch(() => undefined)));
    expect(lines.some((l) => l.level === 40 && String(l.msg).includes("retry budget exhausted"))).toBe(true);
    expect(lines.some((l) => l.level === 20 && String(l.msg).startsWith("retrying after attempt 1"))).toBe(true);
  });
});
