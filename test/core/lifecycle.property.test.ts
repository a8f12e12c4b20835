import { describe, expect, it } from "vitest";
import { runScenario } from "./lifecycle-scenario.js";

/**
 * Property test of the job lifecycle (lifecycle-scenario.ts says what one
 * run does and checks). CI runs MANUAL_RUNS seeded runs on a clock whose
 * timers fire early and late, and REAL_RUNS on the real clock; a failure
 * names its seed, which replays it exactly (manual clock).
 */
const MANUAL_RUNS = Number(process.env["LIFECYCLE_RUNS"] ?? 2000);
const REAL_RUNS = Number(process.env["LIFECYCLE_REAL_RUNS"] ?? 12);

describe("job lifecycle (property)", () => {
  it(`holds its invariants over ${MANUAL_RUNS} seeded runs on a clock whose timers fire early and late`, async () => {
    const violations: string[] = [];
    let submits = 0;
    let early = 0;
    for (let seed = 1; seed <= MANUAL_RUNS && violations.length < 10; seed++) {
      const r = await runScenario(seed, false);
      violations.push(...r.violations);
      submits += r.submits;
      early += r.early;
    }
    expect(violations).toEqual([]);
    expect(submits).toBeGreaterThan(MANUAL_RUNS * 3);
    // The clock did fire timers early, so the runs exercised that case.
    expect(early).toBeGreaterThan(MANUAL_RUNS);
  }, 120_000);

  it(`holds its invariants over ${REAL_RUNS} runs on the real clock`, async () => {
    const violations: string[] = [];
    for (let seed = 1; seed <= REAL_RUNS; seed++) violations.push(...(await runScenario(10_000 + seed, true)).violations);
    expect(violations).toEqual([]);
  }, 60_000);
});
