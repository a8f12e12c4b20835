import { describe, expect, it } from "vitest";
import { createDispatcher, DispatchError, type Handler } from "../../src/core/index.js";
import { manualClock } from "../helpers/manual-clock.js";

// random ≈ 1 makes least-loaded ties go to the first worker: sequential jobs all land on b/0 while it serves.
const first = () => 0.99;

function setup(handler: Handler, workers = 2) {
  const clock = manualClock();
  const d = createDispatcher({
    clock,
    random: first,
    backends: [{ name: "b", handler, workers, outlier: { consecutiveFailures: 3, baseEjectionMs: 1_000, maxEjectionMs: 2_500 } }],
  });
  const state = (id: string) => d.snapshot().find((w) => w.workerId === id)!;
  return { clock, d, state };
}

const failOn0: Handler = (p, ctx) => {
  if (ctx.workerId === "b/0") throw new DispatchError("unavailable", "down", { retryable: true });
  return p;
};

async function run(d: ReturnType<typeof createDispatcher>, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await d.submit({ backend: "b" }).then((r) => r.workerId, () => "b/0 failed"));
  return out;
}

describe("outlier ejection", () => {
  it("ejects a worker after N consecutive failures while the others serve, then brings it back", async () => {
    const { clock, d, state } = setup(failOn0);
    expect(await run(d, 3)).toEqual(["b/0 failed", "b/0 failed", "b/0 failed"]);
    expect(state("b/0").state).toBe("ejected");
    expect(state("b/0").ejections).toBe(1);
    expect(await run(d, 2)).toEqual(["b/1", "b/1"]);
    clock.advance(999);
    expect(state("b/0").state).toBe("ejected");
    clock.advance(1);
    expect(state("b/0").state).toBe("serving");
    // Still failing: ejected again for twice the base time, then capped at maxEjectionMs.
    await run(d, 3);
    expect(state("b/0").ejections).toBe(2);
    clock.advance(1_999);
    expect(state("b/0").state).toBe("ejected");
    clock.advance(1);
    expect(state("b/0").state).toBe("serving");
    await run(d, 3);
    expect(state("b/0").ejections).toBe(3);
    clock.advance(2_500);
    expect(state("b/0").state).toBe("serving");
    await d.close();
    expect(clock.pending).toBe(0);
  });

  it("a success ends the run of failures and the growth of ejection time", async () => {
    let fail = true;
    const { clock, d, state } = setup((p, ctx) => {
      if (fail && ctx.workerId === "b/0") throw new DispatchError("internal", "boom");
      return p;
    });
    await run(d, 2);
    fail = false;
    await run(d, 1);
    fail = true;
    await run(d, 2);
    expect(state("b/0").state).toBe("serving");
    await run(d, 1);
    expect(state("b/0").state).toBe("ejected");
    clock.advance(1_000);
    fail = false;
    await run(d, 1);
    fail = true;
    await run(d, 3);
    clock.advance(1_000); // base time again, not twice
    expect(state("b/0").state).toBe("serving");
  });

  it("client faults do not count toward ejection", async () => {
    const { d, state } = setup(() => {
      throw new DispatchError("invalid_argument", "bad request");
    });
    await run(d, 6);
    expect(state("b/0").state).toBe("serving");
    expect(state("b/0").errors).toBe(6);
  });

  it("never ejects the last serving worker", async () => {
    const { d, state } = setup(() => {
      throw new DispatchError("unavailable", "down");
    });
    await run(d, 3);
    expect(state("b/0").state).toBe("ejected");
    await run(d, 10);
    expect(state("b/1").state).toBe("serving");
    expect(state("b/1").errors).toBe(10);
  });

  it("spills the pins of an ejected worker", async () => {
    const { d, state } = setup(failOn0);
    await d.submit({ backend: "b", sessionId: "s" }).catch(() => undefined);
    await run(d, 2);
    expect(state("b/0").state).toBe("ejected");
    const r = await d.submit({ backend: "b", sessionId: "s" });
    expect(r.workerId).toBe("b/1");
    expect(r.affinity).toBe("spill");
    const again = await d.submit({ backend: "b", sessionId: "s" });
    expect(again.affinity).toBe("hit");
    expect(again.workerId).toBe("b/1");
  });

  it("is on by default (5 failures) and off with consecutiveFailures 0", async () => {
    for (const [outlier, expected] of [[undefined, "ejected"], [{ consecutiveFailures: 0 }, "serving"]] as const) {
      const d = createDispatcher({ clock: manualClock(), random: first, backends: [{ name: "b", handler: failOn0, workers: 2, outlier }] });
      await run(d, 5);
      expect(d.snapshot()[0]!.state).toBe(expected);
      await d.close();
    }
  });
});
