import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig, validateConfig } from "../../src/config.js";

const backends = [{ name: "echo", kind: "echo" }];

describe("telemetry config", () => {
  it("has no scrape endpoint unless one is configured", () => {
    expect(validateConfig({ backends }).telemetry).toEqual({ prometheusPort: undefined, prometheusHost: "127.0.0.1" });
  });

  it("reads telemetry.prometheus_port and prometheus_host", () => {
    expect(validateConfig({ backends, telemetry: { prometheus_port: 9464, prometheus_host: "0.0.0.0" } }).telemetry).toEqual({
      prometheusPort: 9464,
      prometheusHost: "0.0.0.0",
    });
  });

  it("names the key and the value it rejects", () => {
    expect(() => validateConfig({ backends, telemetry: { prometheus_port: 70000 } })).toThrow(/telemetry\.prometheus_port: .*70000/);
    expect(() => validateConfig({ backends, telemetry: { prometheus: 1 } })).toThrow(/telemetry\.prometheus: unknown key/);
  });

  it("lets PROMETHEUS_PORT override the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dispatcher-config-"));
    try {
      const file = join(dir, "config.yaml");
      await writeFile(file, "telemetry:\n  prometheus_port: 9464\nbackends:\n  - name: echo\n    kind: echo\n");
      expect((await loadConfig(file, {}, {})).telemetry.prometheusPort).toBe(9464);
      expect((await loadConfig(file, { PROMETHEUS_PORT: "9500" }, {})).telemetry.prometheusPort).toBe(9500);
      await expect(loadConfig(file, { PROMETHEUS_PORT: "many" }, {})).rejects.toThrow(/PROMETHEUS_PORT/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});
