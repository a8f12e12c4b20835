import { afterEach, describe, expect, it } from "vitest";
import { httpBackend } from "../../src/backends/http.js";
import type { KindContext } from "../../src/backends/kind.js";
import { createDispatcher, type BackendOptions, type DispatchObserver } from "../../src/core/index.js";
import type { ManualClock } from "../helpers/manual-clock.js";
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

function dispatcher(
  endpoints: string[],
  extra: Partial<BackendOptions>,
  observer?: DispatchObserver,
  kind: Partial<KindContext> = {},
  options: Record<string, unknown> = {},
) {
  const clock = manualClock();
  const b = httpBackend(options, "backends[0]", { endpoints, env: {}, ...kind });
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

/** Settles `job`, moving the manual clock past each backoff as the job starts one. */
async function drive<T>(job: Promise<T>, clock: ManualClock, c: ReturnType<typeof counter>): Promise<T> {
  let done = false;
  const settled = job.then(
    () => (done = true),
    () => (done = true),
  );
  while (!done) {
    await Promise.race([c.reach(c.seen + 1), settled]);
    clock.advance(10_000);
  }
  return job;
}

/** Answers 200 with a promised 1000-byte body, sends 11 bytes of it, then drops the connection. */
function resetMidAnswer(res: import("node:http").ServerResponse): void {
  res.writeHead(200, { "content-type": "application/json", "content-length": "1000" });
  res.write('{"partial":', () => res.socket!.destroy());
}

describe("http backend: what may run twice", () => {
  const retry = { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 10 };
  const noEjection = { outlier: { consecutiveFailures: 0 } };

  it("does not resend a request whose answer broke off mid-body: the upstream ran it once", async () => {
    const u = await upstream((req, res) => resetMidAnswer(res));
    const c = counter();
    const { clock, d } = dispatcher([u.url], { retry, ...noEjection }, c.observer);
    await expect(drive(d.submit({ backend: "up", payload: { json: { order: 1 } } }), clock, c)).rejects.toMatchObject({
      code: "unavailable",
      retryable: false,
    });
    expect(u.requests).toHaveLength(1);
  });

  it("does not resend a request the upstream read before dropping the connection", async () => {
    const u = await upstream((req, res) => res.socket!.destroy());
    const c = counter();
    const { clock, d } = dispatcher([u.url], { retry, ...noEjection }, c.observer);
    await expect(drive(d.submit({ backend: "up" }), clock, c)).rejects.toMatchObject({ code: "unavailable", retryable: false });
    expect(u.requests).toHaveLength(1);
  });

  it("retries a refused connection on another worker: nothing was sent", async () => {
    const closed = await startUpstream(() => undefined);
    await closed.close();
    const good = await upstream((req, res) => json(res, 200, "good"));
    const c = counter();
    const { clock, d } = dispatcher([closed.url, good.url], { retry, policy: "round-robin", ...noEjection }, c.observer);
    const r = await drive(d.submit({ backend: "up" }), clock, c);
    expect(r).toMatchObject({ workerId: "up/e1", attempts: 2, payload: { json: "good" } });
    expect(good.requests).toHaveLength(1);
  });

  it("with idempotent: true, retries a reset before the answer and one mid-answer", async () => {
    const u = await upstream((req, res) => {
      if (u.requests.length === 1) res.socket!.destroy();
      else if (u.requests.length === 2) resetMidAnswer(res);
      else json(res, 200, "third time");
    });
    const c = counter();
    const { clock, d } = dispatcher([u.url], { retry, ...noEjection }, c.observer, { idempotent: true });
    const r = await drive(d.submit({ backend: "up" }), clock, c);
    expect(r).toMatchObject({ attempts: 3, payload: { json: "third time" } });
    expect(u.requests).toHaveLength(3);
  });

  it("retries 503 always, 500 and 502 only when the backend is idempotent", async () => {
    for (const [status, idempotent, runs] of [[503, false, 2], [500, false, 1], [502, false, 1], [500, true, 2], [502, true, 2]] as const) {
      let n = 0;
      const u = await upstream((req, res) => (++n === 1 ? json(res, status, { error: "boom" }) : json(res, 200, "ok")));
      const c = counter();
      const { clock, d } = dispatcher([u.url], { retry, ...noEjection }, c.observer, { idempotent });
      const outcome = await drive(d.submit({ backend: "up" }), clock, c).then(
        (r) => `ok after ${r.attempts}`,
        (e: { code: string; retryable: boolean }) => `${e.code}, retryable ${e.retryable}`,
      );
      expect(`${status} idempotent=${idempotent}: ${outcome}`).toBe(
        `${status} idempotent=${idempotent}: ${runs === 2 ? "ok after 2" : "unavailable, retryable false"}`,
      );
      expect(u.requests).toHaveLength(runs);
    }
  });

  it("an error status wins over a body larger than max_response_bytes, and an endless one is not read to its end", async () => {
    // Writes 64 KiB chunks for as long as the client reads: the answer never ends unless the client hangs up.
    const u = await upstream((req, res) => {
      res.writeHead(req.url === "/ok" ? 200 : 500, { "content-type": "text/html" });
      const chunk = Buffer.alloc(64 * 1024, "x");
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", pump);
      };
      pump();
    });
    const c = counter();
    const fail = dispatcher([u.url], { ...noEjection }, c.observer, {}, { max_response_bytes: 1024 });
    await expect(fail.d.submit({ backend: "up" })).rejects.toMatchObject({ code: "unavailable", message: "upstream up/e0 answered HTTP 500 Internal Server Error" });
    expect(await u.requests[0]!.aborted).toBe(true);
    const ok = dispatcher([`${u.url}/ok`], { ...noEjection }, c.observer, {}, { max_response_bytes: 1024 });
    await expect(ok.d.submit({ backend: "up" })).rejects.toMatchObject({ code: "resource_exhausted" });
    expect(await u.requests[1]!.aborted).toBe(true);
  });
});
