import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SubmitRequestSchema, type SubmitResponse } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { grpcJsClient, grpcUnary } from "../helpers/clients.js";

let app: App;
let client: ReturnType<typeof grpcJsClient>;

beforeAll(async () => {
  app = await startTestApp({
    backends: [
      { name: "echo", kind: "echo", workers: 2 },
      { name: "tight", kind: "echo", workers: 1, max_concurrency: 1, queue_capacity: 0 },
      { name: "slow", kind: "echo", workers: 1, timeout: "100ms" },
    ],
  });
  client = grpcJsClient(app.server.port);
});
afterAll(async () => {
  client.close();
  await app.close();
});

function submit(fields: Parameters<typeof create<typeof SubmitRequestSchema>>[1], options: { deadline?: Date } = {}) {
  return grpcUnary<SubmitResponse>(client, "submit", create(SubmitRequestSchema, fields), options);
}

async function statusOf(p: Promise<unknown>): Promise<{ code: grpc.status; details: string }> {
  try {
    await p;
    return { code: grpc.status.OK, details: "" };
  } catch (e) {
    const err = e as grpc.ServiceError;
    return { code: err.code, details: err.details };
  }
}

describe("every error of DESIGN.md §5, from a grpc-js client", () => {
  it("NOT_FOUND for an unknown backend, naming the known ones", async () => {
    const s = await statusOf(submit({ backend: "gpt" }));
    expect(s.code).toBe(grpc.status.NOT_FOUND);
    expect(s.details).toContain("echo, tight, slow");
  });

  it("INVALID_ARGUMENT naming the field", async () => {
    const empty = await statusOf(submit({ backend: "" }));
    expect(empty.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(empty.details).toContain("backend");
    const long = await statusOf(submit({ backend: "echo", sessionId: "x".repeat(10_000) }));
    expect(long.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(long.details).toContain("session_id");
    const delay = await statusOf(submit({ backend: "echo", metadata: { delay_ms: "soon" } }));
    expect(delay.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(delay.details).toContain("delay_ms");
  });

  it("RESOURCE_EXHAUSTED at once when no worker can admit", async () => {
    const held = statusOf(submit({ backend: "tight", metadata: { delay_ms: "300" } }));
    await expect.poll(() => app.dispatcher.snapshot(["tight"])[0]!.inflight).toBe(1);
    const s = await statusOf(submit({ backend: "tight" }));
    expect(s.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(s.details).toContain("tight");
    expect((await held).code).toBe(grpc.status.OK);
    expect(app.dispatcher.snapshot(["tight"])[0]!.rejected).toBe(1);
  });

  it("RESOURCE_EXHAUSTED for a request over the size limit", async () => {
    const s = await statusOf(submit({ backend: "echo", payload: { case: "binary", value: new Uint8Array(5 * 1024 * 1024) } }));
    expect(s.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it("DEADLINE_EXCEEDED when the call's deadline passes", async () => {
    const s = await statusOf(submit({ backend: "echo", metadata: { delay_ms: "5000" } }, { deadline: new Date(Date.now() + 150) }));
    expect(s.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it("DEADLINE_EXCEEDED when the handler runs past its backend's timeout", async () => {
    const s = await statusOf(submit({ backend: "slow", metadata: { delay_ms: "5000" } }));
    expect(s.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(s.details).toContain("timed out");
    expect(app.dispatcher.snapshot(["slow"])[0]!.errors).toBe(1);
  });

  it("CANCELLED when the client cancels; the job is counted as cancelled, not an error", async () => {
    const count = (k: "cancelled" | "errors") => app.dispatcher.snapshot(["echo"]).reduce((n, w) => n + w[k], 0);
    const before = count("cancelled");
    const errorsBefore = count("errors");
    const s = await new Promise<grpc.ServiceError>((resolve) => {
      const call = client.submit!(
        create(SubmitRequestSchema, { backend: "echo", metadata: { delay_ms: "10000" } }),
        (err: grpc.ServiceError) => resolve(err),
      ) as grpc.ClientUnaryCall;
      setTimeout(() => call.cancel(), 50);
    });
    expect(s.code).toBe(grpc.status.CANCELLED);
    await expect.poll(() => count("cancelled")).toBe(before + 1);
    expect(count("errors")).toBe(errorsBefore);
    expect(app.dispatcher.snapshot(["echo"]).reduce((n, w) => n + w.inflight, 0)).toBe(0);
  });

  it("the handler's own failure, with its message: UNAVAILABLE and INTERNAL", async () => {
    const u = await statusOf(submit({ backend: "echo", metadata: { fail: "unavailable", fail_message: "replica down" } }));
    expect(u).toEqual({ code: grpc.status.UNAVAILABLE, details: "replica down" });
    const i = await statusOf(submit({ backend: "echo", metadata: { fail: "internal" } }));
    expect(i.code).toBe(grpc.status.INTERNAL);
  });

  it("UNAVAILABLE while the service shuts down; the job in flight still finishes", async () => {
    const closing = await startTestApp({ backends: [{ name: "echo", kind: "echo" }] });
    const c = grpcJsClient(closing.server.port);
    try {
      const call = (fields: Parameters<typeof create<typeof SubmitRequestSchema>>[1]) =>
        grpcUnary<SubmitResponse>(c, "submit", create(SubmitRequestSchema, fields));
      const inFlight = statusOf(call({ backend: "echo", metadata: { delay_ms: "300" } }));
      await expect.poll(() => closing.dispatcher.snapshot()[0]!.inflight).toBe(1);
      const closed = closing.close();
      const s = await statusOf(call({ backend: "echo" }));
      expect(s.code).toBe(grpc.status.UNAVAILABLE);
      expect((await inFlight).code).toBe(grpc.status.OK);
      await closed;
    } finally {
      c.close();
    }
  });
});
