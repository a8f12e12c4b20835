import { describe, expect, it } from "vitest";
import { maxInWindow } from "../helpers/windows.js";
import { createDispatcher, DispatchError, LocalLimitStore, systemClock, type CapacityAnswer, type CapacityRequest, type LimitStore } from "../../src/core/index.js";
import { jitterClock } from "../helpers/jitter-clock.js";
import { flush, manualClock, seededRandom } from "../helpers/manual-clock.js";


const spec = (o: Partial<{ requestsPerMinute: number; tokensPerMinute: number; maxConcurrency: number }>, windowMs = 1_000) => ({ key: "worker:b/0", windowMs, ...o });

describe("LocalLimitStore", () => {
  it("never lets more than the limit through in any sliding window, under random arrivals", () => {
    const clock = manualClock();
    const store = new LocalLimitStore(clock);
    const random = seededRandom(7);
    const granted: number[] = [];
    let refusedWithWait = 0;
    for (let i = 0; i < 5_000; i++) {
      clock.advance(random() * 40);
      const a = store.acquire({ limits: [spec({ requestsPerMinute: 30 })], tokens: 0 });
      if (a.granted) {
        granted.push(clock.now());
        a.lease.release();
      } else {
        expect(a.kind).toBe("requests_per_minute");
        expect(a.retryInMs).toBeGreaterThan(0);
        refusedWithWait++;
      }
    }
    expect(maxInWindow(granted, 1_000)).toBeLessThanOrEqual(30);
    // Not trivially satisfied: the limit is reached, and refusals happened.
    expect(maxInWindow(granted, 1_000)).toBe(30);
    expect(refusedWithWait).toBeGreaterThan(0);
  });

  it("a refusal's wait is when capacity is back: asking then succeeds", () => {
    const clock = manualClock();
    const store = new LocalLimitStore(clock);
    const limits = [spec({ requestsPerMinute: 2 })];
    const answered = () => {
      const a = store.acquire({ limits, tokens: 0 });
      if (a.granted) a.lease.release();
      return a;
    };
    expect(answered().granted).toBe(true);
    clock.advance(300);
    expect(answered().granted).toBe(true);
    const r = store.acquire({ limits, tokens: 0 });
    expect(r.granted).toBe(false);
    if (r.granted) return;
    expect(r.retryInMs).toBeGreaterThanOrEqual(700);
    expect(r.retryInMs).toBeLessThanOrEqual(702);
    clock.advance(r.retryInMs - 2);
    expect(store.acquire({ limits, tokens: 0 }).granted).toBe(false);
    clock.advance(2);
    expect(store.acquire({ limits, tokens: 0 }).granted).toBe(true);
  });

  it("counts a charge until one window after its attempt ended, or after its arrival bound if it runs longer", () => {
    const clock = manualClock();
    const store = new LocalLimitStore(clock);
    const limits = [spec({ requestsPerMinute: 1 })];
    const a = store.acquire({ limits, tokens: 0 });
    // A call that takes 400 ms: the upstream may have counted it any time up to its end.
    clock.advance(400);
    if (a.granted) a.lease.release();
    clock.advance(1_000);
    expect(store.acquire({ limits, tokens: 0 }).granted).toBe(false);
    clock.advance(1);
    const b = store.acquire({ limits, tokens: 0 });
    expect(b.granted).toBe(true);
    // A long call: counted until a window after its grant + the arrival bound, not its end.
    clock.advance(5_000);
    if (b.granted) b.lease.release();
    expect(store.acquire({ limits, tokens: 0 }).granted).toBe(true);
  });

  it("charges all limits of a request or none", () => {
    const clock = manualClock();
    const store = new LocalLimitStore(clock);
    const narrow = { key: "worker:b/0", windowMs: 1_000, requestsPerMinute: 1 };
    const wide = { key: "backend:b", windowMs: 1_000, requestsPerMinute: 10 };
    expect(store.acquire({ limits: [narrow, wide], tokens: 0 }).granted).toBe(true);
    expect(store.acquire({ limits: [narrow, wide], tokens: 0 }).granted).toBe(false);
    // The refused request charged nothing on the backend's limit: 9 left.
    expect(store.status(wide).requestsLeft).toBe(9);
  });

  it("settles tokens from usage: small answers let more requests through than reservations alone", () => {
    const clock = manualClock();
    const store = new LocalLimitStore(clock);
    const limits = [spec({ tokensPerMinute: 1_000 })];
    let reservedOnly = 0;
    for (let a = store.acquire({ limits, tokens: 300 }); a.granted; a = store.acquire({ limits, tokens: 300 })) {
      reservedOnly++;
      a.lease.release();
    }
    expect(reservedOnly).toBe(3);
    clock.advance(1_001);
    let settled = 0;
    for (let a = store.acquire({ limits, tokens: 300 }); a.granted && settled < 100; a = store.acquire({ limits, tokens: 300 })) {
      settled++;
      a.lease.release(50);
    }
    // 50 per answer: 1,000 / 50 = 20 answers, less the last reservation that must still fit.
    // 50 per answer: 14 settled answers leave room for one more 300-token reservation, 5× what reservations alone allow.
    expect(settled).toBe(15);
    expect(store.status(limits[0]!).tokensLeft).toBeLessThan(300);
  });

  it("counts concurrency until release, and pauses", () => {
    const clock = manualClock();
    const store = new LocalLimitStore(clock);
    const limits = [spec({ maxConcurrency: 2 })];
    const a = store.acquire({ limits, tokens: 0 });
    const b = store.acquire({ limits, tokens: 0 });
    expect(store.acquire({ limits, tokens: 0 })).toMatchObject({ granted: false, kind: "max_concurrency" });
    if (a.granted) a.lease.release();
    if (a.granted) a.lease.release(); // twice is once
    expect(store.status(limits[0]!).concurrencyLeft).toBe(1);
    expect(b.granted).toBe(true);
    store.pause("worker:b/0", 5_000);
    expect(store.acquire({ limits, tokens: 0 })).toMatchObject({ granted: false, kind: "paused", retryInMs: 5_000 });
    clock.advance(5_000);
    expect(store.acquire({ limits, tokens: 0 }).granted).toBe(true);
  });
});

