/** Something that must show progress by `expiresAt` (ms, Date.now()). */
export interface Watched {
  expiresAt: number;
  expire(): void;
}

/**
 * One coarse timer for every client-stall timeout (request headers, body
 * idle, connection idle), like node:http's own connection checker: a call
 * that arrives whole costs an entry in a set, not a timer. Expiry is late by
 * at most one period.
 */
export class Watchdog {
  /** Date.now() at the last tick: the clock for `expiresAt`, read without a system call. */
  now = Date.now();
  private readonly items = new Set<Watched>();
  private readonly timer: NodeJS.Timeout;

  constructor(periodMs: number) {
    this.timer = setInterval(() => this.tick(), periodMs);
    this.timer.unref();
  }

  watch(item: Watched, timeoutMs: number): void {
    if (!(timeoutMs > 0)) return;
    item.expiresAt = Date.now() + timeoutMs;
    this.items.add(item);
  }

  unwatch(item: Watched): void {
    this.items.delete(item);
  }

  close(): void {
    clearInterval(this.timer);
    this.items.clear();
  }

  private tick(): void {
    const now = (this.now = Date.now());
    for (const item of this.items) {
      if (item.expiresAt <= now) {
        this.items.delete(item);
        item.expire();
      }
    }
  }
}
