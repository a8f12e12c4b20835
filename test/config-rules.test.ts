import { describe, expect, it } from "vitest";
import { ConfigError, validateConfig } from "../src/config.js";
import { policyNames } from "../src/core/index.js";
import { durationMs, MAX_DURATION_MS, parseDuration } from "../src/duration.js";

/** The lines a config is refused with, or [] when it is accepted. */
function errorsOf(raw: unknown): string[] {
  try {
    validateConfig(raw);
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return [...e.errors];
  }
}

/** Errors of one backend, written with `extra` keys on top of a valid one. */
const backendErrors = (extra: Record<string, unknown>) => errorsOf({ backends: [{ name: "a", kind: "echo", ...extra }] });

describe("config errors", () => {
  it("reports every error at once, one line each, with the key path as written and the value received", () => {
    const e = errorsOf({
      server: { port: 70000, limits: { max_request_bytes: 0 } },
      backends: [
        { name: "ok", kind: "echo", max_concurrency: 0, timeout: "600h" },
        { name: "b", kind: "echo", endpoints: [{ url: "http://127.0.0.1:1", weight: 0 }] },
      ],
      telemetry: { prometheus_port: -1 },
    });
    expect(e).toEqual([
      "server.port: expected a port number 0-65535 (got 70000)",
      "server.limits.max_request_bytes: expected an integer ≥ 1 (got 0)",
      "backends[0].max_concurrency: expected an integer ≥ 1 (got 0)",
      `backends[0].timeout: expected at most 24.8 days (${MAX_DURATION_MS} ms, the longest a Node.js timer can wait) (got "600h")`,
      "backends[1].endpoints[0].weight: expected a number > 0 (got 0)",
      "telemetry.prometheus_port: expected a port number 0-65535 (got -1)",
    ]);
  });

  it("reads limits on a backend and on an endpoint, refusing what would never admit anything", () => {
    const c = validateConfig({
      backends: [{
        name: "g", kind: "echo",
        limits: { requests_per_minute: 500, tokens_per_minute: 90000, max_concurrency: 20, window: "30s", token_estimate: 256 },
        endpoints: [{ url: "http://127.0.0.1:1/v1", limits: { requests_per_minute: 60 } }],
      }],
    });
    expect(c.backends[0]!.limits).toEqual({ requestsPerMinute: 500, tokensPerMinute: 90000, maxConcurrency: 20, windowMs: 30_000, tokenEstimate: 256 });
    expect((c.backends[0]!.workers as { limits?: unknown }[])[0]!.limits).toEqual({ requestsPerMinute: 60 });
    expect(errorsOf({ backends: [{ name: "g", kind: "echo", limits: { requests_per_minute: 0, window: 0, tokens: 5 } }] })).toEqual([
      "backends[0].limits.requests_per_minute: expected an integer ≥ 1 (got 0)",
      "backends[0].limits.window: expected a duration > 0 (got 0)",
      "backends[0].limits.tokens: unknown key; known: requests_per_minute, tokens_per_minute, max_concurrency, window, token_estimate, adaptive_concurrency (got 5)",
    ]);
  });

  it("names each unknown key on its own line with the keys that are known", () => {
    const e = errorsOf({ backends: [{ name: "a", kind: "echo", workerz: 2, max_concurency: 4 }], serverr: {} });
    expect(e).toContain("backends[0].workerz: unknown key; known: name, kind, workers, endpoints, max_concurrency, queue_capacity, timeout, policy, affinity, retry, outlier, idempotent, expose_upstream_errors, ttft_timeout, stall_timeout, limits, scheduling, options (got 2)");
    expect(e.some((l) => l.startsWith("backends[0].max_concurency: unknown key; known: name, kind,"))).toBe(true);
    expect(e).toContain("serverr: unknown key; known: server, backends, telemetry, log, dashboard, cluster, jobs (got {})");
    expect(e).toHaveLength(3);
  });

  it("says when a required key is missing, and when the whole file is not a mapping", () => {
    expect(errorsOf({})).toEqual(["backends: required; expected a non-empty list"]);
    expect(errorsOf({ backends: [{ kind: "echo" }] })).toEqual([
      `backends[0].name: required; expected letters, digits, ".", "_" or "-", starting with a letter or digit (1-63 chars)`,
    ]);
    expect(errorsOf(null)).toEqual(["config: expected a mapping (got null)"]);
    expect(errorsOf({ backends: [] })).toEqual(["backends: expected a non-empty list (got [])"]);
  });

  it("reports rules across keys alongside the other errors of the same backend", () => {
    const e = backendErrors({ max_concurrency: 1.5, retry: { initial_backoff: "2s", max_backoff: "1s" } });
    expect(e).toEqual([
      "backends[0].max_concurrency: expected an integer ≥ 1 (got 1.5)",
      "backends[0].retry.max_backoff: expected ≥ retry.initial_backoff (2000 ms), got 1000 ms",
    ]);
  });

  it("is a TypeError whose message holds every line", () => {
    expect(() => validateConfig({ backends: [{ name: "a", kind: "echo", workers: 0, queue_capacity: -1 }] })).toThrow(
      /backends\[0\]\.workers: .*\n.*backends\[0\]\.queue_capacity/,
    );
    expect(() => validateConfig({})).toThrow(TypeError);
  });
});

