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

  constructor(code: ErrorCode, message: string, options: DispatchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.metadata = options.metadata;
    this.abortReason = options.abortReason;
  }

  /**
   * Normalises anything caught into a DispatchError. Unknown errors become
   * `fallback` (default "internal") with their message kept, so a handler's
   * failure reaches the caller with its own words.
   */
  static from(reason: unknown, fallback: ErrorCode = "internal"): DispatchError {
    if (reason instanceof DispatchError) return reason;
    if (isDispatchErrorLike(reason)) {
      return new DispatchError(reason.code, reason.message, {
        retryable: reason.retryable === true,
        cause: reason,
      });
    }
    if (reason instanceof Error) {
      // gRPC clients (connect, grpc-js) raise errors with a numeric status code: keep it.
      const numeric = (reason as { code?: unknown }).code;
      if (typeof numeric === "number" && numeric > 0 && numeric < grpcCodes.length) {
        const msg = (reason as { rawMessage?: unknown }).rawMessage;
        return new DispatchError(grpcCodes[numeric]!, typeof msg === "string" ? msg : reason.message, {
          retryable: numeric === 14,
          cause: reason,
        });
      }
      if (reason.name === "AbortError" || reason.name === "TimeoutError") {
        return new DispatchError("cancelled", reason.message, { cause: reason });
      }
      return new DispatchError(fallback, reason.message, { cause: reason });
    }
    return new DispatchError(fallback, String(reason));
  }
}

/** gRPC status codes by number (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
const grpcCodes: readonly ErrorCode[] = [
  "unknown", // 0 is OK: never an error
  "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "unknown" /* already_exists */,
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "invalid_argument" /* out_of_range */,
  "unimplemented", "internal", "unavailable", "internal" /* data_loss */, "unauthenticated",
];

const codes: ReadonlySet<string> = new Set<ErrorCode>([
  "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted",
  "unimplemented", "internal", "unavailable", "unauthenticated",
]);

/** Accepts errors from user handlers that carry a code but were built by another copy of this module. */
function isDispatchErrorLike(v: unknown): v is { code: ErrorCode; message: string; retryable?: unknown } {
  return (
    v instanceof Error &&
    v.name === "DispatchError" &&
    typeof (v as { code?: unknown }).code === "string" &&
    codes.has((v as unknown as { code: string }).code)
  );
}
