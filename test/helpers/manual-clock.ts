import type { Clock } from "../../src/core/index.js";
import { jitterClock } from "./jitter-clock.js";

/** A Clock that moves only when the test says so: deadlines and TTLs without sleeping. */
export interface ManualClock extends Clock {
  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void;
  readonly pending: number;
}

/** A jitter clock with no jitter: every timer fires exactly at its target. */
export function manualClock(start = 1_000): ManualClock {
  return jitterClock(() => 0, 0, 0, start);
}

/** Seeded uniform [0,1) numbers (mulberry32), for reproducible tie-breaks and fuzzing. */
export { mulberry32 as seededRandom } from "../../bench/lib/random.js";

/** Lets pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise((r) => setImmediate(r));
}
