import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkBackendKinds, checkSecrets, ConfigError, loadConfig, validateConfig } from "../src/config.js";

async function errorsOf(p: Promise<unknown>): Promise<string[]> {
  return p.then(
    () => [],
    (e: unknown) => {
      if (!(e instanceof ConfigError)) throw e;
      return [...e.errors];
    },
  );
}

async function file(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "dispatcher-config-env-"));
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe("environment and flags", () => {
  it("validates LOG_LEVEL, naming the variable and the accepted levels", async () => {
    expect(await errorsOf(loadConfig(undefined, { LOG_LEVEL: "verbose" }, {}))).toEqual([
      `LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent (got "verbose")`,
    ]);
    expect((await loadConfig(undefined, { LOG_LEVEL: "debug" }, {})).log.level).toBe("debug");
  });

  it("lets LOG_LEVEL override log.level and server.log_level", async () => {
    const f = await file("c.yaml", "log: { level: warn, access: true }\nbackends: [{ name: a, kind: echo }]\n");
    expect((await loadConfig(f, {}, {})).log).toEqual({ level: "warn", access: true });
    expect((await loadConfig(f, { LOG_LEVEL: "trace" }, {})).log).toEqual({ level: "trace", access: true });
    const alias = await file("a.yaml", "server: { log_level: error }\nbackends: [{ name: a, kind: echo }]\n");
    expect((await loadConfig(alias, { LOG_LEVEL: "silent" }, {})).log.level).toBe("silent");
  });

  it("reports the file's, the environment's and the flags' errors together", async () => {
    const f = await file("c.yaml", "backends:\n  - name: a\n    kind: echo\n    workers: 0\n");
    expect(await errorsOf(loadConfig(f, { PORT: "http", SHUTDOWN_GRACE: "600h", REFLECTION: "yes", TLS_CERT_FILE: "c.pem" }, { port: "x" }))).toEqual([
      "backends[0].workers: expected an integer 1-1024 (got 0)",
      `PORT: expected a port number 0-65535 (got "http")`,
      `SHUTDOWN_GRACE: expected at most 24.8 days (2147483647 ms, the longest a Node.js timer can wait) (got "600h")`,
      `REFLECTION: expected true or false (got "yes")`,
      "TLS_KEY_FILE: required with TLS_CERT_FILE",
      `--port: expected a port number 0-65535 (got "x")`,
    ]);
  });

  it("applies valid overrides: env over the file, flags over env", async () => {
    const c = await loadConfig(undefined, { SHUTDOWN_GRACE: "5000", REFLECTION: "0", PROMETHEUS_PORT: "9464", PORT: "9000", HOST: "::1" }, { port: "9001" });
    expect(c.server).toMatchObject({ shutdownGraceMs: 5_000, reflection: false, port: 9001, host: "::1" });
    expect(c.telemetry.prometheusPort).toBe(9464);
    // Empty variables are ignored, as unset ones.
    expect((await loadConfig(undefined, { PORT: "", LOG_LEVEL: "" }, {})).server.port).toBe(8080);
  });

  it("takes cluster.redis_url from the file or REDIS_URL, with defaults for the rest", async () => {
    expect((await loadConfig(undefined, {}, {})).cluster).toEqual({
      redisUrl: undefined,
      keyPrefix: "dispatcher:",
      redisTimeoutMs: 250,
      onRedisDown: "fail_open",
      replicaId: undefined,
    });
    const f = await file("c.yaml", "cluster: { redis_url: 'redis://127.0.0.1:6390', key_prefix: 'p:', redis_timeout: 100ms, on_redis_down: fail_closed }\nbackends: [{ name: a, kind: echo }]\n");
    expect((await loadConfig(f, {}, {})).cluster).toEqual({ redisUrl: "redis://127.0.0.1:6390", keyPrefix: "p:", redisTimeoutMs: 100, onRedisDown: "fail_closed", replicaId: undefined });
    expect((await loadConfig(f, { REPLICA_ID: "r-2" }, {})).cluster.replicaId).toBe("r-2");
    expect(await errorsOf(loadConfig(undefined, { REPLICA_ID: "r 2" }, {}))).toHaveLength(1);
    expect((await loadConfig(f, { REDIS_URL: "redis://10.0.0.1:6379/2" }, {})).cluster.redisUrl).toBe("redis://10.0.0.1:6379/2");
    expect(await errorsOf(loadConfig(undefined, { REDIS_URL: "localhost:6379" }, {}))).toEqual([
      `REDIS_URL: expected a redis:// or rediss:// URL (got "localhost:6379")`,
    ]);
    const bad = await file("b.yaml", "cluster: { redis_url: 'http://x', on_redis_down: maybe }\nbackends: [{ name: a, kind: echo }]\n");
    expect(await errorsOf(loadConfig(bad, {}, {}))).toEqual([
      `cluster.redis_url: expected a redis:// or rediss:// URL (got "http://x")`,
      `cluster.on_redis_down: expected fail_open or fail_closed (got "maybe")`,
    ]);
  });

  it("reports an unreadable or unparsable file as a config error", async () => {
    expect(await errorsOf(loadConfig("/nonexistent/dispatcher.yaml", {}, {}))).toEqual(["config file /nonexistent/dispatcher.yaml: no such file"]);
    const bad = await file("c.json", "{ backends: ");
    expect((await errorsOf(loadConfig(bad, {}, {})))[0]).toMatch(/^config file .*c\.json: not valid JSON: /);
    const dup = await file("c.yaml", "backends: []\nbackends: []\n");
    expect((await errorsOf(loadConfig(dup, {}, {})))[0]).toMatch(/^config file .*c\.yaml: not valid YAML: /);
  });
});

