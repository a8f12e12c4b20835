import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { DispatcherService } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { Dispatcher } from "../core/index.js";
import { bearerAuth } from "./auth.js";
import { createDashboardHandler } from "./dashboard.js";
import type { AccessLog } from "./access-log.js";
import { dispatcherRoutes } from "./dispatcher-service.js";
import { createHealthState, healthRoutes, type HealthState } from "./health.js";
import { listenHttp2, type Http2Listener } from "./http2-server.js";
import { defaultLimits, type Limits } from "./limits.js";
import type { ClusterSnapshot } from "../cluster/redis-health.js";
import type { JobStore } from "../core/index.js";
import { jobMethods, type JobsSettings } from "../jobs/service.js";
import type { JobCounts } from "../jobs/counts.js";
import { createMetricsHub, type MetricsHub } from "./metrics-hub.js";
import { reflectionRoutes } from "./reflection.js";
import { deadlineCeiling } from "./edge/deadline.js";
import { scanEnqueueJson, scanSubmitJson } from "./edge/json-scan.js";
import { PayloadBudget } from "./payload-budget.js";
import { encodeTextChunk } from "./text-chunk.js";

const methodPath = (m: { parent: { typeName: string }; name: string }) => `/${m.parent.typeName}/${m.name}`;
const submitPath = methodPath(DispatcherService.method.submit);

export interface ServerOptions {
  dispatcher: Dispatcher;
  /** Called once per Submit / SubmitStream / WorkerMetrics call with what it did (`log.access`). Default: none. */
  accessLog?: AccessLog;
  /** Default 127.0.0.1: exposing the service is a decision, not a default. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  limits?: Partial<Limits>;
  interceptors?: Interceptor[];
  /** Extra services to serve beside DispatcherService. */
  routes?: ((router: ConnectRouter) => void)[];
  /** Most time close() waits for open HTTP/2 streams after the dispatcher drained. Default 5000 ms. */
  streamCloseMs?: number;
  /** Serve gRPC server reflection (v1 and v1alpha). Default true: tools such as `buf curl` and grpcurl need it. */
  reflection?: boolean;
  /** Bearer tokens; when set, every call but health must carry one. Default: no auth. */
  authTokens?: readonly string[];
  /** PEM certificate chain and key: serve TLS. Default: cleartext. */
  tls?: { cert: Buffer | string; key: Buffer | string };
  /**
   * Serve the dashboard page at `/` (GET/HEAD, HTTP/1.1 and h2). Default true. The page
   * loads without a token; its calls are ordinary RPCs and carry the bearer token the
   * user types in when auth is on.
   */
  dashboard?: boolean;
  /** The HTTP/2 front end (http2-server.ts): "edge" (default) or the previous "compat" one, for comparisons. */
  frontEnd?: "edge" | "compat";
  /** With the edge: false serves every call through connect's handler, for comparisons. Default true. */
  fastPath?: boolean;
  /** Origins whose pages may call the service (cors.ts); "*" for any. Default []: no CORS headers, same-origin pages only. */
  corsAllowedOrigins?: readonly string[];
  /** Sent as the `dispatcher-replica` response header of Submit and SubmitStream. Default: none, no header. */
  replicaId?: string;
  /** Background jobs (Enqueue, GetJob, WatchJob, CancelJob); unset: those answer UNIMPLEMENTED. */
  jobs?: { store: JobStore; settings: JobsSettings; counts: () => JobCounts };
  /** The shared store's health for WorkerMetrics (cluster.redis_url); none when state lives in this process. */
  cluster?: () => ClusterSnapshot;
}

export interface DispatcherServer {
  readonly port: number;
  readonly host: string;
  readonly tls: boolean;
  readonly hub: MetricsHub;
  readonly health: HealthState;
  /** Bytes in the server's two request budgets now: being decoded (max_decoding_bytes), held by calls in progress (max_held_request_bytes). */
  requestBytes(): { decoding: number; held: number };
  /**
   * Shuts down in order: health to NOT_SERVING, stop admission (UNAVAILABLE),
   * end metrics streams (UNAVAILABLE), let jobs drain within the dispatcher's
   * grace period, end health Watch streams, then GOAWAY every HTTP/2 session
   * and close HTTP/1.1 connections. Idempotent.
   */
  close(): Promise<void>;
}

