import { DispatchError, type Chunk, type ErrorCode, type Handler, type HandlerContext, type HandlerResult, type Payload } from "../core/index.js";
import { abortableDelay } from "./delay.js";

export interface EchoOptions {
  /** Delay before answering, in ms, unless the job's metadata sets `delay_ms`. Default 0. */
  delayMs?: number;
  /** Stream the answer in this many chunks, unless the job's metadata sets `stream_chunks`. Default 0: one answer. */
  streamChunks?: number;
  /** Delay before each chunk, in ms, unless the job's metadata sets `chunk_delay_ms`. Default 0. */
  chunkDelayMs?: number;
}

/** Most chunks one echo stream may be split into: a client sets it. */
const MAX_STREAM_CHUNKS = 10_000;

const failCodes: ReadonlySet<string> = new Set<ErrorCode>([
  "invalid_argument", "not_found", "permission_denied", "resource_exhausted", "failed_precondition",
  "aborted", "unimplemented", "internal", "unavailable", "unauthenticated", "unknown",
]);

/**
 * Returns its payload, after an optional delay. Useful out of the box (a
 * smoke test, a benchmark target) and for trying failure paths from any
 * client: metadata `delay_ms` overrides the delay, and `fail` = a gRPC code
 * name (e.g. "unavailable") makes the job fail with that code, like the gRPC
 * interop test service's `response_status`. Metadata `stream_chunks` = N
 * streams the payload in N chunks (a JSON string or other JSON as text
 * pieces of its text, binary as byte pieces), `chunk_delay_ms` apart: a
 * stand-in for an LLM's token stream in demos and benchmarks.
 */
export function echoHandler(options: EchoOptions = {}): Handler {
  const defaultDelay = options.delayMs ?? 0;
  const numberOf = (ctx: HandlerContext, key: string, fallback: number, max = Infinity): number => {
    const raw = ctx.metadata[key];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0 || n > max) {
      throw new DispatchError("invalid_argument", `metadata.${key}: expected a number 0-${max === Infinity ? "…" : max}, got "${raw}"`);
    }
    return n;
  };
  const failOrReturn = (request: Payload, ctx: HandlerContext): HandlerResult => {
    const fail = ctx.metadata["fail"];
    if (fail !== undefined) {
      const code = fail.toLowerCase();
      if (!failCodes.has(code)) {
        throw new DispatchError("invalid_argument", `metadata.fail: expected a gRPC code name such as "unavailable", got "${fail}"`);
      }
      throw new DispatchError(code as ErrorCode, ctx.metadata["fail_message"] ?? `echo failed on request with ${code}`, {
        retryable: code === "unavailable",
      });
    }
    return request;
  };
  // Synchronous unless it waits: the core settles a plain value without a promise per call.
  return (request, ctx) => {
    const raw = ctx.metadata["delay_ms"];
    let delay = defaultDelay;
    if (raw !== undefined) {
      delay = Number(raw);
      if (!Number.isFinite(delay) || delay < 0) {
        throw new DispatchError("invalid_argument", `metadata.delay_ms: expected a number of milliseconds ≥ 0, got "${raw}"`);
      }
    }
    const chunks = Math.floor(numberOf(ctx, "stream_chunks", options.streamChunks ?? 0, MAX_STREAM_CHUNKS));
    if (chunks > 0) return echoStream(request, ctx, chunks, numberOf(ctx, "chunk_delay_ms", options.chunkDelayMs ?? 0), delay, failOrReturn);
    if (delay > 0) return abortableDelay(delay, ctx.signal).then(() => failOrReturn(request, ctx));
    return failOrReturn(request, ctx);
  };
}

async function* echoStream(
  request: Payload,
  ctx: HandlerContext,
  n: number,
  gapMs: number,
  delayMs: number,
  check: (r: Payload, ctx: HandlerContext) => HandlerResult,
): AsyncGenerator<Chunk, Record<string, string>> {
  if (delayMs > 0) await abortableDelay(delayMs, ctx.signal);
  check(request, ctx);
  const pieces: Chunk[] = [];
  if (request.binary !== undefined) {
    const size = Math.ceil(request.binary.length / n);
    for (let i = 0; i < n; i++) pieces.push({ binary: request.binary.subarray(i * size, (i + 1) * size) });
  } else {
    const text = typeof request.json === "string" ? request.json : JSON.stringify(request.json ?? null);
    const size = Math.ceil(text.length / n);
    for (let i = 0; i < n; i++) pieces.push({ text: text.slice(i * size, (i + 1) * size) });
  }
  for (const piece of pieces) {
    if (gapMs > 0) await abortableDelay(gapMs, ctx.signal);
    yield piece;
  }
  return { chunks: String(n) };
}