/** The local store, answering after a turn of the event loop, as a shared store does; counts leases. */
class AsyncStore implements LimitStore {
  granted = 0;
  released = 0;
  constructor(private readonly inner: LocalLimitStore) {}
  acquire(req: CapacityRequest): Promise<CapacityAnswer> {
    return new Promise((resolve) =>
      setImmediate(() => {
        const a = this.inner.acquire(req);
        if (!a.granted) return resolve(a);
        this.granted++;
        let done = false;
        resolve({
          granted: true,
          lease: {
            release: (t) => {
              if (done) throw new Error("released twice");
              done = true;
              this.released++;
              a.lease.release(t);
            },
          },
        });
      }),
    );
  }
  pause(key: string, forMs: number): void {
    this.inner.pause(key, forMs);
  }
  status(spec: Parameters<LimitStore["status"]>[0]) {
    return this.inner.status(spec);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe("the dispatcher under limits", () => {
  it("holds jobs in the queue until capacity is back, on real timers: no window over the limit, every call answered", async () => {
    const starts: number[] = [];
    const d = createDispatcher({
      backends: [{
        name: "b",
        workers: 2,
        maxConcurrency: 8,
        queueCapacity: 100,
        limits: { requestsPerMinute: 10, windowMs: 300 },
        handler: () => {
          starts.push(performance.now());
          return { json: null };
        },
      }],
    });
    const results = await Promise.all(Array.from({ length: 30 }, () => d.submit({ backend: "b" })));
    expect(results).toHaveLength(30);
    // Real timers fire up to ~2 ms early; the store counts by the same clock, so no window holds more.
    expect(maxInWindow(starts, 300)).toBeLessThanOrEqual(10);
    expect(starts[29]! - starts[0]!).toBeGreaterThanOrEqual(2 * 300 - 5);
    await d.close();
  });

  it("on a clock whose timers fire up to 2 ms early: no lost wake-up, no window over the limit", async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const clock = jitterClock(seededRandom(seed), 2, 3);
      const starts: number[] = [];
      const d = createDispatcher({
        clock,
        backends: [{
          name: "b", workers: 2, maxConcurrency: 4, queueCapacity: 100,
          limits: { requestsPerMinute: 7, windowMs: 100 },
          handler: () => {
            starts.push(clock.now());
            return { json: null };
          },
        }],
      });
      let done = 0;
      const all = Array.from({ length: 40 }, () => d.submit({ backend: "b" }).then(() => done++));
      for (let i = 0; i < 2_000 && done < 40; i++) {
        clock.advance(1);
        await flush();
      }
      expect(done).toBe(40);
      await Promise.all(all);
      expect(maxInWindow(starts, 100)).toBeLessThanOrEqual(7);
      expect(clock.early).toBeGreaterThan(0);
      await d.close();
    }
  });

  it("refuses at admission, naming the limit, a call whose deadline comes before capacity; other calls wait", async () => {
    const clock = manualClock();
    const d = createDispatcher({
      clock,
      backends: [{ name: "b", limits: { requestsPerMinute: 1, windowMs: 10_000 }, handler: () => ({ json: 1 }) }],
    });
    await d.submit({ backend: "b" });
    const waiting = d.submit({ backend: "b" });
    await flush();
    const err = await d.submit({ backend: "b", timeoutMs: 1_000 }).catch((e: DispatchError) => e);
    expect(err).toBeInstanceOf(DispatchError);
    expect((err as DispatchError).code).toBe("resource_exhausted");
    expect((err as DispatchError).message).toMatch(/requests_per_minute of backend "b" exhausted for the next 10\.0 s/);
    clock.advance(10_001);
    await expect(waiting).resolves.toMatchObject({ workerId: "b/0" });
    await d.close();
  });

  it("an upstream 429 pauses its worker for the Retry-After: later calls wait for it instead of earning another 429", async () => {
    const clock = manualClock();
    const calls: number[] = [];
    const d = createDispatcher({
      clock,
      backends: [{
        name: "b",
        handler: () => {
          calls.push(clock.now());
          if (calls.length === 1) throw new DispatchError("resource_exhausted", "upstream 429", { retryAfterMs: 2_000 });
          return { json: null };
        },
      }],
    });
    const t0 = clock.now();
    await expect(d.submit({ backend: "b" })).rejects.toMatchObject({ code: "resource_exhausted" });
    const next = d.submit({ backend: "b" });
    await flush();
    clock.advance(1_999);
    await flush();
    expect(calls).toHaveLength(1);
    clock.advance(2);
    await expect(next).resolves.toBeDefined();
    expect(calls[1]! - t0).toBeGreaterThanOrEqual(2_000);
    await d.close();
  });

  it("with an asynchronous store: every granted lease is released exactly once, whatever ends the job", async () => {
    // Real timers: they fire up to ~2 ms early, and the store and the dispatcher share them.
    const clock = systemClock;
    const store = new AsyncStore(new LocalLimitStore(clock));
    const random = seededRandom(11);
    const d = createDispatcher({
      clock,
      limitStore: store,
      backends: [{
        name: "b",
        workers: 3,
        maxConcurrency: 2,
        queueCapacity: 50,
        limits: { requestsPerMinute: 40, maxConcurrency: 4, windowMs: 200 },
        handler: async (_p, ctx) => {
          const r = random();
          await new Promise((res) => setTimeout(res, r * 20));
          if (r < 0.2) throw new DispatchError("unavailable", "upstream reset");
          if (ctx.signal.aborted) throw new DispatchError("cancelled", "aborted");
          return { json: null, metadata: { total_tokens: "5" } };
        },
      }],
    });
    const calls = Array.from({ length: 120 }, (_, i) => {
      const ac = new AbortController();
      if (i % 7 === 0) setTimeout(() => ac.abort(), random() * 100);
      return d.submit({ backend: "b", signal: ac.signal, timeoutMs: i % 5 === 0 ? 30 + random() * 100 : 10_000 }).then(
        () => "ok",
        (e: DispatchError) => e.code,
      );
    });
    const outcomes = await Promise.all(calls);
    expect(outcomes).toHaveLength(120);
    expect(outcomes.filter((o) => o === "ok").length).toBeGreaterThan(0);
    await d.close();
    expect(store.released).toBe(store.granted);
    for (const w of d.snapshot()) expect(w.inflight + w.queued).toBe(0);
  });
});

