import type { Interceptor } from "@connectrpc/connect";
import { createHandler } from "./backends/registry.js";
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
  const dispatcher = createDispatcher({
    backends,
    observer: hooks.observer,
    shutdownGraceMs: config.server.shutdownGraceMs,
  });
  const server = await startServer({
    dispatcher,
    host: config.server.host,
    port: config.server.port,
    interceptors: hooks.interceptors,
  });
  return { dispatcher, server, close: () => server.close() };
}

export async function backendOptions(config: Config): Promise<BackendOptions[]> {
  const out: BackendOptions[] = [];
  for (const [i, b] of config.backends.entries()) {
    const handler = await createHandler(b.kind, b.options, `backends[${i}]`);
    out.push({
      name: b.name,
      handler,
      workers: b.workers,
      maxConcurrency: b.maxConcurrency,
      queueCapacity: b.queueCapacity,
      timeoutMs: b.timeoutMs,
      policy: b.policy,
      affinity: { ttlMs: b.affinity.ttlMs, maxPins: b.affinity.maxPins },
    });
  }
  return out;
}
