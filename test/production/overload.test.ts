import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as Status, type HealthCheckResponse } from "../../gen/grpc/health/v1/health_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { gc } from "../helpers/gc.js";
import { connectClient, grpcJsClient, grpcJsHealthClient, grpcUnary } from "../helpers/clients.js";

// Capacity: 2 workers × (4 running + 6 queued) = 20 jobs; each round submits 20× that at once.
const WORKERS = 2;
const CONCURRENCY = 4;
const QUEUE = 6;
const CAPACITY = WORKERS * (CONCURRENCY + QUEUE);
const BURST = 20 * CAPACITY;

let app: App;
beforeAll(async () => {
  app = await startTestApp({
    backends: [{ name: "echo", kind: "echo", workers: WORKERS, max_concurrency: CONCURRENCY, queue_capacity: QUEUE, options: { delay_ms: 20 } }],
  });
});
afterAll(() => app.close());

type Outcome = "OK" | Code;

/** One burst from real clients (connect gRPC, Connect and grpc-js); counts each call's answers. */
async function burst(port: number): Promise<{ outcomes: Outcome[]; answers: number[] }> {
  const answers = new Array<number>(BURST).fill(0);
  const clients = [connectClient(port, "grpc"), connectClient(port, "connect")];
  const grpcJs = grpcJsClient(port);
  const calls = Array.from({ length: BURST }, (_, i): Promise<Outcome> => {
    const seen = (o: Outcome) => {
      answers[i]!++;
      return o;
    };
    if (i % 3 === 2) {
      return grpcUnary(grpcJs, "submit", create(SubmitRequestSchema, { backend: "echo", sessionId: `s${i % 50}` }), {
        deadline: new Date(Date.now() + 20_000),
      }).then(() => seen("OK"), (e: grpc.ServiceError) => seen(e.code as number as Code));
    }
    return clients[i % 3]!.submit({ backend: "echo", sessionId: `s${i % 50}` }, { timeoutMs: 20_000 })
      .then(() => seen("OK"), (e: unknown) => seen(ConnectError.from(e).code));
  });
  const outcomes = await Promise.all(calls);
  grpcJs.close();
  return { outcomes, answers };
}

describe("overload: 20× capacity at once", () => {
  it("answers every call exactly once with OK or RESOURCE_EXHAUSTED, stays healthy and returns to idle", async () => {
    gc();
    const before = process.memoryUsage().heapUsed;
    let heapAfterFirst = 0;
    for (let round = 0; round < 3; round++) {
      const { outcomes, answers } = await burst(app.server.port);
      expect(answers.every((n) => n === 1)).toBe(true);
      const ok = outcomes.filter((o) => o === "OK").length;
      const exhausted = outcomes.filter((o) => o === Code.ResourceExhausted).length;
      expect(ok + exhausted).toBe(BURST);
      expect(ok).toBeGreaterThanOrEqual(CAPACITY);
      expect(exhausted).toBeGreaterThan(0);
      for (const w of app.dispatcher.snapshot()) {
        expect(w.inflight).toBe(0);
        expect(w.queued).toBe(0);
      }
      gc();
      if (round === 0) heapAfterFirst = process.memoryUsage().heapUsed;
    }
    const health = grpcJsHealthClient(app.server.port);
    const h = await grpcUnary<HealthCheckResponse>(health, "check", create(HealthCheckRequestSchema, {})).finally(() => health.close());
    expect(h.status).toBe(Status.SERVING);
    // Later rounds do not keep what earlier ones allocated: no leak per call.
    const after = process.memoryUsage().heapUsed;
    expect(after - before).toBeLessThan(16 * 1024 * 1024);
    expect(after - heapAfterFirst).toBeLessThan(8 * 1024 * 1024);
  });
});
