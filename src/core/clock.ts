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

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms, arg) {
    const t = setTimeout(fn, ms, arg);
    t.unref();
    return t;
  },
  clearTimer(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};