describe("backend kinds", () => {
  it("builds every kind and reports each one that refuses its options", async () => {
    const config = validateConfig({
      backends: [
        { name: "a", kind: "echo", options: { delay: 1 } },
        { name: "b", kind: "echo", options: { delay_ms: 5 } },
        { name: "c", kind: "magic" },
        { name: "d", kind: "http", workers: 2 },
      ],
    });
    expect(await checkBackendKinds(config, {})).toEqual([
      `backends[0].options.delay: unknown option for kind "echo"; known: delay_ms, stream_chunks, chunk_delay_ms`,
      expect.stringMatching(/^backends\[2\]\.kind: unknown "magic"; known: echo, http/),
      `backends[3].endpoints: required for kind "http" (one worker per upstream URL)`,
    ]);
    expect(await checkBackendKinds(validateConfig({ backends: [{ name: "e", kind: "http", endpoints: ["http://127.0.0.1:1"] }] }), {})).toEqual([]);
  });
});

describe("auth and TLS files", () => {
  const backends = [{ name: "a", kind: "echo" }];
  it("reports each file that cannot be read and each token source without tokens, never their contents", async () => {
    const empty = await file("tokens", "# no tokens yet\n");
    const config = validateConfig({
      backends,
      server: { auth: { tokens_file: empty, tokens_env: "TEST_TOKENS" }, tls: { cert_file: "/nonexistent/c.pem", key_file: "/nonexistent/k.pem" } },
    });
    expect(await checkSecrets(config, {})).toEqual([
      "server.auth.tokens_file: no tokens found",
      "server.auth.tokens_env: environment variable TEST_TOKENS is not set",
      "server.tls.cert_file: cannot read /nonexistent/c.pem: ENOENT",
      "server.tls.key_file: cannot read /nonexistent/k.pem: ENOENT",
    ]);
    const good = await file("tokens", "s3cret-token\n");
    const ok = validateConfig({ backends, server: { auth: { tokens_file: good, tokens_env: "TEST_TOKENS" } } });
    expect(await checkSecrets(ok, { TEST_TOKENS: "other-token" })).toEqual([]);
  });
});