describe("adaptive concurrency (AIMD)", () => {
  /** An upstream that answers 429 past 3 calls at once; 240 jobs offered 12 at a time by one worker. */
  async function run(adaptive: boolean): Promise<{ throttled: number; ok: number; final: number }> {
    let running = 0;
    let throttled = 0;
    const d = createDispatcher({
      backends: [{
        name: "b", maxConcurrency: 12, queueCapacity: 300,
        limits: { adaptiveConcurrency: adaptive },
        handler: async () => {
          if (running >= 3) {
            throttled++;
            throw new DispatchError("resource_exhausted", "upstream 429", { retryAfterMs: 1 });
          }
          running++;
          await new Promise((r) => setTimeout(r, 5));
          running--;
          return { json: null };
        },
      }],
    });
    const outcomes = await Promise.all(Array.from({ length: 240 }, () => d.submit({ backend: "b" }).then(() => "ok", () => "429")));
    const final = d.snapshot()[0]!.maxConcurrency;
    await d.close();
    return { throttled, ok: outcomes.filter((o) => o === "ok").length, final };
  }

  it("backs off on 429s towards what the upstream sustains, and earns far fewer 429s than a fixed concurrency", async () => {
    const fixed = await run(false);
    const adaptive = await run(true);
    console.log(`upstream sustaining 3 at once, 240 jobs: fixed concurrency 12 earned ${fixed.throttled} 429s (${fixed.ok} ok); adaptive ${adaptive.throttled} (${adaptive.ok} ok), ending at ${adaptive.final}`);
    expect(fixed.final).toBe(12);
    expect(adaptive.final).toBeLessThan(12);
    expect(adaptive.final).toBeGreaterThanOrEqual(1);
    expect(adaptive.throttled).toBeLessThan(fixed.throttled / 3);
    expect(adaptive.ok).toBeGreaterThan(fixed.ok);
  });
});
