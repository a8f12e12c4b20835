/** A job's input or output: a JSON value, or opaque bytes. */
export type Payload = { json: unknown; binary?: undefined } | { binary: Uint8Array; json?: undefined };

/** What a handler returns: a payload, plus optional key/value pairs for the caller. */
export type HandlerResult = Payload & { metadata?: Record<string, string> };

/** Everything a handler may know about the job it runs. */
export interface HandlerContext {
  /** Aborts on client cancel, deadline, backend timeout and shutdown. Pass it to every I/O call. */
  readonly signal: AbortSignal;
  /** "<backend>/<index or name>". */
  readonly workerId: string;
  /** The worker's endpoint (URL) where the backend has endpoints. */
  readonly endpoint: string | undefined;
  /** The caller's session, or "" for none. */
  readonly sessionId: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** Absolute deadline as epoch milliseconds (Date.now() scale), or undefined for none. */
  readonly deadline: number | undefined;
  /** 1 for the first run of this job, 2 for its first retry, … */
  readonly attempt: number;
  /**
   * Headers to add to outgoing requests so the upstream's spans join this
   * job's trace (W3C `traceparent`/`tracestate`). Empty when tracing is off.
   */
  traceHeaders(): Record<string, string>;
}

/**
 * One piece of a streamed answer: a payload and/or a text delta (an LLM
 * token), with key/value pairs for the caller (e.g. a finish reason).
 */
export interface Chunk {
  json?: unknown;
  binary?: Uint8Array;
  text?: string;
  metadata?: Record<string, string>;
}

/**
 * A streamed answer: chunks, and what the stream's iterator returns at its
 * end (e.g. token usage) as the final metadata.
 */
export type ChunkStream = AsyncIterable<Chunk, Record<string, string> | void, undefined>;

/**
 * A handler answers with one result, or streams: it returns (or resolves to)
 * an async iterable of chunks, which the dispatcher pulls no faster than the
 * caller reads; the job keeps its worker slot until the stream ends.
 */
export type Handler = (
  request: Payload,
  ctx: HandlerContext,
) => Promise<HandlerResult | ChunkStream> | HandlerResult | ChunkStream;

/** Whether a handler's answer is a stream of chunks. */
export function isChunkStream(v: unknown): v is ChunkStream {
  return typeof v === "object" && v !== null && typeof (v as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function";
}
