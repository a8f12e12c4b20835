import { create } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { echoHandler } from "../../src/backends/echo.js";
import { createDispatcher } from "../../src/core/index.js";
import { fastHook, type WithFastHook } from "../../src/server/edge/fast-hooks.js";
import { startServer, type DispatcherServer } from "../../src/server/index.js";
import { startTelemetry, type Telemetry } from "../../src/telemetry/index.js";
import { grpcJsClient, grpcUnary } from "../helpers/clients.js";
import { SpanRecorder } from "../helpers/spans.js";

// On the gRPC fast path the interceptors run as hooks: every hook started before one refuses the call
// must hear how it ended (telemetry's SERVER span carries the refusal), in reverse order of starting.

const SUBMIT = "dispatcher.v1.DispatcherService/Submit";
const TOKEN = "s3cret-token";
const recorder = new SpanRecorder();
let telemetry: Telemetry;
let server: DispatcherServer;
const heard: string[] = [];

/** A second hook that starts on every call and records how each call ended. */
function recordingHook(): Interceptor {
  const interceptor: Interceptor & WithFastHook = (next) => next;
  interceptor[fastHook] = {
    start: () => ({ end: (code: number) => void heard.push(`recording ${code}`) }),
  };
  return interceptor;
}

/** Telemetry's hook, wrapped to note when it hears the end. */
function noting(inner: Interceptor): Interceptor {
  const hook = (inner as WithFastHook)[fastHook]!;
  const interceptor: Interceptor & WithFastHook = (next) => inner(next);
  interceptor[fastHook] = {
    start(info) {
      const call = hook.start(info);
      if (call === undefined) return undefined;
      return {
        traceParent: call.traceParent,
        end(code, error) {
          heard.push(`telemetry ${code}`);
          call.end(code, error);
        },
      };
    },
  };
  return interceptor;
}

beforeAll(async () => {
  telemetry = await startTelemetry({ env: {}, spanProcessors: [recorder] });
  const dispatcher = createDispatcher({ backends: [{ name: "echo", handler: echoHandler(), workers: 1 }], observer: telemetry.observer });
  // Telemetry first, then the recording hook; the server puts bearer auth after both.
  server = await startServer({ dispatcher, interceptors: [noting(telemetry.interceptors[0]!), recordingHook()], authTokens: [TOKEN] });
});
afterAll(async () => {
  await server.close();
  await telemetry.shutdown();
});
beforeEach(async () => {
  heard.length = 0;
  await recorder.reset();
});

describe("hooks on the fast path", () => {
  it("tell every started hook of a refused call, last started first, and trace the refusal", async () => {
    const client = grpcJsClient(server.port);
    try {
      const err = (await grpcUnary(client, "submit", create(SubmitRequestSchema, { backend: "echo" })).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
      await recorder.ended(SUBMIT);
      expect(heard).toEqual(["recording 16", "telemetry 16"]);
      const [span] = recorder.named(SUBMIT);
      expect(span!.attributes["rpc.grpc.status_code"]).toBe(16);
    } finally {
      client.close();
    }
  });

  it("tell them of an answered call once, with its status", async () => {
    const client = grpcJsClient(server.port);
    try {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${TOKEN}`);
      await grpcUnary(client, "submit", create(SubmitRequestSchema, { backend: "echo" }), { metadata });
      await recorder.ended(SUBMIT);
      expect(heard).toEqual(["recording 0", "telemetry 0"]);
      expect(recorder.named(SUBMIT)[0]!.attributes["rpc.grpc.status_code"]).toBe(0);
      expect(recorder.named("dispatcher.job.run")).toHaveLength(1);
    } finally {
      client.close();
    }
  });
});
