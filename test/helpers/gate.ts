import type { Handler, HandlerContext, HandlerResult, Payload } from "../../src/core/index.js";
import { deferred } from "./app.js";

export interface GateCall {
  request: Payload;
  ctx: HandlerContext;
  resolve(r?: HandlerResult): void;
  reject(e: unknown): void;
}

/**
 * A handler whose calls wait until the test settles them: fills concurrency
 * slots deterministically (the p-queue/BullMQ way), with no sleeps.
 */
export function gate(): { handler: Handler; calls: GateCall[]; running(): GateCall[] } {
  const calls: GateCall[] = [];
  const settled = new Set<GateCall>();
  const handler: Handler = (request, ctx) => {
    const d = deferred<HandlerResult>();
    const call: GateCall = {
      request,
      ctx,
      resolve: (r) => {
        settled.add(call);
        d.resolve(r ?? request);
      },
      reject: (e) => {
        settled.add(call);
        d.reject(e);
      },
    };
    calls.push(call);
    return d.promise;
  };
  return { handler, calls, running: () => calls.filter((c) => !settled.has(c) && !c.ctx.signal.aborted) };
}