describe("backend rules, as strict as the core's", () => {
  // [keys on top of a valid backend, the one error expected]
  const cases: [Record<string, unknown>, string][] = [
    [{ workers: 0 }, "backends[0].workers: expected an integer 1-1024 (got 0)"],
    [{ workers: 1025 }, "backends[0].workers: expected an integer 1-1024 (got 1025)"],
    [{ workers: "2" }, `backends[0].workers: expected an integer 1-1024 (got "2")`],
    [{ max_concurrency: 0 }, "backends[0].max_concurrency: expected an integer ≥ 1 (got 0)"],
    [{ queue_capacity: -1 }, "backends[0].queue_capacity: expected an integer ≥ 0 (got -1)"],
    [{ queue_capacity: 2 ** 53 }, `backends[0].queue_capacity: expected an integer ≥ 0 (got ${2 ** 53})`],
    [{ policy: "fastest" }, `backends[0].policy: expected one of ${policyNames().join(", ")} (got "fastest")`],
    [{ name: "a b" }, `backends[0].name: expected letters, digits, ".", "_" or "-", starting with a letter or digit (1-63 chars) (got "a b")`],
    [{ name: "x".repeat(64) }, `backends[0].name: expected letters, digits, ".", "_" or "-", starting with a letter or digit (1-63 chars) (got "${"x".repeat(64)}")`],
    [{ kind: "" }, `backends[0].kind: expected a non-empty string (got "")`],
    [{ affinity: { spill_load_factor: 0.5 } }, "backends[0].affinity.spill_load_factor: expected 0 (off) or a number ≥ 1 (got 0.5)"],
    [{ affinity: { max_pins: 0 } }, "backends[0].affinity.max_pins: expected an integer ≥ 1 (got 0)"],
    [{ retry: { max_attempts: 0 } }, "backends[0].retry.max_attempts: expected an integer ≥ 1 (got 0)"],
    [{ retry: { multiplier: 0.5 } }, "backends[0].retry.multiplier: expected a number ≥ 1 (got 0.5)"],
    [{ retry: { budget_percent: 101 } }, "backends[0].retry.budget_percent: expected a percentage 0-100 (got 101)"],
    [{ retry: { min_retry_concurrency: -1 } }, "backends[0].retry.min_retry_concurrency: expected an integer ≥ 0 (got -1)"],
    [{ outlier: { consecutive_failures: -1 } }, "backends[0].outlier.consecutive_failures: expected an integer ≥ 0 (got -1)"],
    [{ outlier: { base_ejection: "1m", max_ejection: "30s" } }, "backends[0].outlier.max_ejection: expected ≥ outlier.base_ejection (60000 ms), got 30000 ms"],
    // The core's default max_ejection is 5 min: a longer base alone would fail there.
    [{ outlier: { base_ejection: "10m" } }, "backends[0].outlier.base_ejection: expected ≤ max_ejection (default 300000 ms), got 600000 ms; set outlier.max_ejection too"],
    [{ outlier: { max_ejection: "10s" } }, "backends[0].outlier.max_ejection: expected ≥ outlier.base_ejection (30000 ms), got 10000 ms"],
    [{ outlier: { max_ejection_percent: 101 } }, "backends[0].outlier.max_ejection_percent: expected a percentage 0-100 (got 101)"],
    [{ idempotent: "yes" }, `backends[0].idempotent: expected true or false (got "yes")`],
    [{ expose_upstream_errors: 1 }, "backends[0].expose_upstream_errors: expected true or false (got 1)"],
    [{ options: [1] }, "backends[0].options: expected a mapping (got [1])"],
    [{ endpoints: [] }, "backends[0].endpoints: expected a non-empty list (got [])"],
    [{ workers: 2, endpoints: ["http://127.0.0.1:1"] }, `backends[0].endpoints: set either workers or endpoints, not both (got [{"url":"http://127.0.0.1:1"}])`],
    [{ endpoints: [{ url: "http://127.0.0.1:1", name: "w" }, { url: "http://127.0.0.1:2", name: "w" }] }, `backends[0].endpoints[1].name: duplicate worker name "w" (got "w")`],
    // A worker without a name is named by its index: "1" on the first collides with the second.
    [{ endpoints: [{ url: "http://127.0.0.1:1", name: "1" }, "http://127.0.0.1:2"] }, `backends[0].endpoints[1].name: duplicate worker name "1": unnamed, this worker takes its index, already the name of endpoints[0]`],
    [{ endpoints: [{ url: "http://127.0.0.1:1", name: "a/b" }] }, `backends[0].endpoints[0].name: expected letters, digits, ".", "_" or "-", starting with a letter or digit (1-63 chars) (got "a/b")`],
    [{ endpoints: [{ url: "http://127.0.0.1:1", max_concurrency: 0 }] }, "backends[0].endpoints[0].max_concurrency: expected an integer ≥ 1 (got 0)"],
    [{ endpoints: [{ url: "http://127.0.0.1:1", weight: Infinity }] }, "backends[0].endpoints[0].weight: expected a number > 0 (got Infinity)"],
  ];
  for (const [extra, expected] of cases) {
    it(`refuses ${JSON.stringify(extra)}`, () => {
      expect(backendErrors(extra)).toEqual([expected]);
    });
  }

  it("refuses two backends of one name", () => {
    expect(errorsOf({ backends: [{ name: "a", kind: "echo" }, { name: "b", kind: "echo" }, { name: "a", kind: "echo" }] })).toEqual([
      `backends[2].name: duplicate backend name "a" (got "a")`,
    ]);
  });

  it("accepts the boundaries the core accepts", () => {
    expect(backendErrors({
      workers: 1024, max_concurrency: 1, queue_capacity: 0, timeout: 0,
      affinity: { ttl: 0, max_pins: 1, spill_load_factor: 0 },
      retry: { max_attempts: 1, multiplier: 1, budget_percent: 100, min_retry_concurrency: 0, initial_backoff: "1s", max_backoff: "1s" },
      outlier: { consecutive_failures: 0, base_ejection: "5m", max_ejection_percent: 0 },
    })).toEqual([]);
    expect(backendErrors({ affinity: { spill_load_factor: 1 } })).toEqual([]);
  });

  it("carries the new keys with their defaults", () => {
    const [plain] = validateConfig({ backends: [{ name: "a", kind: "echo", outlier: { consecutive_failures: 3 } }] }).backends;
    expect(plain).toMatchObject({ idempotent: false, exposeUpstreamErrors: false });
    // Unset max_ejection_percent is left to the core's default.
    expect(plain!.outlier).not.toHaveProperty("maxEjectionPercent");
    const [set] = validateConfig({
      backends: [{ name: "a", kind: "echo", idempotent: true, expose_upstream_errors: true, outlier: { max_ejection_percent: 50 } }],
    }).backends;
    expect(set).toMatchObject({ idempotent: true, exposeUpstreamErrors: true, outlier: { maxEjectionPercent: 50 } });
  });
});

