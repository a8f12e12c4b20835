import type { Interceptor } from "@connectrpc/connect";
import { createBackend } from "./backends/registry.js";
import type { Config } from "./config.js";
import { createDispatcher, type BackendOptions, type Dispatcher, type DispatchObserver } from "./core/index.js";
import { startServer, type DispatcherServer } from "./server/index.js";

export interface App {
  dispatcher: Dispatcher;
  server: DispatcherServer;
  close(): Promise<void>;
}

export interface AppHooks {
  observer?: DispatchObserver;
  interceptors?: Interceptor[];
}

/** Config → backends → dispatcher → server. Used by main.ts and by end-to-end tests. */
export async function startApp(config: Config, hooks: AppHooks = {}): Promise<App> {
  const backends = await backendOptions(config);
  let dispatcher: Dispatcher;
  try {
    dispatcher = createDispatcher({
      backends,
      observer: hooks.observer,
      shutdownGraceMs: config.server.shutdownGraceMs,
    });
  } catch (e) {
    await Promise.allSettled(backends.map((b) => b.close?.()));
    throw e;
  }
  let server: DispatcherServer;
  try {
    server = await startServer({
      dispatcher,
      host: config.server.host,
      port: config.server.port,
      interceptors: hooks.interceptors,
    });
  } catch (e) {
    await dispatcher.close();
    throw e;
  }
  return { dispatcher, server, close: () => server.close() };
}

/** Builds every backend of the config; if one fails, releases those already built (their pools). */
export async function backendOptions(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<BackendOptions[]> {
  const out: BackendOptions[] = [];
  try {
    for (const [i, b] of config.backends.entries()) {
      const endpoints = typeof b.workers === "number" ? [] : b.workers.map((w) => w.endpoint).filter((e) => e !== undefined);
      const { handler, close } = await createBackend(b.kind, b.options, `backends[${i}]`, { endpoints, env });
      out.push({
        name: b.name,
        handler,
        close,
        workers: b.workers,
        maxConcurrency: b.maxConcurrency,
        queueCapacity: b.queueCapacity,
        timeoutMs: b.timeoutMs,
        policy: b.policy,
        affinity: { ttlMs: b.affinity.ttlMs, maxPins: b.affinity.maxPins },
        retry: b.retry,
        outlier: b.outlier,
      });
    }
  } catch (e) {
    await Promise.allSettled(out.map((b) => b.close?.()));
    throw e;
  }
  return out;
}
