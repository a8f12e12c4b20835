import type { Clock, TimerHandle } from "../../src/core/index.js";

interface SimEvent {
  at: number;
  seq: number;
  run: () => void;
  cancelled: boolean;
}

/**
 * A discrete-event simulator that drives the real core: the core reads time
 * from `clock` and sets its timers in the simulator's queue; handlers return
 * promises the simulator settles at simulated completion times. After each
 * event the microtask queue is drained (a setImmediate turn) so the core's
 * promise callbacks run before time moves on.
 */
export interface Simulator {
  readonly clock: Clock;
  now(): number;
  /** Runs `fn` at simulated time `at` (≥ now). */
  at(at: number, fn: () => void): void;
  /** Processes events in time order until none is left at or before `until`. */
  runUntil(until: number): Promise<void>;
  /** Processes every event left. */
  runAll(): Promise<void>;
}

export function createSimulator(): Simulator {
  let now = 0;
  let seq = 0;
  const heap: SimEvent[] = [];
  const push = (e: SimEvent) => {
    heap.push(e);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(heap[i]!, heap[p]!)) break;
      [heap[i], heap[p]] = [heap[p]!, heap[i]!];
      i = p;
    }
  };
  const pop = (): SimEvent => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  };
  const schedule = (at: number, run: () => void): SimEvent => {
    const e = { at: Math.max(at, now), seq: seq++, run, cancelled: false };
    push(e);
    return e;
  };
  const drain = () => new Promise<void>((r) => setImmediate(r));
  const clock: Clock = {
    now: () => now,
    setTimer: (fn, ms, arg) => schedule(now + ms, () => fn(arg)),
    clearTimer: (h: TimerHandle) => {
      (h as SimEvent).cancelled = true;
    },
  };
  const runUntil = async (until: number) => {
    while (heap.length > 0 && heap[0]!.at <= until) {
      const e = pop();
      if (e.cancelled) continue;
      now = e.at;
      e.run();
      await drain();
    }
    if (until !== Infinity) now = Math.max(now, until);
  };
  return {
    clock,
    now: () => now,
    at: (at, fn) => void schedule(at, fn),
    runUntil,
    runAll: async () => {
      // Cancelled far-future timers (backend timeouts) are skipped, not waited for.
      while (heap.some((e) => !e.cancelled)) await runUntil(Math.min(...heap.filter((e) => !e.cancelled).map((e) => e.at)));
    },
  };
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
