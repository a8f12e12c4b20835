import { parseArgs } from "node:util";
import { pino } from "pino";
import { startApp } from "./app.js";
import { loadConfig } from "./config.js";
import { startTelemetry, type Telemetry } from "./telemetry/index.js";

const usage = `usage: dispatcher [--config FILE.yaml|FILE.json] [--host HOST] [--port PORT]

Serves DispatcherService over gRPC, gRPC-Web and Connect (h2c and HTTP/1.1 on one port, or TLS),
with gRPC health and reflection. SIGTERM/SIGINT drain and exit 0; a second signal exits 1.
Environment: HOST, PORT, LOG_LEVEL, SHUTDOWN_GRACE, REFLECTION, AUTH_TOKENS_FILE, TLS_CERT_FILE,
TLS_KEY_FILE, PROMETHEUS_PORT override the config file; flags override both.
Tracing: the standard OTEL_* variables (e.g. OTEL_EXPORTER_OTLP_ENDPOINT); nothing is exported unless set.`;

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        config: { type: "string", short: "c" },
        host: { type: "string" },
        port: { type: "string", short: "p" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${usage}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const log = pino({ level: process.env["LOG_LEVEL"] ?? "info" });
  let app;
  let telemetry: Telemetry | undefined;
  try {
    const config = await loadConfig(args.config, process.env, {
      host: args.host,
      port: args.port === undefined ? undefined : Number(args.port),
    });
    log.level = config.log.level;
    // Telemetry first, so that the server's first call is traced.
    telemetry = await startTelemetry({
      prometheusPort: config.telemetry.prometheusPort,
      prometheusHost: config.telemetry.prometheusHost,
    });
    if (telemetry.prometheusPort !== undefined) {
      log.info({ port: telemetry.prometheusPort }, `metrics at http://${config.telemetry.prometheusHost}:${telemetry.prometheusPort}/metrics`);
    }
    app = await startApp(config, { observer: telemetry.observer, interceptors: telemetry.interceptors });
    log.info(
      { host: app.server.host, port: app.server.port, backends: app.dispatcher.backendNames() },
      `dispatcher listening on ${app.server.host}:${app.server.port}`,
    );
  } catch (e) {
    log.fatal({ err: e }, `cannot start: ${(e as Error).message}`);
    await telemetry?.shutdown().catch(() => undefined);
    return 1;
  }
  const running = app;
  const tel = telemetry;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log.warn({ signal }, "second signal: exiting now");
        resolve(1);
        return;
      }
      stopping = true;
      log.info({ signal }, "draining: new calls get UNAVAILABLE");
      // The server drains first; then telemetry flushes, so the spans of the last calls are exported.
      running
        .close()
        .finally(() => tel.shutdown())
        .then(
          () => {
            log.info("stopped");
            resolve(0);
          },
          (e: unknown) => {
            log.error({ err: e }, "error while stopping");
            resolve(1);
          },
        );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

main().then((code) => process.exit(code));
