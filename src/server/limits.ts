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
  /**
   * Longest a connection may take to send a request's headers (HTTP/1.1),
   * or to open its first stream (HTTP/2), or to finish its TLS handshake;
   * then it is closed. Default 10 s. 0 = no limit.
   */
  headersTimeoutMs: number;
  /**
   * Longest a request body may go without a byte arriving; then the call is
   * reset (HTTP/2) or the connection closed (HTTP/1.1). Not a limit on the
   * whole call: LLM calls are long. Default 30 s. 0 = no limit.
   */
  bodyIdleTimeoutMs: number;
  /** An HTTP/2 connection with no call open this long is sent GOAWAY. Default 5 min. 0 = never. */
  idleTimeoutMs: number;
  /** After GOAWAY, how long a connection's open calls have before it is destroyed. Default 10 s. */
  goawayGraceMs: number;
  /** Calls in progress server-wide (HTTP/2); more get RESOURCE_EXHAUSTED before their body is read. Default 10000. 0 = no limit. */
  maxInflightCalls: number;
  /**
   * Request bytes received but not yet decoded, server-wide; a call whose
   * bytes would go over gets RESOURCE_EXHAUSTED. Default 64 MiB: 16
   * maximum-size requests in decode at once. A compressed Submit, SubmitStream
   * or Enqueue message counts its decompressed copy too. 0 = no limit.
   */
  maxDecodingBytes: number;
  /**
   * Memory the decoded requests of Submit and SubmitStream calls in progress
   * (queued or running) may hold, server-wide, estimated from their payloads
   * (src/server/payload-budget.ts); a call that would go over gets
   * RESOURCE_EXHAUSTED before it is queued. Default 256 MiB: 6 of the
   * costliest JSON requests the other limits let through (~34 MB decoded
   * each, estimated 40 MB), tens of thousands of ordinary ones. 0 = no limit.
   */
  maxHeldRequestBytes: number;
  /** Most values in a JSON payload (google.protobuf.Value nodes); more get INVALID_ARGUMENT before decode. Default 100000. */
  maxJsonNodes: number;
  /** Deepest nesting of a JSON payload; deeper gets INVALID_ARGUMENT before decode. Default 100. */
  maxJsonDepth: number;
  /** WorkerMetrics streams one connection may have open; more get RESOURCE_EXHAUSTED. Default 16. */
  maxMetricsStreamsPerConnection: number;
}

export const defaultLimits: Limits = {
  maxRequestBytes: 4 * 1024 * 1024,
  maxSessionIdLength: 256,
  maxMetadataEntries: 64,
  maxMetadataSize: 16 * 1024,
  maxConcurrentStreams: 1000,
  maxMetricsSubscribers: 1000,
  maxDeadlineMs: 15 * 60_000,
  headersTimeoutMs: 10_000,
  bodyIdleTimeoutMs: 30_000,
  idleTimeoutMs: 5 * 60_000,
  goawayGraceMs: 10_000,
  maxInflightCalls: 10_000,
  maxDecodingBytes: 64 * 1024 * 1024,
  maxHeldRequestBytes: 256 * 1024 * 1024,
  maxJsonNodes: 100_000,
  maxJsonDepth: 100,
  maxMetricsStreamsPerConnection: 16,
};

/**
 * The deadline a Submit runs under: the caller's, held to maxDeadlineMs;
 * none when the caller sent none (the backend's timeout bounds the run, the
 * core the wait), so that such calls arm no deadline timer.
 */
export function effectiveTimeoutMs(callerMs: number | undefined, limits: Limits): number | undefined {
  if (limits.maxDeadlineMs === 0 || callerMs === undefined) return callerMs;
  return Math.min(callerMs, limits.maxDeadlineMs);
}
