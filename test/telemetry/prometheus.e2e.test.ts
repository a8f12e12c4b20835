import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { startTelemetry, type Telemetry } from "../../src/telemetry/index.js";
import { connectClient } from "../helpers/clients.js";

let telemetry: Telemetry;
let app: App;

beforeAll(async () => {
  telemetry = await startTelemetry({ env: {}, prometheusPort: 0 });
  const config = validateConfig({ server: { port: 0 }, backends: [{ name: "echo", kind: "echo", workers: 1 }, { name: "slow", kind: "echo", workers: 1, options: { delay_ms: 300 } }] });
  app = await startApp(config, { observer: telemetry.observer, interceptors: telemetry.interceptors });
});
afterAll(async () => {
  await app?.close();
  await telemetry?.shutdown();
});

async function scrape(path = "/metrics"): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`http://127.0.0.1:${telemetry.prometheusPort}${path}`);
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

/** The sample lines of one metric family, without HELP/TYPE comments. */
function samples(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe("the Prometheus scrape endpoint", () => {
  it("serves the duration histograms, gauges and counters after traffic", async () => {
    expect(telemetry.prometheusPort).toBeGreaterThan(0);
    const client = connectClient(app.server.port);
    await client.submit({ backend: "echo", sessionId: "a" });
    await client.submit({ backend: "echo", sessionId: "a" });
    const failed = await client.submit({ backend: "echo", metadata: { fail: "unavailable" } }).catch((e: unknown) => ConnectError.from(e));
    expect((failed as ConnectError).code).toBe(Code.Unavailable);
    await client.submit({ backend: "nope" }).catch(() => undefined);

    const { status, type, text } = await scrape();
    expect(status).toBe(200);
    expect(type).toContain("text/plain");
    const worker = 'dispatcher_backend="echo",dispatcher_worker_id="echo/0"';
    expect(text).toContain("# TYPE dispatcher_queue_wait_duration histogram");
    expect(text).toContain("# UNIT dispatcher_queue_wait_duration s");
    expect(samples(text, "dispatcher_queue_wait_duration_count")).toEqual([expect.stringContaining(`{${worker}} 3`)]);
    expect(samples(text, "dispatcher_queue_wait_duration_bucket")).toContainEqual(expect.stringContaining(`{${worker},le="0.001"}`));
    expect(samples(text, "dispatcher_job_run_duration_count")).toEqual(
      expect.arrayContaining([
        expect.stringContaining(`{${worker},dispatcher_outcome="ok"} 2`),
        expect.stringContaining(`{${worker},dispatcher_outcome="error"} 1`),
      ]),
    );
    expect(samples(text, "dispatcher_job_run_duration_bucket")).toContainEqual(expect.stringContaining('le="600"'));
    expect(samples(text, "rpc_server_call_duration_count")).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/rpc_method="Submit",rpc_grpc_status_code="0"} 2$/),
        expect.stringMatching(/rpc_method="Submit",rpc_grpc_status_code="14"} 1$/),
        expect.stringMatching(/rpc_method="Submit",rpc_grpc_status_code="5"} 1$/),
      ]),
    );
    expect(samples(text, "dispatcher_jobs_completed_total")).toEqual([expect.stringContaining(`{${worker}} 2`)]);
    expect(samples(text, "dispatcher_jobs_errors_total")).toEqual([expect.stringContaining(`{${worker},error_type="unavailable"} 1`)]);
    // An unknown backend's name is the client's text, not a label.
    expect(samples(text, "dispatcher_jobs_rejected_total")).toEqual([expect.stringContaining('{error_type="not_found"} 1')]);
    expect(samples(text, "dispatcher_affinity_outcomes_total")).toEqual(
      expect.arrayContaining([
        expect.stringContaining(`{${worker},dispatcher_affinity="miss"} 1`),
        expect.stringContaining(`{${worker},dispatcher_affinity="hit"} 1`),
        expect.stringContaining(`{${worker},dispatcher_affinity="none"} 1`),
      ]),
    );
    expect(samples(text, "dispatcher_queue_depth")).toEqual([expect.stringContaining(`{${worker}} 0`)]);
    expect(samples(text, "dispatcher_jobs_inflight")).toEqual([expect.stringContaining(`{${worker}} 0`)]);
  });

  it("shows the request bytes held by calls in progress, back to 0 when they end", async () => {
    // As the service wires it (main.ts).
    telemetry.observeState({ snapshot: () => app.dispatcher.snapshot(), cluster: undefined, requestBytes: () => app.server.requestBytes() });
    const gauge = async (name: string) => Number((samples((await scrape()).text, name)[0] ?? "").split(" ").pop());
    const call = connectClient(app.server.port).submit({ backend: "slow", payload: { case: "binary", value: new Uint8Array(10_000) } });
    await expect.poll(() => gauge("dispatcher_server_requests_held")).toBeGreaterThan(10_000);
    await call;
    expect(await gauge("dispatcher_server_requests_held")).toBe(0);
    expect(await gauge("dispatcher_server_requests_decoding")).toBe(0);
  });

  it("answers 404 off its path", async () => {
    expect((await scrape("/")).status).toBe(404);
  });
});
