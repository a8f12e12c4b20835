import type { Clock, TimerHandle } from "../../src/core/index.js";

interface Timer {
  at: number;
  seq: number;
  fn: (arg: unknown) => void;
  arg: unknown;
}

/** A Clock that moves only when the test says so: deadlines and TTLs without sleeping. */
export interface ManualClock extends Clock {
  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void;
  readonly pending: number;
}

export function manualClock(start = 1_000): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Set<Timer>();
  return {
    now: () => now,
    setTimer<A>(fn: (arg: A) => void, ms: number, arg: A): TimerHandle {
      const t: Timer = { at: now + ms, seq: seq++, fn: fn as (arg: unknown) => void, arg };
      timers.add(t);
      return t;
    },
    clearTimer(handle: TimerHandle) {
      timers.delete(handle as Timer);
    },
    advance(ms: number) {
      const target = now + ms;
      for (;;) {
        let next: Timer | undefined;
        for (const t of timers) if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
        if (!next) break;
        timers.delete(next);
        now = next.at;
        next.fn(next.arg);
      }
      now = target;
    },
    get pending() {
      return timers.size;
    },
  };
}

/** Seeded uniform [0,1) numbers (mulberry32), for reproducible tie-breaks and fuzzing. */
export { mulberry32 as seededRandom } from "../../bench/lib/random.js";

/** Lets pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise((r) => setImmediate(r));
}
