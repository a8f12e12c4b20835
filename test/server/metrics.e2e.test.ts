import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DispatcherService,
  WorkerMetricsRequestSchema,
  WorkerState,
  type WorkerMetricsResponse,
} from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient, grpcJsClient } from "../helpers/clients.js";

let app: App;

beforeAll(async () => {
  app = await startTestApp({
    backends: [
      { name: "echo", kind: "echo", workers: 2, max_concurrency: 2, queue_capacity: 4 },
      { name: "other", kind: "echo", workers: 1 },
    ],
  });
});
afterAll(async () => {
  await app.close();
});

/**
 * Reads a stream until `until` says stop, then cancels it (a bare `break`
 * leaves the HTTP/2 stream open, and the server rightly keeps serving it).
 */
async function read(
  open: (signal: AbortSignal) => AsyncIterable<WorkerMetricsResponse>,
  until: (m: WorkerMetricsResponse, i: number) => boolean,
) {
  const ac = new AbortController();
  const got: WorkerMetricsResponse[] = [];
  try {
    for await (const m of open(ac.signal)) {
      got.push(m);
      if (until(m, got.length - 1)) break;
    }
  } finally {
    ac.abort();
  }
  return got;
}

describe("WorkerMetrics end to end", () => {
  it("sends a first message at once, then one per interval, with counts that move under load", async () => {
    const client = connectClient(app.server.port, "grpc");
    const held: Promise<unknown>[] = [];
    const msgs = await read((signal) => client.workerMetrics({ backends: ["echo"], interval: durationFromMs(100) }, { signal }), (m, i) => {
      if (i === 0) {
        // Apply load after the first snapshot: 3 slow jobs.
        for (let k = 0; k < 3; k++) {
          held.push(client.submit({ backend: "echo", metadata: { delay_ms: "400" } }));
        }
      }
      return m.workers.reduce((n, w) => n + w.inflight, 0) === 3;
    });
    expect(msgs.length).toBeGreaterThanOrEqual(2);
    expect(msgs[0]!.workers.map((w) => w.workerId)).toEqual(["echo/0", "echo/1"]);
    expect(msgs[0]!.workers.every((w) => w.state === WorkerState.SERVING && w.maxConcurrency === 2 && w.queueCapacity === 4)).toBe(true);
    await Promise.all(held);
    const after = await read((signal) => connectClient(app.server.port).workerMetrics({ backends: ["echo"] }, { signal }), () => true);
    const w = after[0]!.workers;
    expect(w.reduce((n, x) => n + Number(x.completed), 0)).toBeGreaterThanOrEqual(3);
    expect(w.reduce((n, x) => n + x.inflight, 0)).toBe(0);
    expect(w.some((x) => x.executionP50!.nanos > 0 || x.executionP50!.seconds > 0n)).toBe(true);
  });

  it("streams to a grpc-js client and honours the backend filter", async () => {
    const client = grpcJsClient(app.server.port);
    try {
      const msgs = await new Promise<WorkerMetricsResponse[]>((resolve, reject) => {
        const got: WorkerMetricsResponse[] = [];
        const call = client.workerMetrics!(create(WorkerMetricsRequestSchema, { backends: ["other"], interval: durationFromMs(100) })) as grpc.ClientReadableStream<WorkerMetricsResponse>;
        call.on("data", (m: WorkerMetricsResponse) => {
          got.push(m);
          if (got.length === 2) {
            call.cancel();
            resolve(got);
          }
        });
        call.on("error", (e: grpc.ServiceError) => {
          if (e.code !== grpc.status.CANCELLED) reject(e);
        });
      });
      expect(msgs).toHaveLength(2);
      for (const m of msgs) expect(m.workers.map((w) => w.workerId)).toEqual(["other/0"]);
    } finally {
      client.close();
    }
  });

  it("streams shared pre-encoded ticks to binary gRPC-Web and Connect clients, and JSON to a Connect JSON client", async () => {
    const baseUrl = `http://127.0.0.1:${app.server.port}`;
    const transports = [
      createGrpcWebTransport({ baseUrl, httpVersion: "2" }),
      createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
      createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false }),
    ];
    for (const transport of transports) {
      const client = createClient(DispatcherService, transport);
      const msgs = await read((signal) => client.workerMetrics({ backends: ["other"], interval: durationFromMs(100) }, { signal }), (_m, i) => i === 3);
      expect(msgs).toHaveLength(4);
      for (const m of msgs) expect(m.workers.map((w) => w.workerId)).toEqual(["other/0"]);
      const times = msgs.map((m) => timestampMs(m.time!));
      for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThan(times[i - 1]!);
    }
    await expect.poll(() => app.server.hub.subscribers).toBe(0);
  });

  it("rejects an unknown backend in the filter with NOT_FOUND", async () => {
    const client = connectClient(app.server.port);
    const err = await read((signal) => client.workerMetrics({ backends: ["nope"] }, { signal }), () => true).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.NotFound);
    expect(ConnectError.from(err).rawMessage).toContain("nope");
  });

  it("ends with DEADLINE_EXCEEDED at the client's deadline, leaving no subscriber behind", async () => {
    const stream = connectClient(app.server.port, "grpc").workerMetrics({ interval: durationFromMs(100) }, { timeoutMs: 350 });
    const got: WorkerMetricsResponse[] = [];
    const err = await (async () => {
      for await (const m of stream) got.push(m);
    })().catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.DeadlineExceeded);
    expect(got.length).toBeGreaterThanOrEqual(2);
    await expect.poll(() => app.server.hub.subscribers).toBe(0);
  });

  it("frees the worker when a client cancels a running job: inflight is 0 in the next message", async () => {
    const client = connectClient(app.server.port, "grpc");
    const ac = new AbortController();
    const call = client.submit({ backend: "other", metadata: { delay_ms: "60000" } }, { signal: ac.signal }).catch((e: unknown) => e);
    let cancelledAt = -1;
    const msgs = await read((signal) => client.workerMetrics({ backends: ["other"], interval: durationFromMs(100) }, { signal }), (m, i) => {
      if (cancelledAt < 0 && m.workers[0]!.inflight === 1) {
        ac.abort();
        cancelledAt = i;
        return false;
      }
      return cancelledAt >= 0 && m.workers[0]!.inflight === 0;
    });
    expect(ConnectError.from(await call).code).toBe(Code.Canceled);
    expect(msgs.length - 1 - cancelledAt).toBeLessThanOrEqual(2);
    expect(Number(msgs.at(-1)!.workers[0]!.cancelled)).toBe(1);
  });
});

describe("shutdown with a stalled metrics stream", () => {
  it("still closes when a client stopped reading without cancelling", async () => {
    const other = await startTestApp({ backends: [{ name: "echo", kind: "echo" }] });
    const stream = connectClient(other.server.port, "grpc").workerMetrics({ interval: durationFromMs(100) });
    for await (const _m of stream) break; // leaves the HTTP/2 stream open
    const started = Date.now();
    await other.close();
    // Open streams get the stream-close period (5 s) before their sockets are destroyed.
    expect(Date.now() - started).toBeLessThan(8_000);
  });
});
