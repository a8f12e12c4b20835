/**
 * Which signals the standard OTEL_* environment asks for, and a way to hand
 * an explicit environment to NodeSDK, which reads only process.env.
 */

/** OTEL_SDK_DISABLED, as the spec reads it: "true", case-insensitive; anything else is false. */
export function sdkDisabled(env: NodeJS.ProcessEnv): boolean {
  return env["OTEL_SDK_DISABLED"]?.trim().toLowerCase() === "true";
}

/**
 * Traces are exported only when asked for: OTEL_TRACES_EXPORTER names an
 * exporter other than "none", or an OTLP endpoint is set
 * (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT).
 * NodeSDK alone would fall back to an OTLP exporter to localhost:4318
 * (PLATFORM.md), which is exporting without being asked.
 */
export function tracesRequested(env: NodeJS.ProcessEnv): boolean {
  const exporters = (env["OTEL_TRACES_EXPORTER"] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "" && s !== "null");
  if (exporters.length > 0) return exporters[0] !== "none";
  return nonEmpty(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) || nonEmpty(env["OTEL_EXPORTER_OTLP_ENDPOINT"]);
}

function nonEmpty(v: string | undefined): boolean {
  return v !== undefined && v.trim() !== "";
}

/**
 * Runs `fn` with process.env's OTEL_* variables replaced by those of `env`
 * plus `extra`, then restores them. NodeSDK, its exporters and processors
 * read their configuration synchronously while being built and started,
 * so this is how an explicit `env` (tests, benchmarks) reaches them.
 */
export function withOtelEnv<T>(env: NodeJS.ProcessEnv, extra: Record<string, string>, fn: () => T): T {
  // Read `env` before clearing: it may be process.env itself.
  const wanted: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith("OTEL_") && v !== undefined) wanted[k] = v;
  Object.assign(wanted, extra);
  const saved: Record<string, string | undefined> = {};
  for (const k of Object.keys(process.env)) {
    if (k.startsWith("OTEL_")) {
      saved[k] = process.env[k];
      delete process.env[k];
    }
  }
  Object.assign(process.env, wanted);
  try {
    return fn();
  } finally {
    for (const k of Object.keys(wanted)) delete process.env[k];
    for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
  }
}
