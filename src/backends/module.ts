import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { DispatchError, type Handler, type HandlerContext, type HandlerResult } from "../core/index.js";
import { statusCodeOf } from "../core/errors.js";
import type { BackendInstance, KindContext } from "./kind.js";
import { noopLog, type BackendLog } from "./log.js";
import { normaliseResult } from "./module-result.js";
import { checkKeys } from "./upstream-options.js";

/**
 * kind "module": a JavaScript module of the user's that exports a handler
 * `(payload, ctx) => result` — how users add their own backends without
 * forking. Options: `path` (relative to the working directory) and `export`
 * (default "handler", falling back to the default export). A `close` export,
 * if any, runs on shutdown. The handler's results are normalised
 * (module-result.ts) and its errors made safe to show a client (below).
 */
export async function moduleBackend(o: Record<string, unknown>, at: string, kind?: KindContext): Promise<BackendInstance> {
  const oat = `${at}.options`;
  checkKeys(o, ["path", "export"], oat, "module");
  const path = o["path"];
  if (typeof path !== "string" || path === "") throw new TypeError(`${oat}.path: expected the path of a JavaScript module, got ${JSON.stringify(path)}`);
  const name = o["export"] ?? "handler";
  if (typeof name !== "string" || name === "") throw new TypeError(`${oat}.export: expected an export name, got ${JSON.stringify(name)}`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  } catch (e) {
    throw new TypeError(`${oat}.path: cannot load module "${path}": ${(e as Error).message}`, { cause: e });
  }
  const handler = mod[name] ?? (o["export"] === undefined ? mod["default"] : undefined);
  if (typeof handler !== "function") {
    const exports = Object.keys(mod).filter((k) => typeof mod[k] === "function");
    throw new TypeError(
      `${oat}.export: module "${path}" exports no function "${name}"` +
        `${o["export"] === undefined ? " (nor a default export)" : ""}; its function exports: ${exports.join(", ") || "none"}`,
    );
  }
  const close = mod["close"];
  return {
    handler: guardHandler(handler as (payload: unknown, ctx: HandlerContext) => unknown, kind?.log ?? noopLog),
    close: typeof close === "function" ? (close as () => Promise<void>) : undefined,
  };
}

/**
 * Wraps a user's handler: results normalised, errors judged. Stays
 * synchronous for a synchronous handler (the core settles a plain value
 * without a promise per call).
 */
export function guardHandler(handler: (payload: unknown, ctx: HandlerContext) => unknown, log: BackendLog): Handler {
  const settle = (r: unknown, ctx: HandlerContext): HandlerResult => {
    try {
      return normaliseResult(r);
    } catch (e) {
      throw failure(e, ctx, log); // a toJSON of the user's may throw too
    }
  };
  return (payload, ctx) => {
    let out: unknown;
    try {
      out = handler(payload, ctx);
    } catch (e) {
      throw failure(e, ctx, log);
    }
    if (typeof (out as { then?: unknown } | null)?.then === "function") {
      return Promise.resolve(out).then(
        (r) => settle(r, ctx),
        (e: unknown) => {
          throw failure(e, ctx, log);
        },
      );
    }
    return settle(out, ctx);
  };
}

/**
 * An error that names a status (a DispatchError from any copy of the
 * package, or any error with a status `code`) was thrown on purpose: its code,
 * message and `retryable` stand. So do a signal's AbortError and TimeoutError.
 * Anything else is a bug or a library's failure whose message may hold paths,
 * hosts or data: the client reads "handler failed", the log gets the error.
 */
function failure(e: unknown, ctx: HandlerContext, log: BackendLog): DispatchError {
  if (e instanceof DispatchError || statusCodeOf(e) !== undefined) return DispatchError.from(e);
  if (e instanceof Error && (e.name === "AbortError" || e.name === "TimeoutError")) return DispatchError.from(e);
  log.error({ err: e, worker: ctx.workerId, attempt: ctx.attempt }, `module handler failed on ${ctx.workerId}`);
  return new DispatchError("internal", `handler failed on ${ctx.workerId}`, { cause: e });
}
