import type { Clock } from "../../src/core/index.js";

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
}

/** A Clock that moves only when the test says so; timers fire in time order during advance(). */
export interface ManualClock extends Clock {
  advance(ms: number): void;
  /** Timers still pending. */
  readonly pending: number;
}

export function manualClock(start = 1_000): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Set<Timer>();
  return {
    now: () => now,
    setTimer(fn, ms, arg) {
      const t: Timer = { at: now + Math.max(0, ms), seq: seq++, fire: () => fn(arg) };
      timers.add(t);
      return t;
    },
    clearTimer(handle) {
      timers.delete(handle as Timer);
    },
    advance(ms) {
      const until = now + ms;
      for (;;) {
        let next: Timer | undefined;
        for (const t of timers) if (t.at <= until && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
        if (next === undefined) break;
        timers.delete(next);
        now = next.at;
        next.fire();
      }
      now = until;
    },
    get pending() {
      return timers.size;
    },
  };
}
