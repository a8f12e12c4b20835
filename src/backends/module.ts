import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Handler } from "../core/index.js";
import type { BackendInstance } from "./kind.js";
import { checkKeys } from "./upstream.js";

/**
 * kind "module": a JavaScript module of the user's that exports a handler
 * `(payload, ctx) => result` — how users add their own backends without
 * forking. Options: `path` (relative to the working directory) and `export`
 * (default "handler", falling back to the default export). A `close` export,
 * if any, runs on shutdown.
 */
export async function moduleBackend(o: Record<string, unknown>, at: string): Promise<BackendInstance> {
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
  return { handler: handler as Handler, close: typeof close === "function" ? (close as () => Promise<void>) : undefined };
}
