import { createDispatcher, DispatchError } from "../../src/core/index.js";
import { gate } from "../helpers/gate.js";
import { manualClock, seededRandom } from "../helpers/manual-clock.js";

/** The error code a submit settles with, "ok" for a result. */
export function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => "ok",
    (e: unknown) => (e instanceof DispatchError ? e.code : `not a DispatchError: ${String(e)}`),
  );
}

/** A dispatcher of one backend "b" on a manual clock, its handler held by a gate. */
export function setup(o: { workers?: number; maxConcurrency?: number; queueCapacity?: number; timeoutMs?: number; ttlMs?: number; maxPins?: number } = {}) {
  const clock = manualClock();
  const g = gate();
  const d = createDispatcher({
    clock,
    random: seededRandom(7),
    shutdownGraceMs: 1_000,
    backends: [
      {
        name: "b",
        handler: g.handler,
        workers: o.workers ?? 2,
        maxConcurrency: o.maxConcurrency ?? 1,
        queueCapacity: o.queueCapacity ?? 2,
        timeoutMs: o.timeoutMs ?? 0,
        affinity: { ttlMs: o.ttlMs ?? 1_000, maxPins: o.maxPins ?? 100 },
      },
    ],
  });
  const w = (id: string) => d.snapshot().find((s) => s.workerId === id)!;
  return { clock, g, d, w };
}

