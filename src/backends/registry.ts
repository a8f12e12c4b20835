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
  const known = ["delay_ms", "stream_chunks", "chunk_delay_ms"];
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw new TypeError(`${at}.options.${k}: unknown option for kind "echo"; known: ${known.join(", ")}`);
  }
  const num = (k: string, max = Infinity): number => {
    const v = o[k] ?? 0;
    if (typeof v !== "number" || !(v >= 0) || v > max) {
      throw new TypeError(`${at}.options.${k}: expected a number 0-${max === Infinity ? "…" : max}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const handler = echoHandler({ delayMs: num("delay_ms"), streamChunks: Math.floor(num("stream_chunks", 10_000)), chunkDelayMs: num("chunk_delay_ms") });
  return { handler, ambientTrace: false };
});
registerBackendKind("http", httpBackend);
registerBackendKind("genai", genaiBackend);
registerBackendKind("module", moduleBackend);
