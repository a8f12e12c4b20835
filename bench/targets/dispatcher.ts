// Targets (c), (d) and the pinned variant: the real service, started as
// main.ts starts it, with an echo backend that answers at once.
//   --traced     (d): OpenTelemetry on, every span sampled, batch processor, exporter that drops
//   --pins N     holds N live session pins, created through the programmatic API before "ready"
//   --genai URL  adds a backend "chat" of kind genai (streaming) whose one worker is the upstream at URL
//   --echo W,C,Q,D  the echo backend's workers, max_concurrency, queue_capacity and delay in ms (default 4,16,128,0)
//   --front F    HTTP/2 front end: edge (default: raw streams, gRPC unary fast path), universal (raw streams, every
//                call through connect's handler) or compat (node's compat layer + connectNodeAdapter, as before the edge)
import { parseArgs } from "node:util";
import type { Interceptor } from "@connectrpc/connect";
import { ExportResultCode, type ExportResult } from "@opentelemetry/core";
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { backendOptions } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { createDispatcher, type Dispatcher, type DispatchObserver } from "../../src/core/index.js";
import { startServer } from "../../src/server/index.js";
import { PIN_PREFIX } from "../lib/pins.js";
import { reportFailed, reportReady } from "./ipc.js";

/** The contract of src/telemetry/index.ts, declared here so this file type-checks on branches without it. */
interface TelemetryModule {
  startTelemetry(options?: {
    env?: NodeJS.ProcessEnv;
    spanProcessors?: SpanProcessor[];
    prometheusPort?: number;
    prometheusHost?: string;
    ambientContext?: boolean;
  }): Promise<{ observer: DispatchObserver; interceptors: Interceptor[]; prometheusPort: number | undefined; shutdown(): Promise<void> }>;
}

/** Accepts every span and keeps none: tracing's cost without an exporter's I/O. */
const dropExporter: SpanExporter = {
  export(_spans: ReadableSpan[], done: (r: ExportResult) => void) {
    done({ code: ExportResultCode.SUCCESS });
  },
  shutdown: () => Promise.resolve(),
};

const { values } = parseArgs({
  options: { traced: { type: "boolean" }, pins: { type: "string" }, front: { type: "string" }, genai: { type: "string" }, echo: { type: "string" } },
});
const front = values.front ?? "edge";
const pins = Number(values.pins ?? 0);
const [echoWorkers, echoConcurrency, echoQueue, echoDelayMs] = (values.echo ?? "4,16,128,0").split(",").map(Number) as [number, number, number, number];

async function main(): Promise<void> {
  let telemetry: Awaited<ReturnType<TelemetryModule["startTelemetry"]>> | undefined;
  if (values.traced) {
    // Relative to the compiled file (dist/bench/targets/): dist/src/telemetry/index.js.
    const specifier = "../../src/telemetry/index.js";
    let mod: TelemetryModule;
    try {
      mod = (await import(specifier)) as TelemetryModule;
    } catch (e) {
      reportFailed(`telemetry not built (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      return;
    }
    telemetry = await mod.startTelemetry({
      env: { ...process.env, OTEL_TRACES_SAMPLER: "always_on", OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" },
      spanProcessors: [new BatchSpanProcessor(dropExporter)],
      // As the service starts it when no backend runs user code (main.ts): no async context manager.
      ambientContext: false,
    });
  }
  const config = validateConfig({
    server: { port: 0, shutdown_grace: "2s", log_level: "silent" },
    backends: [
      {
        name: "echo",
        kind: "echo",
        workers: echoWorkers,
        max_concurrency: echoConcurrency,
        queue_capacity: echoQueue,
        options: { delay_ms: echoDelayMs },
        affinity: { ttl: "1h", max_pins: Math.max(100_000, pins) },
      },
      ...(values.genai === undefined
        ? []
        : [{ name: "chat", kind: "genai", endpoints: [values.genai], max_concurrency: 1_000, queue_capacity: 0, options: { model: "m" } }]),
    ],
  });
  const dispatcher = createDispatcher({ backends: await backendOptions(config), observer: telemetry?.observer, shutdownGraceMs: 2_000 });
  const server = await startServer({
    dispatcher,
    interceptors: telemetry?.interceptors,
    frontEnd: front === "compat" ? "compat" : "edge",
    fastPath: front !== "universal",
  });
  const started = performance.now();
  await prepopulate(dispatcher, pins);
  const sessions = dispatcher.snapshot(["echo"]).reduce((n, w) => n + w.sessions, 0);
  reportReady(
    server.port,
    async () => {
      await server.close();
      await telemetry?.shutdown();
    },
    { pins: sessions, prepopulateMs: Math.round(performance.now() - started) },
  );
}

/** N distinct sessions submitted once each, a bounded batch at a time (queues are bounded). */
async function prepopulate(dispatcher: Dispatcher, n: number): Promise<void> {
  const batch = 256;
  for (let i = 0; i < n; i += batch) {
    const jobs: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(n, i + batch); j++) {
      jobs.push(dispatcher.submit({ backend: "echo", sessionId: `${PIN_PREFIX}${j}` }));
    }
    await Promise.all(jobs);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`dispatcher target: ${(e as Error).stack}\n`);
  process.exit(1);
});
