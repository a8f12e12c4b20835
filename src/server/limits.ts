/** Request limits: each bounds what one caller can make the server hold or parse. */
export interface Limits {
  /** Largest request message, in bytes; larger gets RESOURCE_EXHAUSTED. Default 4 MiB, as grpc-js clients' default receive limit. */
  maxRequestBytes: number;
  /** Longest session_id, in UTF-16 code units; longer gets INVALID_ARGUMENT. Default 256: session keys are ids, and every pin holds its key. */
  maxSessionIdLength: number;
  /** Most metadata entries per request; more gets INVALID_ARGUMENT. Default 64. */
  maxMetadataEntries: number;
  /** Total length of metadata keys and values per request; more gets INVALID_ARGUMENT. Default 16 KiB. */
  maxMetadataSize: number;
  /**
   * HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS);
   * clients queue the rest. Default 1000: enough for a busy channel, while one
   * connection cannot open an unbounded number of calls.
   */
  maxConcurrentStreams: number;
  /** WorkerMetrics streams open at once, server-wide; more get RESOURCE_EXHAUSTED. Default 1000. */
  maxMetricsSubscribers: number;
  /**
   * Longest a Submit may wait and run, in ms; a call with a longer deadline, or
   * none, is held to this one (clamped, as Envoy's max_grpc_timeout does): it
   * then ends with DEADLINE_EXCEEDED. Default 15 min. 0 = no limit.
   */
  maxDeadlineMs: number;
}

export const defaultLimits: Limits = {
  maxRequestBytes: 4 * 1024 * 1024,
  maxSessionIdLength: 256,
  maxMetadataEntries: 64,
  maxMetadataSize: 16 * 1024,
  maxConcurrentStreams: 1000,
  maxMetricsSubscribers: 1000,
  maxDeadlineMs: 15 * 60_000,
};

/** The deadline a Submit runs under: the caller's, held to maxDeadlineMs. */
export function effectiveTimeoutMs(callerMs: number | undefined, limits: Limits): number | undefined {
  if (limits.maxDeadlineMs === 0) return callerMs;
  return callerMs === undefined ? limits.maxDeadlineMs : Math.min(callerMs, limits.maxDeadlineMs);
}