describe("server, telemetry and log keys", () => {
  const backends = [{ name: "a", kind: "echo" }];
  it("refuses bad server values, naming each", () => {
    expect(errorsOf({ backends, server: { host: "", reflection: "yes", auth: {}, tls: { cert_file: "c.pem" } } })).toEqual([
      `server.host: expected a non-empty string (got "")`,
      `server.reflection: expected true or false (got "yes")`,
      "server.auth: set tokens_file or tokens_env (or remove server.auth to turn auth off) (got {})",
      "server.tls.key_file: required; expected a non-empty string",
    ]);
  });

  it("checks every server.limits key from its table", () => {
    expect(errorsOf({ backends, server: { limits: { max_concurrent_streams: 2 ** 32, max_session_id_length: -1, max_deadline: "16m", max_metadata_size: "1k" } } })).toEqual([
      `server.limits.max_session_id_length: expected an integer ≥ 0 (got -1)`,
      `server.limits.max_metadata_size: expected an integer ≥ 1 (got "1k")`,
      `server.limits.max_concurrent_streams: expected an integer 1-4294967295 (got ${2 ** 32})`,
    ]);
    const { limits } = validateConfig({ backends, server: { limits: { max_session_id_length: 0, max_deadline: "1h", max_concurrent_streams: 10 } } }).server;
    expect(limits).toMatchObject({ maxSessionIdLength: 0, maxDeadlineMs: 3_600_000, maxConcurrentStreams: 10, maxRequestBytes: 4 * 1024 * 1024 });
  });

  it("takes log.level and log.access, with server.log_level as an alias of log.level", () => {
    expect(validateConfig({ backends }).log).toEqual({ level: "info", access: false });
    expect(validateConfig({ backends, log: { level: "debug", access: true } }).log).toEqual({ level: "debug", access: true });
    expect(validateConfig({ backends, server: { log_level: "warn" } }).log.level).toBe("warn");
    expect(validateConfig({ backends, server: { log_level: "warn" }, log: { level: "warn" } }).log.level).toBe("warn");
    expect(errorsOf({ backends, server: { log_level: "warn" }, log: { level: "debug" } })).toEqual([
      `server.log_level: conflicts with log.level "debug"; server.log_level is an alias of log.level: set one (got "warn")`,
    ]);
    expect(errorsOf({ backends, log: { level: "verbose", access: "yes" } })).toEqual([
      `log.level: expected one of fatal, error, warn, info, debug, trace, silent (got "verbose")`,
      `log.access: expected true or false (got "yes")`,
    ]);
  });
});

