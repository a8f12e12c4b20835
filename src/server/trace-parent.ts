import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { FastContext } from "./edge/context.js";

/**
 * The call's trace context as an interceptor found it (telemetry sets it;
 * opaque here), handed to the core as SubmitOptions.traceParent. Passed as a
 * value, not made the active context around the implementation: on Node 20
 * an active context switches on async hooks for every promise in the process.
 */
export const traceParentKey = createContextKey<unknown>(undefined, { description: "the call's trace context" });

/** The trace parent of a call on either path: the fast path's hook result, or connect's context values. */
export function traceParentOf(ctx: HandlerContext): unknown {
  return ctx instanceof FastContext ? ctx.traceParent : ctx.values.get(traceParentKey);
}
