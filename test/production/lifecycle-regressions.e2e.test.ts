import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startTelemetry, type Telemetry } from "../../src/telemetry/index.js";
import { grpcJsClient, grpcUnary } from "../helpers/clients.js";
import { json, startUpstream, type TestUpstream } from "../helpers/upstream.js";

/**
 * Defects of the job lifecycle as a client saw them, against the real
 * server, real upstreams on 127.0.0.1 and a real Prometheus scrape.
 */
let telemetry: Telemetry;
let slow: TestUpstream;
let failing: TestUpstream;
let healthy: TestUpstream;
let app: App;

beforeAll(async () => {
  telemetry = await startTelemetry({ env: {}, prometheusPort: 0 });
  // A healthy upstream that takes 3 s to answer.
  slow = await startUpstream((_req, res) => {
    const t = setTimeout(() => json(res, 200, { ok: true }), 3_000);
    res.once("close", () => clearTimeout(t));
  });
  failing = await startUpstream((_req, res) => json(res, 503, { error: "overloaded" }));
  healthy = await startUpstream((req, res) => json(res, 200, JSON.parse(req.body.toString() || "null")));
  const config = validateConfig({
    server: { port: 0, shutdown_grace: "2s" },
    backends: [
      { name: "slow", kind: "http", endpoints: [`${slow.url}/a`, `${slow.url}/b`], max_concurrency: 2, queue_capacity: 8 },
      {
        name: "flaky",
        kind: "http",
        endpoints: [failing.url, healthy.url],
        max_concurrency: 4,
        retry: { max_attempts: 3, initial_backoff: "1ms", max_backoff: "5ms" },
        // Ejection would hide the retries after a few calls; this test counts them.
        outlier: { consecutive_failures: 0 },
      },
    ],
  });
  app = await startApp(config, { observer: telemetry.observer, interceptors: telemetry.interceptors });
});

afterAll(async () => {
  await app?.close();
  await telemetry?.shutdown();
  await Promise.all([slow?.close(), failing?.close(), healthy?.close()]);
});

async function scrape(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${telemetry.prometheusPort}/metrics`)).text();
}

/** Sample lines of one metric, as [labels, value]. */
function samples(text: string, name: string): [string, number][] {
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`))
    .map((l) => [l.slice(name.length, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))]);
}

describe("client deadlines against a slow, healthy upstream", () => {
  it("answer DEADLINE_EXCEEDED every time, count no error and eject no worker", async () => {
    const client = grpcJsClient(app.server.port);
    // Connected first: on a busy machine, connecting could take the calls' 300 ms and no job would reach the server.
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (e) => (e ? reject(e) : resolve())));
    try {
      // 16 calls: 4 run at once, 12 wait in the queues; each has 300 ms.
      const calls = Array.from({ length: 16 }, (_, i) =>
        grpcUnary(client, "submit", create(SubmitRequestSchema, { backend: "slow", sessionId: `s${i % 3}` }), {
          deadline: new Date(Date.now() + 300),
        }).then(
          () => "ok",
          (e: grpc.ServiceError) => e.code,
        ),
      );
      const codes = await Promise.all(calls);
      expect(codes).toEqual(Array(16).fill(grpc.status.DEADLINE_EXCEEDED));
      // The server settles each job as its deadline passes; give the last ones a moment to be counted.
      await expect.poll(() => app.dispatcher.snapshot(["slow"]).reduce((n, w) => n + w.cancelled, 0), { timeout: 2_000 }).toBe(16);
      const workers = app.dispatcher.snapshot(["slow"]);
      expect(workers.map((w) => [w.errors, w.ejections, w.state, w.inflight, w.queued])).toEqual([
        [0, 0, "serving", 0, 0],
        [0, 0, "serving", 0, 0],
      ]);
      const text = await scrape();
      expect(samples(text, "dispatcher_jobs_errors_total").filter(([l]) => l.includes('"slow/'))).toEqual([]);
      expect(samples(text, "dispatcher_jobs_cancelled_total").filter(([l]) => l.includes('"slow/')).every(([l]) => l.includes('dispatcher_outcome="deadline_exceeded"'))).toBe(true);
    } finally {
      client.close();
    }
  });
});

describe("retried calls", () => {
  it("leave the gauges at zero and charge each failed attempt to the worker that ran it", async () => {
    const client = grpcJsClient(app.server.port);
    try {
      for (let i = 0; i < 12; i++) {
        const r = await grpcUnary<{ workerId: string }>(client, "submit", create(SubmitRequestSchema, { backend: "flaky", metadata: { i: String(i) } }));
        expect(r.workerId).toBe("flaky/1");
      }
    } finally {
      client.close();
    }
    const failedAttempts = failing.requests.length;
    expect(failedAttempts).toBeGreaterThan(0);
    const text = await scrape();
    for (const g of ["dispatcher_jobs_inflight", "dispatcher_queue_depth"]) {
      const values = samples(text, g).map(([, v]) => v);
      expect(values.length, g).toBeGreaterThan(0);
      expect(values.every((v) => v === 0), `${g}: ${JSON.stringify(samples(text, g))}`).toBe(true);
    }
    const errors = samples(text, "dispatcher_jobs_errors_total").filter(([l]) => l.includes('"flaky/'));
    expect(errors).toEqual([[expect.stringContaining('dispatcher_worker_id="flaky/0"'), failedAttempts]]);
    const retries = samples(text, "dispatcher_jobs_retries_total").filter(([l]) => l.includes('"flaky/0"'));
    expect(retries.map(([, v]) => v)).toEqual([failedAttempts]);
    const runs = samples(text, "dispatcher_job_run_duration_count").filter(([l]) => l.includes('"flaky/'));
    expect(runs).toEqual(
      expect.arrayContaining([
        [expect.stringMatching(/flaky\/0".*dispatcher_outcome="error"/), failedAttempts],
        [expect.stringMatching(/flaky\/1".*dispatcher_outcome="ok"/), 12],
      ]),
    );
    const completed = samples(text, "dispatcher_jobs_completed_total").filter(([l]) => l.includes('"flaky/1"'));
    expect(completed.map(([, v]) => v)).toEqual([12]);
    // The core's own counters say the same.
    const [w0, w1] = app.dispatcher.snapshot(["flaky"]);
    expect([w0!.errors, w1!.errors, w1!.completed]).toEqual([failedAttempts, 0, 12]);
  });
});
