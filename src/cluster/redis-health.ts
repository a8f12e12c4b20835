import { createSampleWindow } from "../core/index.js";

/** The shared store's health as WorkerMetrics and Prometheus show it. */
export interface ClusterSnapshot {
  redisUp: boolean;
  rttP50Ms: number;
  rttP99Ms: number;
  errors: number;
  replicas: number;
}

/** How far back the round-trip percentiles look, ms. */
const RTT_WINDOW_MS = 60_000;

/**
 * What WorkerMetrics and Prometheus show of the shared store: whether Redis
 * answers, how fast (round trips of the store's own commands), how often it
 * failed, and how many replicas share it.
 */
export class RedisHealth {
  up = true;
  errors = 0;
  /** Replicas whose heartbeat is fresh, this one included; 1 until Redis has said. */
  replicas = 1;
  /** The kind of the last failure (an error class name), for logs. */
  lastError = "";
  private readonly rtt = createSampleWindow(1024);

  ok(ms: number): void {
    this.rtt.record(ms, performance.now());
  }

  error(e: unknown): void {
    this.errors++;
    // Only the class of failure: ioredis messages can carry the address, which metrics consumers need not see.
    this.lastError = e instanceof Error ? e.name : "error";
  }

  readonly snapshot = (): ClusterSnapshot => {
    const [rttP50Ms, rttP99Ms] = this.rttPercentiles();
    return { redisUp: this.up, rttP50Ms, rttP99Ms, errors: this.errors, replicas: this.replicas };
  };

  /** Round-trip p50 and p99 over the last minute, ms (0 without samples). */
  rttPercentiles(): [number, number] {
    const [p50, p99] = this.rtt.percentiles([0.5, 0.99], performance.now() - RTT_WINDOW_MS);
    return [p50!, p99!];
  }
}
