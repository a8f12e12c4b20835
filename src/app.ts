import { readFile } from "node:fs/promises";
import type { Interceptor } from "@connectrpc/connect";
import type { BackendLog } from "./backends/log.js";
import { createBackend } from "./backends/registry.js";
import type { AuthConfig, Config, TlsConfig } from "./config.js";
import { combineObservers, createDispatcher, type BackendOptions, type Dispatcher, type DispatchObserver, type JobStore } from "./core/index.js";
import { createLogObserver } from "./telemetry/log-observer.js";
import { parseTokens, startServer, type DispatcherServer } from "./server/index.js";
import { sharedLimits } from "./cluster/limits.js";
import { JobRunner } from "./jobs/runner.js";
import { jobStoreFor } from "./jobs/store.js";
import { JobCountCache, type JobCounts } from "./jobs/counts.js";
import type { ClusterSnapshot } from "./cluster/redis-health.js";
import { sharedPins } from "./cluster/pins.js";

export interface App {
  dispatcher: Dispatcher;
  server: DispatcherServer;
  /** Where background jobs are kept, and their counts by backend and state (at most a second old). */
  jobs: JobStore;
  jobCounts: () => JobCounts;
  /** The shared store's health (cluster.redis_url); undefined when state lives in this process. */
  cluster: (() => ClusterSnapshot) | undefined;
  close(): Promise<void>;
}

export interface AppHooks {
  observer?: DispatchObserver;
  interceptors?: Interceptor[];
  /** Where `server.auth.tokens_env` and the backends' `{ env: VAR }` secrets are looked up. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Where backends log what clients must not see (upstream error bodies, handlers' own errors); a pino Logger fits. Default: nowhere. */
  log?: BackendLog;
}

/** Config → backends → dispatcher → server. Used by main.ts and by end-to-end tests. */
export async function startApp(config: Config, hooks: AppHooks = {}): Promise<App> {
  // Read secrets before anything is built or listens: a bad path fails the start, not the first call.
  const authTokens = config.server.auth === undefined ? undefined : await readTokens(config.server.auth, hooks.env ?? process.env);
  const tls = config.server.tls === undefined ? undefined : await readTls(config.server.tls);
  const backends = await backendOptions(config, hooks.env ?? process.env, hooks.log);
  // Each on its own connection, waited for together: a start with Redis down waits once, not twice.
  const [pins, limits] = await Promise.all([sharedPins(config.cluster, hooks.log), sharedLimits(config.cluster, hooks.log)]);
  let jobStore: JobStore;
  try {
    jobStore = await jobStoreFor(config.cluster, config.jobs, hooks.log);
  } catch (e) {
    await pins?.close();
    await limits?.close();
    throw e;
  }
  const jobCounts = new JobCountCache(jobStore);
  const closeShared = async () => {
    jobCounts.close();
    await jobStore.close();
    await pins?.close();
    await limits?.close();
  };
  let dispatcher: Dispatcher;
  try {
    const log = hooks.log;
    dispatcher = createDispatcher({
      backends,
      // Operator logs (ejections, upstream failures, retry budget) come from the same lifecycle events as the metrics.
      observer: log === undefined ? hooks.observer : combineObservers(hooks.observer ?? {}, createLogObserver(log)),
      onError: log === undefined ? undefined : (e, where) => log.error({ err: e }, `dispatcher observer ${where} threw; the job went on`),
      shutdownGraceMs: config.server.shutdownGraceMs,
      pinStore: pins?.store,
      limitStore: limits?.store,
    });
  } catch (e) {
    await Promise.allSettled(backends.map((b) => b.close?.()));
    await closeShared();
    throw e;
  }
  let server: DispatcherServer;
  try {
    server = await startServer({
      dispatcher,
      host: config.server.host,
      port: config.server.port,
      interceptors: hooks.interceptors,
      limits: config.server.limits,
      reflection: config.server.reflection,
      authTokens,
      tls,
      dashboard: config.dashboard,
      accessLog: config.log.access && hooks.log !== undefined ? (e) => hooks.log!.info(e, `${e.method} ${e.code}`) : undefined,
      corsAllowedOrigins: config.server.corsAllowedOrigins,
      replicaId: config.cluster.replicaId,
      jobs: { store: jobStore, counts: jobCounts.get, settings: { maxQueued: config.jobs.maxQueued, defaultTimeoutMs: config.jobs.defaultTimeoutMs, maxTimeoutMs: config.jobs.maxTimeoutMs } },
      cluster: limits?.store.health.snapshot,
    });
  } catch (e) {
    await dispatcher.close();
    await closeShared();
    throw e;
  }
  const runner = new JobRunner({
    store: jobStore,
    dispatcher,
    maxRunning: config.jobs.maxRunning,
    maxResultBytes: config.jobs.maxResultBytes,
    // Renewals also carry cancels to running jobs: at least once a second, however long the claim timeout.
    keepAliveMs: Math.max(100, Math.min(1_000, Math.floor(config.jobs.claimTimeoutMs / 3))),
    log: hooks.log,
  });
  let closing: Promise<void> | undefined;
  return {
    dispatcher,
    server,
    cluster: limits?.store.health.snapshot,
    jobs: jobStore,
    jobCounts: jobCounts.get,
    close() {
      closing ??= (async () => {
        // No new background jobs are taken; those running finish within the drain, or are left to another replica.
        runner.stop();
        await server.close();
        await runner.closed();
        await closeShared();
      })();
      return closing;
    },
  };
}

