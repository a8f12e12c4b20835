import type { Handler } from "../core/index.js";
import { echoHandler } from "./echo.js";
import { genaiBackend } from "./genai.js";
import { httpBackend } from "./http.js";
import { moduleBackend } from "./module.js";

/** A backend's handler, and what to release when the dispatcher has closed (connection pools). */
export interface BackendInstance {
  handler: Handler;
  close?: (() => void | Promise<void>) | undefined;
}

/** What a kind may know of the backend it serves, beside its options. */
export interface KindContext {
  /** The workers' endpoint URLs, in order; empty when the backend gives a worker count. */
  endpoints: string[];
  /** Where `{ env: VAR }` secrets are read; process.env in the service. */
  env: NodeJS.ProcessEnv;
}

/**
 * Backend kinds the config file can name. Each turns its `options` block
 * into a handler (or a handler and a close hook), throwing a TypeError that
 * names the bad option (`backends[0].options.headers.X: ...`).
 */
export type BackendKind = (
  options: Record<string, unknown>,
  at: string,
  context: KindContext,
) => Handler | BackendInstance | Promise<Handler | BackendInstance>;

const kinds = new Map<string, BackendKind>();

export function registerBackendKind(name: string, kind: BackendKind): void {
  kinds.set(name, kind);
}

export function backendKinds(): string[] {
  return [...kinds.keys()];
}

export async function createBackend(
  kind: string,
  options: Record<string, unknown>,
  at: string,
  context: KindContext = { endpoints: [], env: process.env },
): Promise<BackendInstance> {
  const make = kinds.get(kind);
  if (make === undefined) throw new TypeError(`${at}.kind: unknown "${kind}"; known: ${backendKinds().join(", ")}`);
  const made = await make(options, at, context);
  return typeof made === "function" ? { handler: made } : made;
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
registerBackendKind("http", httpBackend);
registerBackendKind("genai", genaiBackend);
registerBackendKind("module", moduleBackend);
