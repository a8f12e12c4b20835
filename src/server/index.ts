import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { Dispatcher } from "../core/index.js";
import { dispatcherRoutes } from "./dispatcher-service.js";
import { listenHttp2, type Http2Listener } from "./http2-server.js";
import { defaultLimits, type Limits } from "./limits.js";
import { createMetricsHub, type MetricsHub } from "./metrics-hub.js";

export interface ServerOptions {
  dispatcher: Dispatcher;
  host?: string;
  port?: number;
  limits?: Partial<Limits>;
  interceptors?: Interceptor[];
  /** Extra services to serve beside DispatcherService. */
  routes?: ((router: ConnectRouter) => void)[];
  /** Most time close() waits for open HTTP/2 streams after the dispatcher drained. Default 5000 ms. */
  streamCloseMs?: number;
}

export interface DispatcherServer {
  readonly port: number;
  readonly host: string;
  readonly hub: MetricsHub;
  /**
   * Shuts down in order: stop admission (UNAVAILABLE), end metrics streams
   * (UNAVAILABLE), let jobs drain within the dispatcher's grace period, then
   * GOAWAY every HTTP/2 session. Idempotent.
   */
  close(): Promise<void>;
}

export async function startServer(o: ServerOptions): Promise<DispatcherServer> {
  const limits: Limits = { ...defaultLimits, ...o.limits };
  const hub = createMetricsHub(() => o.dispatcher.snapshot());
  const listener: Http2Listener = await listenHttp2({
    host: o.host ?? "127.0.0.1",
    port: o.port ?? 0,
    readMaxBytes: limits.maxRequestBytes,
    interceptors: o.interceptors,
    routes: (router) => {
      dispatcherRoutes(o.dispatcher, hub, limits)(router);
      for (const r of o.routes ?? []) r(router);
    },
  });
  let closing: Promise<void> | undefined;
  return {
    port: listener.port,
    host: listener.host,
    hub,
    close() {
      closing ??= (async () => {
        const drained = o.dispatcher.close();
        hub.close();
        await drained;
        await listener.close(o.streamCloseMs ?? 5_000);
      })();
      return closing;
    },
  };
}

export { defaultLimits, type Limits } from "./limits.js";
export { toConnectError } from "./errors.js";
