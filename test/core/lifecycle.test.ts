import { describe, expect, it } from "vitest";
import { createDispatcher, DispatchError, type HandlerContext } from "../../src/core/index.js";
import { gate } from "../helpers/gate.js";
import { flush, manualClock } from "../helpers/manual-clock.js";

/** Regressions of the job lifecycle, one defect each (issue "One job lifecycle"). */
describe("the job lifecycle", () => {
  it("a throwing observer is reported and strands no job", async () => {
    const reported: string[] = [];
    const g = gate();
    const d = createDispatcher({
      observer: {
        jobQueued() {
          throw new Error("queued observer broke");
        },
        jobEnded() {
          throw new Error("ended observer broke");
        },
      },
      onError: (e, where) => reported.push(`${where}: ${(e as Error).message}`),
      backends: [{ name: "b", handler: g.handler, maxConcurrency: 1 }],
    });
    const first = d.submit({ backend: "b" });
    const second = d.submit({ backend: "b" });
    await flush();
    g.calls[0]!.resolve({ json: 1 });
    expect((await first).payload).toEqual({ json: 1 });
    await flush();
    // The next job on that worker started: nothing was stranded.
    g.calls[1]!.resolve({ json: 2 });
    expect((await second).payload).toEqual({ json: 2 });
    expect(reported).toContain("jobQueued: queued observer broke");
    expect(reported).toContain("jobEnded: ended observer broke");
    expect(d.snapshot()[0]).toMatchObject({ inflight: 0, queued: 0, completed: 2 });
  });

  it("durations past Node's timer limit neither fire at once nor warn (30-day deadline, 600 h timeout)", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const d = createDispatcher({
        backends: [
          {
            name: "b",
            timeoutMs: 600 * 3_600_000,
            handler: async (p, ctx) => {
              await new Promise((r) => setTimeout(r, 20));
              ctx.signal.throwIfAborted();
              return p;
            },
          },
        ],
      });
      const r = await d.submit({ backend: "b", timeoutMs: 30 * 86_400_000, payload: { json: "ok" } });
      expect(r.payload).toEqual({ json: "ok" });
      await d.close();
      await new Promise((r) => setImmediate(r));
      expect(warnings).not.toContain("TimeoutOverflowWarning");
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("close() takes a fractional grace, and a bad one throws before admission stops", async () => {
    const d = createDispatcher({ backends: [{ name: "b", handler: (p) => p }] });
    expect(() => d.close({ graceMs: -1 })).toThrow(/graceMs/);
    expect(d.closing).toBe(false);
    await expect(d.submit({ backend: "b", payload: { json: 1 } })).resolves.toMatchObject({ payload: { json: 1 } });
    await d.close({ graceMs: 1.5 });
    expect(d.closing).toBe(true);
  });

  it("tells a handler why its signal aborted: deadline, cancel, timeout or shutdown", async () => {
    const clock = manualClock();
    const reasons: string[] = [];
    const handler = (_p: unknown, ctx: HandlerContext) =>
      new Promise<never>((_, reject) =>
        ctx.signal.addEventListener("abort", () => {
          reasons.push((ctx.signal.reason as DispatchError).abortReason ?? "none");
          reject(ctx.signal.reason);
        }),
      );
    const d = createDispatcher({
      clock,
      shutdownGraceMs: 50,
      backends: [{ name: "b", handler, timeoutMs: 1_000, workers: 4, maxConcurrency: 1, outlier: { consecutiveFailures: 0 } }],
    });
    const ac = new AbortController();
    const codes = [
      d.submit({ backend: "b", timeoutMs: 100 }),
      d.submit({ backend: "b", signal: ac.signal }),
      d.submit({ backend: "b" }),
      d.submit({ backend: "b", timeoutMs: 5_000 }),
    ].map((p) => p.catch((e: DispatchError) => e.code));
    clock.advance(100); // the first call's deadline
    ac.abort(); // the second call's client
    clock.advance(900); // the backend timeout of the third and fourth
    expect(await Promise.all(codes)).toEqual(["deadline_exceeded", "cancelled", "deadline_exceeded", "deadline_exceeded"]);
    expect(reasons).toEqual(["deadline", "cancel", "timeout", "timeout"]);
    const late = d.submit({ backend: "b" }).catch((e: DispatchError) => e.code);
    await flush();
    const closed = d.close();
    clock.advance(50);
    expect(await late).toBe("unavailable");
    await closed;
    expect(reasons.at(-1)).toBe("shutdown");
  });

  it("counts a backend timeout as an upstream fault and a client deadline as none", async () => {
    const clock = manualClock();
    const g = gate();
    const d = createDispatcher({
      clock,
      backends: [{ name: "b", handler: g.handler, timeoutMs: 1_000, workers: 3, maxConcurrency: 4, outlier: { consecutiveFailures: 2, maxEjectionPercent: 50 } }],
    });
    // Client deadlines, however many: no error, no ejection.
    const deadlines = Array.from({ length: 12 }, () => d.submit({ backend: "b", timeoutMs: 50 }).catch((e: DispatchError) => e.code));
    clock.advance(50);
    expect(new Set(await Promise.all(deadlines))).toEqual(new Set(["deadline_exceeded"]));
    expect(d.snapshot().map((w) => [w.errors, w.ejections, w.cancelled])).toEqual([[0, 0, 4], [0, 0, 4], [0, 0, 4]]);
    // Backend timeouts: errors, and ejection of at most 50 % of 3 workers (one).
    const timeouts = Array.from({ length: 12 }, () => d.submit({ backend: "b" }).catch((e: DispatchError) => e.code));
    clock.advance(1_000);
    expect(new Set(await Promise.all(timeouts))).toEqual(new Set(["deadline_exceeded"]));
    const snap = d.snapshot();
    expect(snap.reduce((n, w) => n + w.errors, 0)).toBe(12);
    expect(snap.filter((w) => w.state === "ejected")).toHaveLength(1);
  });
});
