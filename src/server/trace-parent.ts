import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { FastContext } from "./edge/context.js";

/**
 * The call's trace context as an interceptor found it (telemetry sets it;
 * opaque here), handed to the core as SubmitOptions.traceParent. Passed as a
 * value, not made the active context around the implementation: on Node 20
 * an active context switches on async hooks for every promise in the process.
 */
export const traceParentKey = createContextKey<unknown>(undefined, { description: "the call's trace context" });

/**
 * The trace parent of a call on either path: the fast path's hook result, or
 * the context values (connect's handler, and the fast path when it runs the
 * interceptor chain because one interceptor has no hook).
 */
export function traceParentOf(ctx: HandlerContext): unknown {
  if (!(ctx instanceof FastContext)) return ctx.values.get(traceParentKey);
  return ctx.traceParent ?? (ctx.hasValues ? ctx.values.get(traceParentKey) : undefined);
}
