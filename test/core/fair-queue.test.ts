import { describe, expect, it } from "vitest";
import { createDispatcher, DispatchError } from "../../src/core/index.js";
import { FairQueue, type FairNode, type Lane } from "../../src/core/fair-queue.js";
import { gate } from "../helpers/gate.js";
import { flush, manualClock } from "../helpers/manual-clock.js";

class Node implements FairNode {
  prev = null;
  next = null;
  aprev: FairNode | null = null;
  anext: FairNode | null = null;
  lane: Lane | undefined = undefined;
  constructor(
    readonly name: string,
    readonly priority: number,
    readonly tenant: string,
    readonly queuedAt = 0,
  ) {}
}

function drain(q: FairQueue<Node>, now = 0, n = Infinity): string[] {
  const out: string[] = [];
  for (let j = q.peek(now); j !== undefined && out.length < n; j = q.peek(now)) {
    q.take(j);
    out.push(j.name);
  }
  return out;
}

const policy = (o: Partial<{ levels: number; agingMs: number; weights: Record<string, number> }> = {}) => ({
  levels: o.levels ?? 3,
  agingMs: o.agingMs ?? 0,
  weightOf: (t: string) => o.weights?.[t] ?? 1,
});

describe("FairQueue", () => {
  it("serves tiers in strict priority, FIFO within a tenant", () => {
    const q = new FairQueue<Node>(policy());
    for (const [name, p] of [["c1", 2], ["a1", 0], ["b1", 1], ["a2", 0], ["c2", 2]] as const) q.push(new Node(name, p, ""));
    expect(drain(q)).toEqual(["a1", "a2", "b1", "c1", "c2"]);
    expect(q.length).toBe(0);
  });

  it("round-robins tenants inside a tier, by weight", () => {
    const q = new FairQueue<Node>(policy({ weights: { big: 3 } }));
    for (let i = 0; i < 9; i++) q.push(new Node(`big${i}`, 0, "big"));
    for (let i = 0; i < 3; i++) q.push(new Node(`x${i}`, 0, "x"));
    for (let i = 0; i < 3; i++) q.push(new Node(`y${i}`, 0, "y"));
    expect(drain(q, 0, 10)).toEqual(["big0", "big1", "big2", "x0", "y0", "big3", "big4", "big5", "x1", "y1"]);
  });

  it("a flooding tenant does not delay a quiet one by more than a round", () => {
    const q = new FairQueue<Node>(policy());
    for (let i = 0; i < 1_000; i++) q.push(new Node(`flood${i}`, 1, "flood"));
    q.push(new Node("quiet", 1, "quiet"));
    expect(drain(q).indexOf("quiet")).toBeLessThanOrEqual(1);
  });

  it("serves a lower tier first once it has waited past the aging bound", () => {
    const q = new FairQueue<Node>(policy({ agingMs: 100 }));
    q.push(new Node("old-low", 2, "", 0));
    for (let i = 0; i < 3; i++) q.push(new Node(`hi${i}`, 0, "", 50));
    expect(drain(q, 60, 1)).toEqual(["hi0"]);
    expect(drain(q, 100, 1)).toEqual(["old-low"]);
    expect(drain(q, 100)).toEqual(["hi1", "hi2"]);
  });

  it("names the newest job of the lowest tier below an arrival as the one to displace", () => {
    const q = new FairQueue<Node>(policy());
    const nodes = [new Node("b-old", 1, ""), new Node("c-old", 2, ""), new Node("c-new", 2, "t"), new Node("a", 0, "")];
    for (const n of nodes) q.push(n);
    expect(q.victimFor(0)?.name).toBe("c-new");
    expect(q.victimFor(2)).toBeUndefined();
    q.remove(nodes[2]!);
    q.remove(nodes[1]!);
    expect(q.victimFor(0)?.name).toBe("b-old");
    expect(q.victimFor(1)).toBeUndefined();
  });

  it("on a full queue, lets a tenant below its weighted share take the place of the heaviest tenant's newest job", () => {
    const q = new FairQueue<Node>(policy({ weights: { heavy4: 4 } }));
    for (let i = 0; i < 6; i++) q.push(new Node(`a${i}`, 1, "a"));
    for (let i = 0; i < 6; i++) q.push(new Node(`h${i}`, 1, "heavy4"));
    // "a" holds 6 (share 6), "heavy4" 6 at weight 4 (share 1.5): a new "b" call (share 1) takes a's newest.
    expect(q.fairVictimFor(1, "b")?.name).toBe("a5");
    // "a" itself gains nothing by displacing its own jobs; heavy4 (share 1.75 after one more) displaces a's.
    expect(q.fairVictimFor(1, "a")).toBeUndefined();
    expect(q.fairVictimFor(1, "heavy4")?.name).toBe("a5");
    // Another tier's tenants are not touched.
    expect(q.fairVictimFor(0, "b")).toBeUndefined();
  });

  it("keeps a lane only while its tenant has jobs (tenant names come from clients)", () => {
    const q = new FairQueue<Node>(policy());
    for (let i = 0; i < 10_000; i++) {
      const n = new Node(`n${i}`, 1, `tenant-${i}`);
      q.push(n);
      q.remove(n);
    }
    expect(q.length).toBe(0);
    expect(q.tenantCounts().size).toBe(0);
    expect((q as unknown as { tiers: { lanes: Map<string, unknown> }[] }).tiers.every((t) => t.lanes.size === 0)).toBe(true);
  });
});

