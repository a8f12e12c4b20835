import { describe, expect, it } from "vitest";
import { createDispatcher, DispatchError, type Dispatcher } from "../../src/core/index.js";
import { gate } from "../helpers/gate.js";
import { flush } from "../helpers/manual-clock.js";
import { codeOf, setup } from "./dispatcher-setup.js";

// How jobs end besides running to completion: cancellation, handler failures, close(); the observer and options.

describe("cancellation", () => {
  it("removes a queued job when its client cancels", async () => {
    const { d, g, w } = setup({ workers: 1, maxConcurrency: 1, queueCapacity: 5 });
    const first = d.submit({ backend: "b" });
    const ac = new AbortController();
    const queued = d.submit({ backend: "b", signal: ac.signal, payload: { json: "gone" } });
    ac.abort();
    expect(await codeOf(queued)).toBe("cancelled");
    expect(w("b/0").queued).toBe(0);
    g.calls[0]!.resolve();
    await first;
    await flush();
    expect(g.calls).toHaveLength(1);
    expect(w("b/0").cancelled).toBe(1);
    expect(w("b/0").errors).toBe(0);
  });

  it("aborts a running handler when its client cancels, and settles once", async () => {
    const { d, g, w } = setup({ workers: 1, maxConcurrency: 1, queueCapacity: 5 });
    const ac = new AbortController();
    const p = d.submit({ backend: "b", signal: ac.signal });
    const next = d.submit({ backend: "b" });
    ac.abort();
    expect(await codeOf(p)).toBe("cancelled");
    expect(g.calls[0]!.ctx.signal.aborted).toBe(true);
    g.calls[0]!.resolve(); // late result of the aborted handler is ignored
    await flush();
    expect(w("b/0").completed).toBe(0);
    expect(g.calls).toHaveLength(2);
    g.calls[1]!.resolve();
    await next;
    expect(w("b/0").completed).toBe(1);
    expect(w("b/0").cancelled).toBe(1);
  });

  it("refuses a job whose signal is already aborted", async () => {
    const { d, g } = setup();
    expect(await codeOf(d.submit({ backend: "b", signal: AbortSignal.abort() }))).toBe("cancelled");
    expect(g.calls).toHaveLength(0);
  });
});

describe("handler failures", () => {
  it("passes a handler's rejection through with its code and message", async () => {
    const { d, g, w } = setup({ workers: 1 });
    const p = d.submit({ backend: "b" });
    g.calls[0]!.reject(new DispatchError("unavailable", "upstream reset"));
    const err = (await p.catch((e: unknown) => e)) as DispatchError;
    expect(err.code).toBe("unavailable");
    expect(err.message).toBe("upstream reset");
    expect(w("b/0").errors).toBe(1);
    expect(w("b/0").inflight).toBe(0);
  });

  it("maps a plain Error to internal, keeping its message", async () => {
    const { d, g } = setup({ workers: 1 });
    const p = d.submit({ backend: "b" });
    g.calls[0]!.reject(new Error("boom"));
    const err = (await p.catch((e: unknown) => e)) as DispatchError;
    expect(err.code).toBe("internal");
    expect(err.message).toBe("boom");
  });

  it("survives a handler that throws synchronously", async () => {
    const d = createDispatcher({
      backends: [
        {
          name: "t",
          handler: () => {
            throw new Error("sync");
          },
        },
      ],
    });
    const err = (await d.submit({ backend: "t" }).catch((e: unknown) => e)) as DispatchError;
    expect(err.code).toBe("internal");
    expect(err.message).toBe("sync");
    expect(d.snapshot()[0]!.inflight).toBe(0);
    expect(d.snapshot()[0]!.errors).toBe(1);
  });

  it("rejects a handler result that is not a payload", async () => {
    const d = createDispatcher({ backends: [{ name: "t", handler: () => 42 as never }] });
    expect(await codeOf(d.submit({ backend: "t" }))).toBe("internal");
  });

  it("keeps the numeric status of a gRPC client error thrown by a handler", async () => {
    const e = Object.assign(new Error("[unavailable] upstream down"), { code: 14, rawMessage: "upstream down" });
    const d = createDispatcher({ backends: [{ name: "t", handler: () => Promise.reject(e) }] });
    const err = (await d.submit({ backend: "t" }).catch((x: unknown) => x)) as DispatchError;
    expect(err.code).toBe("unavailable");
    expect(err.message).toBe("upstream down");
  });
});

