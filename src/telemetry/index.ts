// OpenTelemetry for the dispatcher: the only module that imports it (DESIGN.md §6, STYLE.md rule 3).
import { context, metrics, propagation, trace } from "@opentelemetry/api";
import type { Interceptor } from "@connectrpc/connect";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import type { DispatchObserver } from "../core/index.js";
import { sdkDisabled, tracesRequested, withOtelEnv } from "./env.js";
import { JobMetrics } from "./job-metrics.js";
import { createJobObserver } from "./job-observer.js";
import { SCOPE } from "./names.js";
import { PooledIdGenerator } from "./span-ids.js";
import { listenPrometheus, type ScrapeEndpoint } from "./prometheus.js";
import { observeState, type StateSource } from "./state-metrics.js";
import { createRpcInterceptor } from "./rpc-interceptor.js";

export interface TelemetryOptions {
  /** Where the OTEL_* variables are read. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * Span processors to use instead of the exporters the environment names
   * (tests: SimpleSpanProcessor over an InMemorySpanExporter; benchmarks:
   * a BatchSpanProcessor over a dropping exporter). Setting it turns tracing
   * on whatever the environment says, except OTEL_SDK_DISABLED. Default: none,
   * and traces are exported only when the environment asks (see tracesRequested).
   */
  spanProcessors?: SpanProcessor[];
  /** Port of the Prometheus scrape endpoint; 0 picks a free one. Default undefined: no endpoint, no metrics. */
  prometheusPort?: number;
  /** Interface of the scrape endpoint. Default 127.0.0.1: exposing it is a decision, not a default. */
  prometheusHost?: string;
  /**
   * Register OpenTelemetry's async context manager (AsyncLocalStorage), so
   * that a handler runs with its job's run span active and the spans it makes
   * are children of it (BackendOptions.ambientTrace). Default true. Without
   * it the dispatcher's own spans are still parented, each handed its parent
   * as a value; the service passes false unless a backend runs user code
   * (kind "module"): on Node 20 an active context makes every promise and
   * callback in the process pass through async hooks, a third of a traced
   * Submit's cost.
   */
  ambientContext?: boolean;
}

export interface Telemetry {
  /** Pass to startApp's hooks. The empty observer when tracing and metrics are both off. */
  observer: DispatchObserver;
  /** Pass to startApp's hooks. Empty when tracing and metrics are both off. */
  interceptors: Interceptor[];
  /** The bound port of the scrape endpoint, when enabled. */
  prometheusPort: number | undefined;
  /** Adds the gauges read from the running service's state (limits, Redis); a no-op without metrics. */
  observeState(source: StateSource): void;
  /** Flushes spans, stops the SDK and the scrape endpoint. Idempotent. */
  shutdown(): Promise<void>;
}

/** Service name when OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) sets none. */
const DEFAULT_SERVICE_NAME = "dispatcher";

/** NodeSDK registers process-wide globals (tracer and meter providers, context manager, propagator): one at a time. */
let live = false;

interface ValidOptions {
  env: NodeJS.ProcessEnv;
  spanProcessors: SpanProcessor[] | undefined;
  prometheusPort: number | undefined;
  prometheusHost: string;
  ambientContext: boolean;
}

export function validateTelemetryOptions(o: TelemetryOptions): ValidOptions {
  const port = o.prometheusPort;
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    throw new TypeError(`prometheusPort: expected a port number 0-65535, got ${JSON.stringify(port)}`);
  }
  if (o.prometheusHost !== undefined && (typeof o.prometheusHost !== "string" || o.prometheusHost === "")) {
    throw new TypeError(`prometheusHost: expected a non-empty string, got ${JSON.stringify(o.prometheusHost)}`);
  }
  return {
    env: o.env ?? process.env,
    spanProcessors: o.spanProcessors,
    prometheusPort: port,
    prometheusHost: o.prometheusHost ?? "127.0.0.1",
    ambientContext: o.ambientContext ?? true,
  };
}

/**
 * Starts OpenTelemetry as the environment and `options` ask: start it
 * before the server, shut it down after the server closed (that flushes
 * the last spans). With OTEL_SDK_DISABLED=true, or neither traces nor
 * metrics asked for, nothing starts and the observer and interceptors are
 * empty, so the submit path costs nothing.
 */
export async function startTelemetry(options: TelemetryOptions = {}): Promise<Telemetry> {
  const o = validateTelemetryOptions(options);
  const tracing = !sdkDisabled(o.env) && (o.spanProcessors !== undefined ? o.spanProcessors.length > 0 : tracesRequested(o.env));
  const metering = !sdkDisabled(o.env) && o.prometheusPort !== undefined;
  if (!tracing && !metering) {
    return { observer: {}, interceptors: [], prometheusPort: undefined, observeState: () => undefined, shutdown: () => Promise.resolve() };
  }
  if (live) throw new Error("startTelemetry: telemetry is already running in this process; shut it down first");
  live = true;

  let scrape: ScrapeEndpoint | undefined;
  let sdk: NodeSDK;
  try {
    if (metering) scrape = await listenPrometheus(o.prometheusHost, o.prometheusPort!);
    // Logs stay on stdout (pino); metrics go only to the readers given here, never to NodeSDK's default OTLP exporter.
    sdk = withOtelEnv(o.env, { OTEL_LOGS_EXPORTER: "none" }, () => {
      const s = new NodeSDK({
        resource: defaultResource().merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: DEFAULT_SERVICE_NAME })),
        metricReaders: scrape === undefined ? [] : [scrape.reader],
        // Explicit processors, none when tracing is off, or undefined: NodeSDK builds them from OTEL_TRACES_EXPORTER / OTLP variables.
        spanProcessors: tracing ? o.spanProcessors : [],
        idGenerator: new PooledIdGenerator(),
        // null: register none (NodeSDK's documented meaning; its types omit it): context.with just calls.
        contextManager: o.ambientContext ? undefined : (null as never),
      });
      s.start();
      return s;
    });
  } catch (e) {
    await scrape?.close();
    live = false;
    throw e;
  }

  const tracer = tracing ? trace.getTracer(SCOPE) : undefined;
  const meter = metering ? metrics.getMeter(SCOPE) : undefined;
  const observer = createJobObserver(tracer, meter === undefined ? undefined : new JobMetrics(meter));
  const interceptor = createRpcInterceptor(tracer, meter);

  let stopping: Promise<void> | undefined;
  return {
    observer,
    interceptors: interceptor === undefined ? [] : [interceptor],
    prometheusPort: scrape?.port,
    observeState(source) {
      if (meter !== undefined) observeState(meter, source);
    },
    shutdown() {
      stopping ??= (async () => {
        try {
          await sdk.shutdown();
        } finally {
          await scrape?.close();
          // Unregister the globals, so that a later startTelemetry in this process (tests, benchmarks) can register its own.
          trace.disable();
          metrics.disable();
          propagation.disable();
          context.disable();
          live = false;
        }
      })();
      return stopping;
    },
  };
}
