import { Code, ConnectError } from "@connectrpc/connect";
import { DispatchError, type ErrorCode } from "../core/index.js";

/** The one place where core error codes become gRPC statuses (DESIGN.md §5). */
const statusOf: Record<ErrorCode, Code> = {
  cancelled: Code.Canceled,
  unknown: Code.Unknown,
  invalid_argument: Code.InvalidArgument,
  deadline_exceeded: Code.DeadlineExceeded,
  not_found: Code.NotFound,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
  failed_precondition: Code.FailedPrecondition,
  aborted: Code.Aborted,
  unimplemented: Code.Unimplemented,
  internal: Code.Internal,
  unavailable: Code.Unavailable,
  unauthenticated: Code.Unauthenticated,
};

/** The gRPC status of a core error code. */
export function statusOfCode(code: ErrorCode): Code {
  return statusOf[code] ?? Code.Unknown;
}

/**
 * Turns anything a handler or the core threw into a fresh ConnectError.
 * Always fresh: re-throwing an upstream client's ConnectError would leak its
 * protocol headers into our response (connect 2.1.2).
 */
export function toConnectError(reason: unknown): ConnectError {
  // Without a stack, as DispatchError: what the client is answered, not a bug (and overload makes many).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    if (reason instanceof ConnectError) return new ConnectError(reason.rawMessage, reason.code);
    const e = DispatchError.from(reason);
    const metadata = e.metadata === undefined ? undefined : new Headers(e.metadata);
    return new ConnectError(e.message, statusOf[e.code], metadata);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
