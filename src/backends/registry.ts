import type { Handler } from "../core/index.js";
import { echoHandler } from "./echo.js";

/**
 * Backend kinds the config file can name. Each turns its `options` block
 * into a handler, throwing a TypeError that names the bad option.
 */
export type BackendKind = (options: Record<string, unknown>, at: string) => Handler | Promise<Handler>;

const kinds = new Map<string, BackendKind>();

export function registerBackendKind(name: string, kind: BackendKind): void {
  kinds.set(name, kind);
}

export function backendKinds(): string[] {
  return [...kinds.keys()];
}

export async function createHandler(kind: string, options: Record<string, unknown>, at: string): Promise<Handler> {
  const make = kinds.get(kind);
  if (make === undefined) throw new TypeError(`${at}.kind: unknown "${kind}"; known: ${backendKinds().join(", ")}`);
  return make(options, at);
}

registerBackendKind("echo", (o, at) => {
  const delayMs = o["delay_ms"] ?? 0;
  if (typeof delayMs !== "number" || !(delayMs >= 0)) {
    throw new TypeError(`${at}.options.delay_ms: expected a number ≥ 0, got ${JSON.stringify(delayMs)}`);
  }
  for (const k of Object.keys(o)) {
    if (k !== "delay_ms") throw new TypeError(`${at}.options.${k}: unknown option for kind "echo"; known: delay_ms`);
  }
  return echoHandler({ delayMs });
});
