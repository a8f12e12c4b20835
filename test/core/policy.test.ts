import { describe, expect, it } from "vitest";
import { createDispatcher } from "../../src/core/index.js";
import { pickLeastLoaded } from "../../src/core/policy.js";
import type { WorkerView } from "../../src/core/worker.js";
import { seededRandom } from "../helpers/manual-clock.js";

function view(id: string, inflight: number, queued = 0, o: Partial<WorkerView> = {}): WorkerView {
  return { id, inflight, queued, maxConcurrency: 4, queueCapacity: 4, weight: 1, state: "serving", serviceMs: 0, serviceSamples: 0, ...o };
}

describe("least-loaded", () => {
  it("breaks ties uniformly at random instead of always taking the first worker", () => {
    const workers = [view("a", 1), view("b", 1), view("c", 1), view("d", 3)];
    const random = seededRandom(42);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 3_000; i++) counts[pickLeastLoaded(workers, random)]!++;
    expect(counts[3]).toBe(0);
    for (const c of counts.slice(0, 3)) expect(c).toBeGreaterThan(850); // 1,000 each if uniform
  });

  it("skips workers that cannot admit and weighs load by capacity", () => {
    const random = seededRandom(1);
    expect(pickLeastLoaded([view("full", 4, 4), view("busy", 4, 3)], random)).toBe(1);
    expect(pickLeastLoaded([view("ejected", 0, 0, { state: "ejected" }), view("busy", 3)], random)).toBe(1);
    expect(pickLeastLoaded([view("full", 4, 4), view("draining", 0, 0, { state: "draining" })], random)).toBe(-1);
    // 3/(4×2) < 2/(4×1): the weight-2 worker takes the job though it runs more.
    expect(pickLeastLoaded([view("small", 2), view("big", 3, 0, { weight: 2 })], random)).toBe(1);
  });
});

describe("policies by name", () => {
  for (const policy of ["least-loaded", "power-of-two", "round-robin", "random"]) {
    it(`${policy} spreads idle-looking jobs over every worker`, async () => {
      const seen = new Set<string>();
      const d = createDispatcher({
        random: seededRandom(3),
        backends: [{ name: "p", policy, workers: 4, handler: (r) => r }],
      });
      for (let i = 0; i < 200; i++) seen.add((await d.submit({ backend: "p" })).workerId);
      expect([...seen].sort()).toEqual(["p/0", "p/1", "p/2", "p/3"]);
    });
  }
});
