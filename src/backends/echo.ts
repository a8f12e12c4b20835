import { DispatchError, type ErrorCode, type Handler, type HandlerContext, type HandlerResult, type Payload } from "../core/index.js";
import { abortableDelay } from "./delay.js";

export interface EchoOptions {
  /** Delay before answering, in ms, unless the job's metadata sets `delay_ms`. Default 0. */
  delayMs?: number;
}

const failCodes: ReadonlySet<string> = new Set<ErrorCode>([
  "invalid_argument", "not_found", "permission_denied", "resource_exhausted", "failed_precondition",
  "aborted", "unimplemented", "internal", "unavailable", "unauthenticated", "unknown",
]);

/**
 * Returns its payload, after an optional delay. Useful out of the box (a
 * smoke test, a benchmark target) and for trying failure paths from any
 * client: metadata `delay_ms` overrides the delay, and `fail` = a gRPC code
 * name (e.g. "unavailable") makes the job fail with that code, like the gRPC
 * interop test service's `response_status`.
 */
export function echoHandler(options: EchoOptions = {}): Handler {
  const defaultDelay = options.delayMs ?? 0;
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
    if (delay > 0) return abortableDelay(delay, ctx.signal).then(() => failOrReturn(request, ctx));
    return failOrReturn(request, ctx);
  };
}
