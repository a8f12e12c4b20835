import { describe, expect, it } from "vitest";
import { loadConfig, validateConfig } from "../../src/config.js";
import { defaultLimits } from "../../src/server/limits.js";

const backends = [{ name: "echo", kind: "echo" }];

describe("server config: limits, reflection, auth, tls", () => {
  it("has safe defaults", () => {
    const { server } = validateConfig({ backends });
    expect(server.host).toBe("127.0.0.1");
    expect(server.limits).toEqual(defaultLimits);
    expect(server.reflection).toBe(true);
    expect(server.auth).toBeUndefined();
    expect(server.tls).toBeUndefined();
  });

  it("reads every key", () => {
    const { server } = validateConfig({
      backends,
      server: {
        limits: { max_request_bytes: 10, max_session_id_length: 0, max_metadata_entries: 1, max_metadata_size: 2,
          max_concurrent_streams: 3, max_metrics_subscribers: 4, max_deadline: "2s" },
        reflection: false,
        auth: { tokens_env: "T" },
        tls: { cert_file: "c.pem", key_file: "k.pem" },
      },
    });
    expect(server.limits).toEqual({ ...defaultLimits, maxRequestBytes: 10, maxSessionIdLength: 0, maxMetadataEntries: 1, maxMetadataSize: 2,
      maxConcurrentStreams: 3, maxMetricsSubscribers: 4, maxDeadlineMs: 2000 });
    expect(server.reflection).toBe(false);
    expect(server.auth).toEqual({ tokensEnv: "T", tokensFile: undefined });
    expect(server.tls).toEqual({ certFile: "c.pem", keyFile: "k.pem" });
  });

  it("reads the edge's limits: sizes as integers, timeouts as durations", () => {
    const { server } = validateConfig({
      backends,
      server: {
        limits: {
          max_inflight_calls: 5, max_decoding_bytes: 6, max_held_request_bytes: 10, max_json_nodes: 7, max_json_depth: 8, max_metrics_streams_per_connection: 9,
          headers_timeout: "1s", body_idle_timeout: "2s", idle_timeout: "3m", goaway_grace: "500ms",
        },
      },
    });
    expect(server.limits).toMatchObject({
      maxInflightCalls: 5, maxDecodingBytes: 6, maxHeldRequestBytes: 10, maxJsonNodes: 7, maxJsonDepth: 8, maxMetricsStreamsPerConnection: 9,
      headersTimeoutMs: 1000, bodyIdleTimeoutMs: 2000, idleTimeoutMs: 180_000, goawayGraceMs: 500,
    });
  });

  it("names the key in errors", () => {
    const bad = (server: unknown) => () => validateConfig({ backends, server });
    expect(bad({ limits: { max_request_bytes: 0 } })).toThrow(/server\.limits\.max_request_bytes/);
    expect(bad({ limits: { max_deadline: "soon" } })).toThrow(/server\.limits\.max_deadline/);
    expect(bad({ limits: { max_streams: 1 } })).toThrow(/server\.limits\.max_streams: unknown key/);
    expect(bad({ reflection: "yes" })).toThrow(/server\.reflection/);
    expect(bad({ auth: {} })).toThrow(/server\.auth/);
    expect(bad({ tls: { cert_file: "c.pem" } })).toThrow(/server\.tls\.key_file/);
  });

  it("takes overrides from the environment", async () => {
    const c = await loadConfig(undefined, { REFLECTION: "false", SHUTDOWN_GRACE: "5s", TLS_CERT_FILE: "c", TLS_KEY_FILE: "k", AUTH_TOKENS_FILE: "t" }, {});
    expect(c.server.reflection).toBe(false);
    expect(c.server.shutdownGraceMs).toBe(5000);
    expect(c.server.tls).toEqual({ certFile: "c", keyFile: "k" });
    expect(c.server.auth?.tokensFile).toBe("t");
  });
});
