import { describe, expect, it } from "vitest";
import { createDispatcher, DispatchError, type Handler, type HandlerContext } from "../../src/core/index.js";
import { deferred } from "../helpers/app.js";
import { manualClock } from "../helpers/manual-clock.js";

/** Lets settled promises run their continuations (no time passes on the manual clock). */
const flush = () => new Promise<void>((r) => setImmediate(r));
const unavailable = (o: { retryAfterMs?: number } = {}) => new DispatchError("unavailable", "upstream down", { retryable: true, ...o });

function setup(handler: Handler, extra: Record<string, unknown> = {}, random = () => 0.5) {
  const clock = manualClock();
  const d = createDispatcher({
    clock,
    random,
    backends: [
      {
        name: "b",
        handler,
        workers: 2,
        outlier: { consecutiveFailures: 0 },
        retry: { maxAttempts: 3, initialBackoffMs: 100, maxBackoffMs: 1_000, multiplier: 2 },
        ...extra,
      },
    ],
  });
  return { clock, d };
}

describe("retries", () => {
  it("retries a retryable failure after a full-jitter backoff, on another worker, and reports attempts", async () => {
    const calls: HandlerContext[] = [];
    const { clock, d } = setup((p, ctx) => {
      calls.push(ctx);
      if (ctx.attempt === 1) throw unavailable();
      return p;
    });
    const res = d.submit({ backend: "b", payload: { json: 1 } });
    await flush();
    expect(calls).toHaveLength(1);
    clock.advance(49); // random 0.5 × ceiling 100 ms
    await flush();
    expect(calls).toHaveLength(1);
    clock.advance(1);
    const r = await res;
    expect(calls).toHaveLength(2);
    expect(r.attempts).toBe(2);
    expect(calls[1]!.attempt).toBe(2);
    expect(calls[1]!.workerId).not.toBe(calls[0]!.workerId);
    expect(r.workerId).toBe(calls[1]!.workerId);
    const snap = d.snapshot();
    expect(snap.reduce((n, w) => n + w.errors, 0)).toBe(1);
    expect(snap.reduce((n, w) => n + w.completed, 0)).toBe(1);
    expect(clock.pending).toBe(0);
  });

  it("grows the backoff ceiling per retry and gives up after maxAttempts with the last error", async () => {
    let calls = 0;
    const { clock, d } = setup(() => {
      calls++;
      throw unavailable();
    }, {}, () => 0.999);
    const res = d.submit({ backend: "b" }).catch((e: DispatchError) => e);
    await flush();
    clock.advance(99); // ceiling 100
    await flush();
    expect(calls).toBe(1);
    clock.advance(1);
    await flush();
    expect(calls).toBe(2);
    clock.advance(199); // ceiling 200
    await flush();
    expect(calls).toBe(2);
    clock.advance(1);
    const err = await res;
    expect(calls).toBe(3);
    expect(err).toBeInstanceOf(DispatchError);
    expect((err as DispatchError).code).toBe("unavailable");
    expect(clock.pending).toBe(0);
  });

  it("does not retry errors the backend did not mark retryable", async () => {
    let calls = 0;
    const { d } = setup(() => {
      calls++;
      throw new DispatchError("invalid_argument", "bad");
    });
    await expect(d.submit({ backend: "b" })).rejects.toMatchObject({ code: "invalid_argument" });
    expect(calls).toBe(1);
  });

  it("honours retryAfterMs as stated", async () => {
    let calls = 0;
    const { clock, d } = setup(() => {
      calls++;
      if (calls === 1) throw new DispatchError("resource_exhausted", "429", { retryable: true, retryAfterMs: 700 });
      return { json: "ok" };
    });
    const res = d.submit({ backend: "b" });
    await flush();
    clock.advance(699);
    await flush();
    expect(calls).toBe(1);
    clock.advance(1);
    expect((await res).payload).toEqual({ json: "ok" });
    expect(calls).toBe(2);
  });

  it("does not retry when Retry-After exceeds maxBackoff, or the wait would pass the deadline", async () => {
    let calls = 0;
    const { d } = setup(() => {
      calls++;
      throw unavailable({ retryAfterMs: calls === 1 ? 5_000 : 600 });
    });
    await expect(d.submit({ backend: "b" })).rejects.toMatchObject({ code: "unavailable" });
    expect(calls).toBe(1);
    await expect(d.submit({ backend: "b", timeoutMs: 500 })).rejects.toMatchObject({ code: "unavailable" });
    expect(calls).toBe(2);
  });

  it("limits retries in progress to the budget during an outage", async () => {
    const gate = deferred();
    let calls = 0;
    const { clock, d } = setup(
      async () => {
        calls++;
        await gate.promise;
        throw unavailable();
      },
      { maxConcurrency: 10, retry: { maxAttempts: 2, initialBackoffMs: 100, budgetPercent: 20, minRetryConcurrency: 3 } },
    );
    const jobs = Array.from({ length: 20 }, () => d.submit({ backend: "b" }).catch((e: DispatchError) => e.code));
    await flush();
    expect(calls).toBe(20);
    gate.resolve();
    await flush();
    clock.advance(100);
    const codes = await Promise.all(jobs);
    // 20 active jobs × 20 % = 4 retries; the other 16 fail at once.
    expect(calls).toBe(24);
    expect(codes.every((c) => c === "unavailable")).toBe(true);
  });

  it("lets the minimum retry concurrency retry on a quiet backend", async () => {
    let calls = 0;
    const { clock, d } = setup(() => {
      calls++;
      if (calls === 1) throw unavailable();
      return { json: null };
    }, { retry: { maxAttempts: 2, initialBackoffMs: 10, budgetPercent: 0, minRetryConcurrency: 1 } });
    const res = d.submit({ backend: "b" });
    await flush();
    clock.advance(10);
    expect((await res).attempts).toBe(2);
  });

  it("keeps a pinned session on its worker for the retry", async () => {
    const seen: string[] = [];
    const { clock, d } = setup((p, ctx) => {
      seen.push(ctx.workerId);
      if (seen.length === 2) throw unavailable();
      return p;
    });
    const first = await d.submit({ backend: "b", sessionId: "s" });
    const res = d.submit({ backend: "b", sessionId: "s" });
    await flush();
    clock.advance(100);
    const r = await res;
    expect(r.attempts).toBe(2);
    expect(r.affinity).toBe("hit");
    expect(seen).toEqual([first.workerId, first.workerId, first.workerId]);
  });

  it("a job waiting to retry honours client cancel and leaves no timer or listener", async () => {
    let calls = 0;
    const { clock, d } = setup(() => {
      calls++;
      throw unavailable();
    });
    const ac = new AbortController();
    const res = d.submit({ backend: "b", signal: ac.signal, timeoutMs: 10_000 }).catch((e: DispatchError) => e.code);
    await flush();
    expect(clock.pending).toBe(1); // the backoff
    ac.abort();
    expect(await res).toBe("cancelled");
    expect(clock.pending).toBe(0);
    clock.advance(1_000);
    await flush();
    expect(calls).toBe(1);
    // Worker counters count attempts: the failed one is an error; the cancel came with no attempt live.
    expect(d.snapshot().reduce((n, w) => n + w.errors, 0)).toBe(1);
    expect(d.snapshot().reduce((n, w) => n + w.cancelled, 0)).toBe(0);
  });

  it("close() ends a job waiting to retry with UNAVAILABLE", async () => {
    const { clock, d } = setup(() => {
      throw unavailable();
    });
    const res = d.submit({ backend: "b" }).catch((e: DispatchError) => e.code);
    await flush();
    await d.close();
    expect(await res).toBe("unavailable");
    expect(clock.pending).toBe(0);
  });
});
