import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { WorkerMetricsResponseSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { WorkerSnapshot } from "../../src/core/index.js";
import { createMetricsHub, type MetricsHub } from "../../src/server/metrics-hub.js";

function worker(backend: string, index: number): WorkerSnapshot {
  return {
    workerId: `${backend}/${index}`,
    backend,
    inflight: 0,
    queued: 0,
    queueCapacity: 4,
    maxConcurrency: 2,
    load: 0,
    completed: 0,
    errors: 0,
    rejected: 0,
    cancelled: 0,
    ejections: 0,
    sessions: 0,
    state: "serving",
    queueWaitP50Ms: 0,
    queueWaitP99Ms: 0,
    executionP50Ms: 0,
    executionP99Ms: 0,
    endpoint: undefined,
    displaced: 0,
    openStreams: 0,
    ttftP50Ms: 0,
    ttftP99Ms: 0,
    tiers: [],
    tenants: [],
    limits: [],
  } satisfies WorkerSnapshot;
}

function collector() {
  const frames: Uint8Array[] = [];
  return { frames, sink: { write: (f: Uint8Array) => void frames.push(f) } };
}

function decode(frame: Uint8Array) {
  const len = Buffer.from(frame).readUInt32BE(1);
  expect(frame[0]).toBe(0);
  expect(frame.byteLength).toBe(5 + len);
  return fromBinary(WorkerMetricsResponseSchema, frame.subarray(5));
}

let snapshots: number;
let hub: MetricsHub;
beforeEach(() => {
  vi.useFakeTimers();
  snapshots = 0;
  hub = createMetricsHub(() => {
    snapshots++;
    return [worker("a", 0), worker("b", 0)];
  });
});
afterEach(() => {
  hub.close();
  vi.useRealTimers();
});

describe("metrics hub", () => {
  it("takes one snapshot per tick and writes one shared frame to every stream of an equal filter", async () => {
    const ac = new AbortController();
    const a1 = collector();
    const a2 = collector();
    const all = collector();
    const ended = [
      hub.subscribe(100, new Set(["a"]), ac.signal).stream(a1.sink),
      hub.subscribe(100, new Set(["a"]), ac.signal).stream(a2.sink),
      hub.subscribe(100, undefined, ac.signal).stream(all.sink),
    ].map((p) => p.catch((e: unknown) => e));
    await vi.advanceTimersByTimeAsync(300);
    expect(snapshots).toBe(3);
    expect(a1.frames).toHaveLength(3);
    // The same bytes, encoded once, for both "a" subscribers (distinct Sets).
    expect(a1.frames.every((f, i) => f === a2.frames[i])).toBe(true);
    expect(decode(a1.frames[0]!).workers.map((w) => w.workerId)).toEqual(["a/0"]);
    expect(decode(all.frames[0]!).workers.map((w) => w.workerId)).toEqual(["a/0", "b/0"]);
    ac.abort(new ConnectError("gone", Code.Canceled));
    for (const e of await Promise.all(ended)) expect(ConnectError.from(e).code).toBe(Code.Canceled);
  });

  it("writes a tick that arrived before the stream took frames, then keeps to the interval", async () => {
    const sub = hub.subscribe(100, undefined, new AbortController().signal);
    await vi.advanceTimersByTimeAsync(150);
    const c = collector();
    const ended = sub.stream(c.sink).catch((e: unknown) => e);
    expect(c.frames).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(c.frames).toHaveLength(2);
    hub.close();
    expect(ConnectError.from(await ended).code).toBe(Code.Unavailable);
  });

  it("stops the timer when the last subscriber leaves", async () => {
    const sub = hub.subscribe(100, undefined, new AbortController().signal);
    await vi.advanceTimersByTimeAsync(100);
    sub.unsubscribe();
    expect(hub.subscribers).toBe(0);
    await vi.advanceTimersByTimeAsync(500);
    expect(snapshots).toBe(1);
  });
});
