import { echoHandler } from "./echo.js";
import { genaiBackend } from "./genai.js";
import { httpBackend } from "./http.js";
import type { BackendInstance, BackendKind, KindContext } from "./kind.js";
import { moduleBackend } from "./module.js";

export type { BackendInstance, BackendKind, KindContext } from "./kind.js";

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
