import type { AsyncJobState, JobStore } from "../core/index.js";

export type JobCounts = Record<string, Partial<Record<AsyncJobState, number>>>;

/**
 * The job store's counts by backend and state, read once a second: metrics
 * read the last count synchronously (one store read per second, however many
 * subscribers and scrapes), at most a second old.
 */
export class JobCountCache {
  private last: JobCounts = {};
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly store: JobStore, everyMs = 1_000) {
    this.timer = setInterval(() => void this.refresh(), everyMs);
    this.timer.unref();
    void this.refresh();
  }

  readonly get = (): JobCounts => this.last;

  async refresh(): Promise<void> {
    try {
      this.last = await this.store.counts();
    } catch {
      // Redis down: keep the last count; the Redis metrics say why.
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