export async function startServer(o: ServerOptions): Promise<DispatcherServer> {
  const limits: Limits = { ...defaultLimits, ...o.limits };
  const hub = createMetricsHub(() => o.dispatcher.snapshot(), o.cluster, o.jobs?.counts);
  const health = createHealthState([DispatcherService.typeName]);
  const interceptors = [...(o.interceptors ?? [])];
  // After the caller's interceptors, so telemetry also sees refused calls.
  if (o.authTokens !== undefined) interceptors.push(bearerAuth(o.authTokens));
  const held = new PayloadBudget(limits.maxHeldRequestBytes);
  // A Submit's payload is refused before decode if what it would hold decoded does not fit in what is left.
  const submitCheck = (bytes: Uint8Array) => held.check(scanSubmitJson(bytes, limits.maxJsonNodes, limits.maxJsonDepth));
  const listener: Http2Listener = await listenHttp2({
    host: o.host ?? "127.0.0.1",
    port: o.port ?? 0,
    readMaxBytes: limits.maxRequestBytes,
    maxConcurrentStreams: limits.maxConcurrentStreams,
    tls: o.tls,
    dashboard: (o.dashboard ?? true) ? await createDashboardHandler() : undefined,
    deadlineCeilingMs: deadlineCeiling(limits.maxDeadlineMs),
    headersTimeoutMs: limits.headersTimeoutMs,
    bodyIdleTimeoutMs: limits.bodyIdleTimeoutMs,
    idleTimeoutMs: limits.idleTimeoutMs,
    goawayGraceMs: limits.goawayGraceMs,
    maxInflightCalls: limits.maxInflightCalls,
    maxDecodingBytes: limits.maxDecodingBytes,
    json: { maxNodes: limits.maxJsonNodes, maxDepth: limits.maxJsonDepth },
    // The methods whose requests carry a JSON payload: checked before decode on every path (edge/prescan.ts).
    prechecks: new Map<string, (bytes: Uint8Array) => void>([
      [submitPath, submitCheck],
      [methodPath(DispatcherService.method.submitStream), submitCheck],
      [methodPath(DispatcherService.method.enqueue), (bytes) => scanEnqueueJson(bytes, limits.maxJsonNodes, limits.maxJsonDepth)],
    ]),
    encoders: new Map([[methodPath(DispatcherService.method.submitStream), encodeTextChunk]]),
    frontEnd: o.frontEnd,
    fastPath: o.fastPath,
    corsAllowedOrigins: o.corsAllowedOrigins,
    interceptors,
    routes: (router) => {
      const jobs = o.jobs === undefined ? {} : jobMethods(o.dispatcher, o.jobs.store, o.jobs.settings, limits);
      dispatcherRoutes(o.dispatcher, hub, limits, held, o.accessLog, o.replicaId, jobs)(router);
      healthRoutes(health)(router);
      for (const r of o.routes ?? []) r(router);
      if (o.reflection ?? true) reflectionRoutes()(router);
    },
  });
  let closing: Promise<void> | undefined;
  return {
    port: listener.port,
    host: listener.host,
    tls: listener.tls,
    hub,
    health,
    requestBytes: () => ({ decoding: listener.decodingBytes(), held: held.held }),
    close() {
      closing ??= (async () => {
        health.drain();
        const drained = o.dispatcher.close();
        hub.close();
        await drained;
        health.close();
        await listener.close(o.streamCloseMs ?? 5_000);
      })();
      return closing;
    },
  };
}

export { defaultLimits, type Limits } from "./limits.js";
export { toConnectError } from "./errors.js";
export { parseTokens } from "./auth.js";
export type { HealthState } from "./health.js";
