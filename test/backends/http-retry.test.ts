import { afterEach, describe, expect, it } from "vitest";
import { httpBackend } from "../../src/backends/http.js";
import { createDispatcher, type BackendOptions, type DispatchObserver } from "../../src/core/index.js";
import { manualClock } from "../helpers/manual-clock.js";
import { json, startUpstream, type TestUpstream } from "../helpers/upstream.js";

// Real upstreams and a real HTTP client; only the dispatcher's clock is simulated, so backoffs take no wall time.
let ups: TestUpstream[] = [];
let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.map((c) => c()));
  await Promise.all(ups.map((u) => u.close()));
  ups = [];
  closers = [];
});

async function upstream(respond: Parameters<typeof startUpstream>[0]) {
  const u = await startUpstream(respond);
  ups.push(u);
  return u;
}

/** Resolves once `n` jobs have either settled or started a backoff. */
function counter() {
  let seen = 0;
  let waiters: { n: number; resolve: () => void }[] = [];
  const bump = () => {
    seen++;
    waiters = waiters.filter((w) => (seen >= w.n ? (w.resolve(), false) : true));
  };
  const observer: DispatchObserver = { jobRetrying: bump, jobEnded: bump };
  return {
    observer,
    get seen() {
      return seen;
    },
    reach: (n: number) => new Promise<void>((resolve) => (seen >= n ? resolve() : waiters.push({ n, resolve }))),
  };
}

function dispatcher(endpoints: string[], extra: Partial<BackendOptions>, observer?: DispatchObserver) {
  const clock = manualClock();
  const b = httpBackend({}, "backends[0]", { endpoints, env: {} });
  const d = createDispatcher({
    clock,
    random: () => 0.99,
    observer,
    backends: [{ name: "up", handler: b.handler, close: b.close, workers: endpoints.map((endpoint, i) => ({ endpoint, name: `e${i}` })), ...extra }],
  });
  closers.push(() => d.close());
  return { clock, d };
}

describe("http backend retries and ejection", () => {
  it("retries a 429 after its Retry-After", async () => {
    const u = await upstream((req, res) => (u.requests.length === 1 ? json(res, 429, { error: "slow down" }, { "retry-after": "2" }) : json(res, 200, "ok")));
    const c = counter();
    const { clock, d } = dispatcher([u.url], { retry: { maxAttempts: 3, maxBackoffMs: 5_000 } }, c.observer);
    const res = d.submit({ backend: "up" });
    await c.reach(1); // in backoff
    clock.advance(1_999);
    expect(u.requests).toHaveLength(1);
    clock.advance(1);
    const r = await res;
    expect(r.payload).toMatchObject({ json: "ok" });
    expect(r.attempts).toBe(2);
    expect(u.requests).toHaveLength(2);
  });

  it("limits retries to the budget during an outage", async () => {
    const u = await upstream((req, res) => json(res, 503, { error: "down" }));
    const c = counter();
    const { clock, d } = dispatcher([u.url], {
      maxConcurrency: 20,
      outlier: { consecutiveFailures: 0 },
      retry: { maxAttempts: 5, initialBackoffMs: 10, budgetPercent: 10, minRetryConcurrency: 1 },
    }, c.observer);
    const jobs = Array.from({ length: 20 }, () => d.submit({ backend: "up" }).catch((e: { code: string }) => e.code));
    await c.reach(20); // every first attempt failed: settled or waiting to retry
    // 10 % of 20 active jobs: 2 retries in progress at most; every other job failed at once.
    expect(u.requests).toHaveLength(20);
    let settled = 0;
    void Promise.all(jobs).then(() => (settled = 1));
    // Let each backoff run out, then wait for its attempt to fail or retry again.
    while (settled === 0 && (clock.pending > 0 || c.seen < 20 + 2 * 4)) {
      const next = c.seen + 1;
      clock.advance(1_000);
      await c.reach(next);
    }
    const codes = await Promise.all(jobs);
    expect(codes.every((x) => x === "unavailable")).toBe(true);
    // Two jobs got the budget and used all 5 attempts; without it: 20 × 5 = 100 requests.
    expect(u.requests.length).toBe(20 + 2 * 4);
  });

  it("ejects a failing endpoint while the others serve, then brings it back", async () => {
    let healthy = false;
    const bad = await upstream((req, res) => (healthy ? json(res, 200, "bad-ok") : res.socket!.destroy()));
    const good = await upstream((req, res) => json(res, 200, "good"));
    const { clock, d } = dispatcher([bad.url, good.url], { outlier: { consecutiveFailures: 3, baseEjectionMs: 10_000 } });
    const state = () => d.snapshot()[0]!.state;
    for (let i = 0; i < 3; i++) await expect(d.submit({ backend: "up" })).rejects.toMatchObject({ code: "unavailable" });
    expect(state()).toBe("ejected");
    for (let i = 0; i < 3; i++) expect((await d.submit({ backend: "up" })).workerId).toBe("up/e1");
    expect(bad.requests).toHaveLength(3);
    healthy = true;
    clock.advance(10_000);
    expect(state()).toBe("serving");
    expect((await d.submit({ backend: "up" })).workerId).toBe("up/e0");
    expect(d.snapshot()[0]!.ejections).toBe(1);
  });
});