/** Builds every backend of the config; if one fails, releases those already built (their pools). */
export async function backendOptions(config: Config, env: NodeJS.ProcessEnv = process.env, log?: BackendLog): Promise<BackendOptions[]> {
  const out: BackendOptions[] = [];
  try {
    for (const [i, b] of config.backends.entries()) {
      const endpoints = typeof b.workers === "number" ? [] : b.workers.map((w) => w.endpoint).filter((e) => e !== undefined);
      const { handler, close, tokensFor, ambientTrace } = await createBackend(b.kind, b.options, `backends[${i}]`, {
        endpoints,
        env,
        idempotent: b.idempotent ?? false,
        exposeUpstreamErrors: b.exposeUpstreamErrors ?? false,
        log,
      });
      out.push({
        name: b.name,
        handler,
        close,
        workers: b.workers,
        maxConcurrency: b.maxConcurrency,
        queueCapacity: b.queueCapacity,
        timeoutMs: b.timeoutMs,
        policy: b.policy,
        affinity: { ttlMs: b.affinity.ttlMs, maxPins: b.affinity.maxPins, spillLoadFactor: b.affinity.spillLoadFactor },
        retry: b.retry,
        outlier: b.outlier,
        scheduling: b.scheduling,
        firstChunkTimeoutMs: b.ttftTimeoutMs,
        stallTimeoutMs: b.stallTimeoutMs,
        limits: b.limits,
        tokensFor,
        ambientTrace,
      });
    }
  } catch (e) {
    await Promise.allSettled(out.map((b) => b.close?.()));
    throw e;
  }
  return out;
}

async function readTokens(auth: AuthConfig, env: NodeJS.ProcessEnv): Promise<string[]> {
  const tokens: string[] = [];
  if (auth.tokensFile !== undefined) {
    let text: string;
    try {
      text = await readFile(auth.tokensFile, "utf8");
    } catch (e) {
      throw new TypeError(`server.auth.tokens_file: ${(e as Error).message}`);
    }
    tokens.push(...parseTokens(text, `server.auth.tokens_file ${auth.tokensFile}`));
  }
  if (auth.tokensEnv !== undefined) {
    const text = env[auth.tokensEnv];
    if (text === undefined) throw new TypeError(`server.auth.tokens_env: environment variable ${auth.tokensEnv} is not set`);
    tokens.push(...parseTokens(text, `server.auth.tokens_env ${auth.tokensEnv}`));
  }
  return tokens;
}

async function readTls(tls: TlsConfig): Promise<{ cert: Buffer; key: Buffer }> {
  const read = async (file: string, key: string) => {
    try {
      return await readFile(file);
    } catch (e) {
      throw new TypeError(`server.tls.${key}: ${(e as Error).message}`);
    }
  };
  return { cert: await read(tls.certFile, "cert_file"), key: await read(tls.keyFile, "key_file") };
}
