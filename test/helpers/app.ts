import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";

/** Starts the real service on 127.0.0.1, port 0, from a config as a user would write it (snake_case). */
export async function startTestApp(raw: { server?: Record<string, unknown>; backends: unknown[]; [key: string]: unknown }): Promise<App> {
  const config = validateConfig({ ...raw, server: { port: 0, shutdown_grace: "2s", ...raw.server } });
  return startApp(config);
}

/** A promise with its resolve/reject exposed, for deterministic tests without sleeps. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