describe("durations", () => {
  it("reads units and whole milliseconds", () => {
    expect(parseDuration("250ms", "d")).toBe(250);
    expect(parseDuration("1.5s", "d")).toBe(1_500);
    expect(parseDuration("10m", "d")).toBe(600_000);
    expect(parseDuration("2h", "d")).toBe(7_200_000);
    expect(parseDuration(" 30s ", "d")).toBe(30_000);
    expect(parseDuration("5000", "d")).toBe(5_000);
    expect(parseDuration(0, "d")).toBe(0);
  });

  it("stops where Node's timers end: 2^31-1 ms (24.8 days)", () => {
    expect(parseDuration(MAX_DURATION_MS, "d")).toBe(2_147_483_647);
    expect(parseDuration("596h", "d")).toBe(596 * 3_600_000);
    expect(durationMs(MAX_DURATION_MS + 1)).toEqual({ error: expect.stringContaining("at most 24.8 days") });
    expect(durationMs("597h")).toEqual({ error: expect.stringContaining("at most 24.8 days") });
    expect(() => parseDuration("600h", "backends[0].timeout")).toThrow(/^backends\[0\]\.timeout: expected at most 24\.8 days .*\(got "600h"\)$/);
  });

  it("refuses negative, fractional-ms, non-finite and unknown forms", () => {
    for (const v of [-1, 1.5, Number.NaN, Infinity, "-1s", "1d", "soon", "", null, true, "1.5"]) {
      expect(durationMs(v), JSON.stringify(v)).toEqual({ error: expect.stringMatching(/^expected a duration/) });
    }
  });

  it("caps every duration key of the file, naming it", () => {
    const e = errorsOf({
      server: { shutdown_grace: "600h", limits: { max_deadline: "600h" } },
      backends: [{
        name: "a", kind: "echo", timeout: "600h", affinity: { ttl: "600h" },
        retry: { initial_backoff: "600h", max_backoff: "600h" }, outlier: { base_ejection: "600h", max_ejection: "600h" },
      }],
    }).map((l) => l.slice(0, l.indexOf(":")));
    expect(e).toEqual([
      "server.shutdown_grace", "server.limits.max_deadline", "backends[0].timeout", "backends[0].affinity.ttl",
      "backends[0].retry.initial_backoff", "backends[0].retry.max_backoff", "backends[0].outlier.base_ejection", "backends[0].outlier.max_ejection",
    ]);
  });
});