describe("admission with priorities and tenants", () => {
  it("displaces the newest low-tier job when a more urgent call finds the queue full", async () => {
    const g = gate();
    const d = createDispatcher({ backends: [{ name: "b", handler: g.handler, maxConcurrency: 1, queueCapacity: 2 }] });
    const running = d.submit({ backend: "b" });
    const low1 = d.submit({ backend: "b", priority: 3 }).catch((e: DispatchError) => e.code);
    const low2 = d.submit({ backend: "b", priority: 3 }).catch((e: DispatchError) => e.code);
    const urgent = d.submit({ backend: "b", priority: 0 });
    expect(await low2).toBe("resource_exhausted");
    await expect(d.submit({ backend: "b", priority: 3 })).rejects.toMatchObject({ code: "resource_exhausted" });
    await flush();
    g.calls[0]!.resolve();
    await running;
    await flush();
    expect(g.calls[1]!.ctx.metadata).toBeDefined();
    g.calls[1]!.resolve({ json: "urgent" });
    expect((await urgent).payload).toEqual({ json: "urgent" });
    await flush();
    g.calls[2]!.resolve();
    expect(await low1).not.toBe("resource_exhausted");
    expect(d.snapshot()[0]).toMatchObject({ displaced: 1, rejected: 1 });
  });

  it("holds a tenant to its share of the queue, naming its cap", async () => {
    const g = gate();
    const d = createDispatcher({
      backends: [{ name: "b", handler: g.handler, maxConcurrency: 1, queueCapacity: 4, scheduling: { tenantQueueShare: 0.5 } }],
    });
    void d.submit({ backend: "b", tenant: "noisy" }).catch(() => undefined);
    void d.submit({ backend: "b", tenant: "noisy" }).catch(() => undefined);
    void d.submit({ backend: "b", tenant: "noisy" }).catch(() => undefined);
    const third = await d.submit({ backend: "b", tenant: "noisy" }).catch((e: DispatchError) => e);
    expect(third).toMatchObject({ code: "resource_exhausted" });
    expect((third as DispatchError).message).toMatch(/tenant "noisy" holds its cap of 2 queued calls/);
    // Another tenant still gets in.
    void d.submit({ backend: "b", tenant: "quiet" }).catch(() => undefined);
    expect(d.snapshot()[0]!.queued).toBe(3);
    await d.close({ graceMs: 0 });
  });

  it("refuses at once a call whose estimated wait exceeds its deadline, naming the estimate", async () => {
    const clock = manualClock();
    const g = gate();
    const d = createDispatcher({ clock, backends: [{ name: "b", handler: g.handler, maxConcurrency: 1, queueCapacity: 100 }] });
    // Five calls of 100 ms teach the worker its service time.
    for (let i = 0; i < 5; i++) {
      const p = d.submit({ backend: "b" });
      await flush();
      clock.advance(100);
      g.calls.at(-1)!.resolve();
      await p;
    }
    const queued = Array.from({ length: 5 }, () => d.submit({ backend: "b" }).catch(() => undefined));
    await flush();
    // One running, four queued: a new call waits about 500 ms.
    const late = await d.submit({ backend: "b", timeoutMs: 300 }).catch((e: DispatchError) => e);
    expect(late).toMatchObject({ code: "resource_exhausted" });
    expect((late as DispatchError).message).toMatch(/estimated queue wait on b\/0 is 500 ms, more than the 300 ms left/);
    // A call whose deadline allows the wait is queued.
    const ok = d.submit({ backend: "b", timeoutMs: 10_000 });
    expect(d.snapshot()[0]!.queued).toBe(5);
    const closed = d.close({ graceMs: 0 });
    clock.advance(1);
    await closed;
    await Promise.all(queued);
    await ok.catch(() => undefined);
  });

  it("rejects a negative priority and holds one past the last tier to the last", async () => {
    const d = createDispatcher({ backends: [{ name: "b", handler: (p) => p, scheduling: { priorityLevels: 2 } }] });
    await expect(d.submit({ backend: "b", priority: -1 })).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(d.submit({ backend: "b", priority: 99, payload: { json: 1 } })).resolves.toMatchObject({ payload: { json: 1 } });
  });
});
