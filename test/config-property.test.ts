import { describe, expect, it } from "vitest";
import { backendOptions } from "../src/app.js";
import { ConfigError, validateConfig } from "../src/config.js";
import { createDispatcher, policyNames } from "../src/core/index.js";
import { seededRandom } from "./helpers/manual-clock.js";

/**
 * No config passes the file check and then fails in the core: random configs,
 * with valid and invalid values for every key the core checks; whenever
 * validateConfig accepts one, the service's own path from config to core
 * (app.ts backendOptions, then createDispatcher, which runs
 * validateBackendOptions on every backend) must not throw.
 */

// Each pool: values that are often valid first, then edge and invalid ones, drawn less often so that
// about a fifth of the whole configs pass and each invalid value still shows up hundreds of times.
const pool = (common: unknown[], edge: unknown[]) => ({ common, edge });
const ints = pool([1, 2, 3, 7, 100], [-1, 0, 101, 1.5, 0.5, 1024, 1025, 2 ** 31 - 1, 2 ** 31, 2 ** 53, Number.NaN, Infinity, "2", null, true]);
const numbers = pool([1, 1.25, 2, 20, 99.5], [...ints.edge, 0, 100, 1e-9, -0.5, 0.99]);
const durations = pool([0, 1, 250, "1.5s", "10m"], [1.5, -1, 2 ** 31 - 1, 2 ** 31, "0ms", "0.4ms", "600h", "596h", "597h", "24.8d", "5000", "-1s", "soon", "", null, Infinity]);
const names = pool(["a", "b", "echo", "a.b_c-d", "0", "1", "w"], ["x".repeat(63), "x".repeat(64), "a b", "-a", "", 5]);
const policies = pool(policyNames(), ["nope", "", 3]);
const bools = pool([true, false], ["true", 1]);

describe("the file check is at least as strict as the core", () => {
  it("accepts no config that the core then refuses (seeded)", async () => {
    const random = seededRandom(20261123);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const draw = (p: { common: unknown[]; edge: unknown[] }) => pick(random() < 0.9 ? p.common : p.edge);
    const maybe = (o: Record<string, unknown>, key: string, values: { common: unknown[]; edge: unknown[] }, p = 0.4) => {
      if (random() < p) o[key] = draw(values);
    };
    const block = (keys: Record<string, { common: unknown[]; edge: unknown[] }>): Record<string, unknown> | undefined => {
      if (random() < 0.5) return undefined;
      const o: Record<string, unknown> = {};
      for (const [k, vs] of Object.entries(keys)) maybe(o, k, vs, 0.5);
      return o;
    };
    const endpoint = (): unknown => {
      if (random() < 0.3) return "http://127.0.0.1:1";
      const e: Record<string, unknown> = { url: "http://127.0.0.1:1" };
      maybe(e, "name", names);
      maybe(e, "max_concurrency", ints);
      maybe(e, "queue_capacity", ints);
      maybe(e, "weight", numbers);
      return e;
    };
    const backend = (): Record<string, unknown> => {
      const b: Record<string, unknown> = { name: draw(names), kind: "echo" };
      if (random() < 0.5) maybe(b, "workers", ints, 0.7);
      else b["endpoints"] = Array.from({ length: 1 + Math.floor(random() * 3) }, endpoint);
      maybe(b, "max_concurrency", ints);
      maybe(b, "queue_capacity", ints);
      maybe(b, "timeout", durations);
      maybe(b, "policy", policies);
      maybe(b, "idempotent", bools, 0.2);
      const affinity = block({ ttl: durations, max_pins: ints, spill_load_factor: numbers });
      if (affinity) b["affinity"] = affinity;
      const retry = block({
        max_attempts: ints, initial_backoff: durations, max_backoff: durations, multiplier: numbers, budget_percent: numbers, min_retry_concurrency: ints,
      });
      if (retry) b["retry"] = retry;
      const outlier = block({ consecutive_failures: ints, base_ejection: durations, max_ejection: durations, max_ejection_percent: numbers });
      if (outlier) b["outlier"] = outlier;
      return b;
    };

    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < 1500; i++) {
      const raw = { backends: Array.from({ length: 1 + Math.floor(random() * 3) }, backend) };
      let config;
      try {
        config = validateConfig(raw);
      } catch (e) {
        expect(e, JSON.stringify(raw)).toBeInstanceOf(ConfigError);
        rejected++;
        continue;
      }
      accepted++;
      const backends = await backendOptions(config, {});
      let dispatcher;
      try {
        dispatcher = createDispatcher({ backends });
      } catch (e) {
        throw new Error(`accepted by validateConfig, refused by the core: ${(e as Error).message}\n${JSON.stringify(raw)}`);
      }
      await dispatcher.close();
    }
    // Both sides are exercised: the generator is not so lenient that all pass, nor so strict that none do.
    console.log(`validateConfig accepted ${accepted}, rejected ${rejected}`);
    expect(accepted).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(100);
  }, 120_000);
});
