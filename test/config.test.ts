import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { backendOptions } from "../src/app.js";
import { loadConfig, validateConfig } from "../src/config.js";

describe("config", () => {
  it("serves an echo backend with 4 workers on 127.0.0.1:8080 by default", async () => {
    const c = await loadConfig(undefined, {}, {});
    expect(c.server).toMatchObject({ host: "127.0.0.1", port: 8080 });
    expect(c.backends).toMatchObject([{ name: "echo", kind: "echo", workers: 4 }]);
  });

  it("lets env override the file and flags override env", async () => {
    const c = await loadConfig(undefined, { PORT: "9000", HOST: "0.0.0.0" }, {});
    expect(c.server).toMatchObject({ host: "0.0.0.0", port: 9000 });
    const f = await loadConfig(undefined, { PORT: "9000" }, { port: 9001, host: "::1" });
    expect(f.server).toMatchObject({ host: "::1", port: 9001 });
  });

  it("reads YAML and JSON files with durations", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dispatcher-config-"));
    const yaml = join(dir, "c.yaml");
    await writeFile(
      yaml,
      `server:\n  port: 0\n  shutdown_grace: 5s\nbackends:\n  - name: fast\n    kind: echo\n    workers: 2\n    max_concurrency: 3\n    queue_capacity: 7\n    timeout: 1.5s\n    affinity:\n      ttl: 10m\n      max_pins: 50\n      spill_load_factor: 1.5\n`,
    );
    const c = await loadConfig(yaml, {}, {});
    expect(c.server.shutdownGraceMs).toBe(5_000);
    expect(c.backends[0]).toMatchObject({ name: "fast", workers: 2, maxConcurrency: 3, queueCapacity: 7, timeoutMs: 1_500, affinity: { ttlMs: 600_000, maxPins: 50, spillLoadFactor: 1.5 } });
    const json = join(dir, "c.json");
    await writeFile(json, JSON.stringify({ backends: [{ name: "j", kind: "echo" }] }));
    expect((await loadConfig(json, {}, {})).backends[0]!.name).toBe("j");
  });

  it("fails naming the field and the value received", async () => {
    const bad = (raw: unknown) => () => validateConfig(raw);
    expect(bad({ backends: [] })).toThrow(/backends: expected a non-empty list/);
    expect(bad({ backends: [{ name: "a", kind: "echo", workerz: 2 }] })).toThrow(/backends\[0\]\.workerz: unknown key/);
    expect(bad({ backends: [{ name: "a", kind: "echo", timeout: "soon" }] })).toThrow(/backends\[0\]\.timeout: expected a duration.*"soon"/);
    expect(bad({ backends: [{ name: "a", kind: "echo" }, { name: "a", kind: "echo" }] })).toThrow(/backends\[1\]\.name: duplicate/);
    expect(bad({ server: { port: 70000 }, backends: [{ name: "a", kind: "echo" }] })).toThrow(/server\.port: expected a port number/);
    await expect(backendOptions(validateConfig({ backends: [{ name: "a", kind: "magic" }] }))).rejects.toThrow(/backends\[0\]\.kind: unknown "magic"; known: echo/);
    await expect(backendOptions(validateConfig({ backends: [{ name: "a", kind: "echo", options: { delay_ms: -1 } }] }))).rejects.toThrow(/options\.delay_ms/);
    await expect(loadConfig("/nonexistent/dispatcher.yaml", {}, {})).rejects.toThrow(/config file .*dispatcher\.yaml/);
  });
});
