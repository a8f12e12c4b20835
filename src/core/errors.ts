/**
 * The one error type the core raises. `code` names a gRPC status in
 * snake_case; the transport maps it to a status in exactly one place
 * (src/server/errors.ts). Tests assert the code, never the message.
 */
export type ErrorCode =
  | "cancelled"
  | "unknown"
  | "invalid_argument"
  | "deadline_exceeded"
  | "not_found"
  | "permission_denied"
  | "resource_exhausted"
  | "failed_precondition"
  | "aborted"
  | "unimplemented"
  | "internal"
  | "unavailable"
  | "unauthenticated";

export interface DispatchErrorOptions {
  /** Whether running the job again might succeed (backends set this; retries read it). */
  retryable?: boolean;
  /** Upstream's requested wait before a retry, in ms (e.g. from Retry-After). */
  retryAfterMs?: number;
  /** What caused this error, for logs. */
  cause?: unknown;
  /** Key/value pairs to return to the client alongside the error. */
  metadata?: Record<string, string>;
  /** Set on the reason of a job's aborted signal: why the dispatcher aborted the handler. */
  abortReason?: AbortReason;
  /**
   * A RESOURCE_EXHAUSTED raised by one of the service's own bounds on an answer (its size), not by the
   * upstream: it does not pause the worker as a handler's RESOURCE_EXHAUSTED (an upstream 429) does, so a
   * client cannot stall a worker for everyone by asking for answers that are too large.
   */
  localLimit?: boolean;
}

/**
 * Why a handler's signal aborted (`(ctx.signal.reason as DispatchError).abortReason`):
 * the client's deadline passed, the client cancelled, the dispatcher shut down,
 * or the backend's own timeout ran out.
 */
export type AbortReason = "deadline" | "cancel" | "shutdown" | "timeout";

export class DispatchError extends Error {
  override readonly name = "DispatchError";
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly metadata: Record<string, string> | undefined;
  readonly abortReason: AbortReason | undefined;
  readonly localLimit: boolean;

  constructor(code: ErrorCode, message: string, options: DispatchErrorOptions = {}) {
    // No stack: a DispatchError is a status to answer, not a bug to trace (a cause keeps its own), and refusals
    // under overload are the hot error path: capturing a stack there cost more than the rest of a refusal.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    Error.stackTraceLimit = limit;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.metadata = options.metadata;
    this.abortReason = options.abortReason;
    this.localLimit = options.localLimit ?? false;
  }

  /**
   * Normalises anything caught into a DispatchError (connect's
   * ConnectError.from). An error whose `code` names a gRPC status, in any
   * spelling ("unavailable", "UNAVAILABLE", "Unavailable", 14, as gRPC
   * clients and users' handlers throw them), keeps its message and gets that
   * code; `retryable` and `retryAfterMs` are honoured when it sets them, and
   * retryable is otherwise false: a retry is a claim about the request that
   * only the thrower can make. A TimeoutError (`AbortSignal.timeout`) is a
   * DEADLINE_EXCEEDED, an AbortError a CANCELLED; anything else becomes
   * `fallback` (default "internal") with its message kept.
   */
  static from(reason: unknown, fallback: ErrorCode = "internal"): DispatchError {
    if (reason instanceof DispatchError) return reason;
    const code = statusCodeOf(reason);
    if (code !== undefined) {
      const r = reason as { message?: unknown; rawMessage?: unknown; retryable?: unknown; retryAfterMs?: unknown; metadata?: unknown };
      // ConnectError's message is prefixed with "[code]"; its rawMessage is what the peer said.
      const message = typeof r.rawMessage === "string" ? r.rawMessage : typeof r.message === "string" ? r.message : code;
      const after = r.retryAfterMs;
      return new DispatchError(code, message, {
        retryable: r.retryable === true,
        retryAfterMs: typeof after === "number" && after >= 0 && Number.isFinite(after) ? after : undefined,
        metadata: stringRecord(r.metadata),
        cause: reason,
      });
    }
    if (reason instanceof Error) {
      // A signal that timed out (the handler's own AbortSignal.timeout) is an upstream too slow, not a caller's cancel.
      if (reason.name === "TimeoutError") return new DispatchError("deadline_exceeded", reason.message, { cause: reason });
      if (reason.name === "AbortError") return new DispatchError("cancelled", reason.message, { cause: reason });
      return new DispatchError(fallback, reason.message, { cause: reason });
    }
    return new DispatchError(fallback, String(reason));
  }
}

/**
 * The status an error names by its `code` property, or undefined when it
 * names none (a Node system error's "ECONNRESET", say). Accepts any object,
 * so that errors built by another copy of this module, gRPC clients' errors
 * and a handler's `{ code: "unavailable", message }` all count.
 */
export function statusCodeOf(reason: unknown): ErrorCode | undefined {
  if (typeof reason !== "object" || reason === null) return undefined;
  const c = (reason as { code?: unknown }).code;
  if (typeof c === "number") return Number.isInteger(c) && c > 0 ? grpcCodes[c] : undefined;
  if (typeof c !== "string") return undefined;
  // "DeadlineExceeded" (connect's Code names), "deadline-exceeded", "DEADLINE_EXCEEDED", "14" → one spelling.
  const name = c.trim().replace(/([a-z])([A-Z])/g, "$1_$2").replace(/[\s-]+/g, "_").toLowerCase();
  const n = /^\d+$/.test(name) ? Number(name) : grpcNames.indexOf(name === "canceled" ? "cancelled" : name);
  return n > 0 ? grpcCodes[n] : undefined;
}

/** `v` when it is a plain mapping of strings to strings (what error metadata may be), else undefined. */
function stringRecord(v: unknown): Record<string, string> | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return undefined; // a Headers (ConnectError's) is no such mapping
  return Object.values(v).every((x) => typeof x === "string") ? (v as Record<string, string>) : undefined;
}

/** gRPC status codes by number (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
const grpcCodes: readonly ErrorCode[] = [
  "unknown", // 0 is OK: never an error
  "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "unknown" /* already_exists */,
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "invalid_argument" /* out_of_range */,
  "unimplemented", "internal", "unavailable", "internal" /* data_loss */, "unauthenticated",
];

/** gRPC status names by number, as the spec spells them (lower case). */
const grpcNames: readonly string[] = [
  "ok", "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
  "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
];
