import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { connectClient } from "../helpers/clients.js";

const lines: { obj: Record<string, unknown>; msg?: string }[] = [];
const keep = (obj: object, msg?: string) => void lines.push({ obj: obj as Record<string, unknown>, msg });
let app: App;

beforeAll(async () => {
  const config = validateConfig({ server: { port: 0 }, log: { access: true }, backends: [{ name: "echo", kind: "echo", workers: 1 }] });
  app = await startApp(config, { log: { info: keep, warn: keep, error: keep, debug: keep } });
});
afterAll(async () => {
  await app?.close();
});

describe("the access log (log.access: true)", () => {
  it("writes one line per call: method, backend, worker, code, queue wait, run time, attempts", async () => {
    const client = connectClient(app.server.port, "grpc");
    await client.submit({ backend: "echo" });
    await client.submit({ backend: "gpt" }).catch(() => undefined);
    for await (const _ of client.submitStream({ backend: "echo", metadata: { stream_chunks: "2" } })) void _;
    const access = lines.filter((l) => typeof l.obj["method"] === "string").map((l) => l.obj);
    expect(access[0]).toMatchObject({ method: "Submit", backend: "echo", worker: "echo/0", code: "ok", attempts: 1 });
    expect(access[0]!["queue_wait_ms"]).toBeGreaterThanOrEqual(0);
    expect(access[0]!["run_ms"]).toBeGreaterThanOrEqual(0);
    expect(access[1]).toMatchObject({ method: "Submit", backend: "gpt", code: "not_found" });
    expect(access[1]!["worker"]).toBeUndefined();
    expect(access[2]).toMatchObject({ method: "SubmitStream", backend: "echo", worker: "echo/0", code: "ok" });
    expect(access).toHaveLength(3);
  });

  it("is off by default", async () => {
    const quiet: unknown[] = [];
    const log = { info: (o: object) => quiet.push(o), warn: () => undefined, error: () => undefined, debug: () => undefined };
    const other = await startApp(validateConfig({ server: { port: 0 }, backends: [{ name: "echo", kind: "echo" }] }), { log });
    try {
      await connectClient(other.server.port).submit({ backend: "echo" });
      expect(quiet.filter((o) => typeof (o as { method?: unknown }).method === "string")).toEqual([]);
    } finally {
      await other.close();
    }
  });
});