describe("close()", () => {
  it("stops admission, drains queued and running jobs, and is idempotent", async () => {
    const { d, g } = setup({ workers: 1, maxConcurrency: 1, queueCapacity: 3 });
    const a = d.submit({ backend: "b" });
    const b = d.submit({ backend: "b" });
    const closed = d.close();
    expect(d.close()).toBe(closed);
    expect(await codeOf(d.submit({ backend: "b" }))).toBe("unavailable");
    expect(d.snapshot()[0]!.state).toBe("draining");
    let done = false;
    void closed.then(() => (done = true));
    g.calls[0]!.resolve();
    await flush();
    expect(done).toBe(false);
    g.calls[1]!.resolve();
    await Promise.all([a, b, closed]);
    expect(done).toBe(true);
  });

  it("aborts what is left when the grace period ends, answering every job", async () => {
    const { d, g, clock } = setup({ workers: 1, maxConcurrency: 1, queueCapacity: 3 });
    const running = d.submit({ backend: "b" });
    const queued = d.submit({ backend: "b" });
    const codes = Promise.all([codeOf(running), codeOf(queued)]);
    const closed = d.close({ graceMs: 500 });
    clock.advance(500);
    expect(await codes).toEqual(["unavailable", "unavailable"]);
    expect(g.calls[0]!.ctx.signal.aborted).toBe(true);
    expect(g.calls).toHaveLength(1);
    await closed;
    expect(clock.pending).toBe(0);
  });

  it("resolves at once when idle", async () => {
    const { d } = setup();
    await d.close();
    expect(d.closing).toBe(true);
  });
});

describe("observer", () => {
  it("sees queued, started and ended in order, once each", async () => {
    const events: string[] = [];
    const g = gate();
    const d: Dispatcher = createDispatcher({
      observer: {
        jobQueued: (j) => events.push(`queued ${j.workerId} ${j.affinity}`),
        jobStarted: (j) => events.push(`started ${j.workerId}`),
        jobEnded: (j, outcome) => events.push(`ended ${j.workerId} ${outcome}`),
        jobRejected: (b, _w, e) => events.push(`rejected ${b} ${e.code}`),
      },
      backends: [{ name: "o", handler: g.handler, workers: 1, maxConcurrency: 1, queueCapacity: 0 }],
    });
    const p = d.submit({ backend: "o", sessionId: "s" });
    await d.submit({ backend: "o" }).catch(() => undefined);
    g.calls[0]!.resolve();
    await p;
    expect(events).toEqual(["queued o/0 miss", "started o/0", "rejected o resource_exhausted", "ended o/0 ok"]);
  });
});

describe("options", () => {
  it("names the bad option and the value received", () => {
    expect(() => createDispatcher({ backends: [{ name: "x", handler: () => ({ json: 1 }), maxConcurrency: 0 }] })).toThrow(
      /backend "x": maxConcurrency: expected a positive integer, got 0/,
    );
    expect(() => createDispatcher({ backends: [{ name: "x", handler: () => ({ json: 1 }), policy: "fastest" }] })).toThrow(/policy: unknown "fastest"/);
    const d = createDispatcher({ backends: [{ name: "x", handler: () => ({ json: 1 }) }] });
    expect(() => d.register({ name: "x", handler: () => ({ json: 1 }) })).toThrow(/already registered/);
  });
});
