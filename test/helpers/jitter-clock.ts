import type { Clock, TimerHandle } from "../../src/core/index.js";

interface Timer {
  /** When the timer fires: its target moved by a random error, as real timers are. */
  fireAt: number;
  seq: number;
  fn: (arg: unknown) => void;
  arg: unknown;
}

export interface JitterClock extends Clock {
  /** Moves time forward, firing due timers in order of when they fire. */
  advance(ms: number): void;
  readonly pending: number;
  /** Timers that fired before the clock reached their target. */
  readonly early: number;
}

/**
 * A manual clock whose timers fire up to `earlyMs` before and `lateMs`
 * after their target, and read the clock at that moment: what Node's timers
 * do (they run on libuv's cached, whole-millisecond loop time; PLATFORM.md
 * measured up to ~2 ms early). A plain manual clock fires exactly on time
 * and so hides every bug that re-reads the clock to decide what a timer meant.
 */
export function jitterClock(random: () => number, earlyMs = 2, lateMs = 3, start = 1_000): JitterClock {
  let now = start;
  let seq = 0;
  let early = 0;
  const timers = new Set<Timer>();
  return {
    now: () => now,
    setTimer<A>(fn: (arg: A) => void, ms: number, arg: A): TimerHandle {
      const target = now + ms;
      const fireAt = Math.max(now, target - earlyMs + random() * (earlyMs + lateMs));
      if (fireAt < target) early++;
      const t: Timer = { fireAt, seq: seq++, fn: fn as (arg: unknown) => void, arg };
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
        for (const t of timers) {
          if (t.fireAt <= target && (!next || t.fireAt < next.fireAt || (t.fireAt === next.fireAt && t.seq < next.seq))) next = t;
        }
        if (!next) break;
        timers.delete(next);
        now = Math.max(now, next.fireAt);
        next.fn(next.arg);
      }
      now = target;
    },
    get pending() {
      return timers.size;
    },
    get early() {
      return early;
    },
  };
}
