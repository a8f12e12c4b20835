/**
 * Time as the core sees it. Injected so that tests and the scheduling
 * benchmark can run in simulated time instead of sleeping.
 */
export interface Clock {
  /** Monotonic milliseconds (fractional allowed). */
  now(): number;
  /** Calls `fn(arg)` after `ms`; the timer must not keep the process alive. */
  setTimer<A>(fn: (arg: A) => void, ms: number, arg: A): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

export type TimerHandle = unknown;

/**
 * Longest delay Node's timers take: a longer one fires after 1 ms with a
 * TimeoutOverflowWarning (a 30-day deadline would fail at once).
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A timer longer than Node's limit, run as a chain of shorter ones. The
 * remaining time is carried by the chain itself, not read from the clock,
 * so the callback fires once, for what it was set for.
 */
class LongTimer<A> {
  timeout: ReturnType<typeof setTimeout> | undefined = undefined;
  constructor(
    private remaining: number,
    private readonly fn: (arg: A) => void,
    private readonly arg: A,
  ) {
    this.step();
  }

  private step(): void {
    const ms = Math.min(this.remaining, MAX_TIMER_MS);
    this.remaining -= ms;
    this.timeout = setTimeout(() => (this.remaining > 0 ? this.step() : this.fn(this.arg)), ms);
    this.timeout.unref();
  }
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms, arg) {
    if (ms > MAX_TIMER_MS) return new LongTimer(ms, fn, arg);
    const t = setTimeout(fn, ms, arg);
    t.unref();
    return t;
  },
  clearTimer(handle) {
    clearTimeout(handle instanceof LongTimer ? handle.timeout : (handle as ReturnType<typeof setTimeout>));
  },
};
