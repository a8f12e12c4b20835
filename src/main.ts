import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { Config } from "./config.js";
import type { Telemetry } from "./telemetry/index.js";

const usage = `usage: dispatcher [--config FILE.yaml|FILE.json] [--host HOST] [--port PORT]
       dispatcher --check-config [FILE | --config FILE]
       dispatcher --version | --help

Serves DispatcherService over gRPC, gRPC-Web and Connect (h2c and HTTP/1.1 on one port, or TLS),
with gRPC health and reflection. SIGTERM/SIGINT drain and exit 0; a second signal exits 1.
--check-config validates the config (the file, the environment, each backend kind's options, and
the auth and TLS files it names) without listening, prints "config OK: ..." and exits 0, or prints
every error and exits 2.
Environment: HOST, PORT, LOG_LEVEL, SHUTDOWN_GRACE, REFLECTION, AUTH_TOKENS_FILE, TLS_CERT_FILE,
TLS_KEY_FILE, PROMETHEUS_PORT override the config file; flags override both.
Tracing: the standard OTEL_* variables (e.g. OTEL_EXPORTER_OTLP_ENDPOINT); nothing is exported unless set.
Exit status: 0 stopped cleanly or config OK; 1 could not start, or a second signal; 2 bad config or arguments.`;

/** The package's version, from the package.json above this file (src/ in the repository, dist/src/ when built). */
function version(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "dispatcher" && pkg.version !== undefined) return pkg.version;
    } catch {
      // not there: try one level up
    }
  }
  return "unknown";
}

/** Config errors are for a person at a terminal: plain lines on stderr, not log records. */
function printConfigErrors(file: string | undefined, errors: readonly string[]): number {
  const source = file === undefined ? "the built-in config" : file;
  process.stderr.write(`invalid config (${source}), ${errors.length} error${errors.length === 1 ? "" : "s"}:\n${errors.map((e) => `  ${e}\n`).join("")}`);
  return 2;
}

/** Loads and checks the config, kinds included; a number is the exit status when it is not valid. */
async function checkedConfig(file: string | undefined, host: string | undefined, port: string | undefined): Promise<Config | number> {
  const { checkBackendKinds, checkSecrets, ConfigError, loadConfig } = await import("./config.js");
  let config: Config;
  try {
    config = await loadConfig(file, process.env, { host, port });
  } catch (e) {
    if (e instanceof ConfigError) return printConfigErrors(file, e.errors);
    throw e;
  }
  // Kinds check their own options when built, and auth and TLS name files and variables: a problem there is a
  // config error too, found before anything listens.
  const errors = [...(await checkSecrets(config, process.env)), ...(await checkBackendKinds(config, process.env))];
  if (errors.length > 0) return printConfigErrors(file, errors);
  return config;
}

async function main(): Promise<number> {
  let args;
  let positionals;
  try {
    ({ values: args, positionals } = parseArgs({
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        host: { type: "string" },
        port: { type: "string", short: "p" },
        "check-config": { type: "boolean" },
        version: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
    // The only positional is --check-config's FILE.
    if (positionals.length > 0 && !args["check-config"]) throw new Error(`unexpected argument "${positionals[0]}"`);
    if (positionals.length > 1) throw new Error(`--check-config takes one file, got ${positionals.length}`);
    if (positionals.length === 1 && args.config !== undefined && args.config !== positionals[0]) {
      throw new Error("--check-config FILE and --config FILE name different files");
    }
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${usage}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (args.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const file = positionals[0] ?? args.config;
  const checked = await checkedConfig(file, args.host, args.port);
  if (typeof checked === "number") return checked;
  const config = checked;
  const names = config.backends.map((b) => b.name);
  if (args["check-config"]) {
    process.stdout.write(`config OK: ${names.length} backend${names.length === 1 ? "" : "s"} (${names.join(", ")})\n`);
    return 0;
  }

  // The server and telemetry are loaded only to serve: --version and --check-config answer without them.
  const [{ pino }, { startApp }, { startTelemetry }] = await Promise.all([import("pino"), import("./app.js"), import("./telemetry/index.js")]);
  // The logger is made from the validated level: an unknown LOG_LEVEL is a config error above, not a crash here.
  // Synchronous writes: pino's default asynchronous stdout writes its buffer synchronously at exit, which can
  // overtake a write still in flight, so the last lines of a drain came out of order (or not at all).
  const log = pino({ level: config.log.level }, pino.destination({ dest: 1, sync: true }));
  log.info({ file: file ?? null, backends: names }, `config loaded from ${file ?? "the built-in config"}`);
  let app;
  let telemetry: Telemetry | undefined;
  try {
    // Telemetry first, so that the server's first call is traced.
    telemetry = await startTelemetry({
      prometheusPort: config.telemetry.prometheusPort,
      prometheusHost: config.telemetry.prometheusHost,
      // Only user code may make its own spans under a job's; the built-in kinds hand trace context on explicitly.
      ambientContext: config.backends.some((b) => b.kind === "module"),
    });
    if (telemetry.prometheusPort !== undefined) {
      log.info({ port: telemetry.prometheusPort }, `metrics at http://${config.telemetry.prometheusHost}:${telemetry.prometheusPort}/metrics`);
    }
    app = await startApp(config, { observer: telemetry.observer, interceptors: telemetry.interceptors, log });
    const started = app;
    telemetry.observeState({ snapshot: () => started.dispatcher.snapshot(), cluster: started.cluster, jobs: started.jobCounts, requestBytes: () => started.server.requestBytes() });
  } catch (e) {
    // One line that says what failed (e.g. "listen EADDRINUSE: address already in use 127.0.0.1:8080"); no stack:
    // these are conditions of the machine, not bugs.
    const err = e as NodeJS.ErrnoException;
    log.fatal({ code: err.code }, `cannot start: ${err.message}`);
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
      log.info({ signal, graceMs: config.server.shutdownGraceMs }, "draining: new calls get UNAVAILABLE");
      // The server drains first (health, then the dispatcher, then connections); then telemetry flushes,
      // so the spans of the last calls are exported. dispatcher.close() is idempotent: this only observes it.
      const closed = running.close();
      void running.dispatcher.close().then(() => log.info("dispatcher drained: every job has settled"));
      closed
        .then(() => log.info("server closed"))
        .finally(() => tel.shutdown())
        .then(
          () => {
            log.info("telemetry flushed; stopped");
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
    // Logged once signals are handled: whoever waits for this line (a supervisor, a test) may stop the process at once.
    log.info(
      { host: running.server.host, port: running.server.port, backends: running.dispatcher.backendNames() },
      `dispatcher listening on ${running.server.host}:${running.server.port}`,
    );
  });
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`dispatcher: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
