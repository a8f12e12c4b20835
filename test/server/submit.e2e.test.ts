import { create, fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SubmitRequestSchema, type SubmitResponse } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient, grpcJsClient, grpcUnary, type Protocol } from "../helpers/clients.js";

let app: App;

beforeAll(async () => {
  app = await startTestApp({ backends: [{ name: "echo", kind: "echo", workers: 2 }] });
});
afterAll(async () => {
  await app.close();
});

describe("Submit end to end", () => {
  for (const protocol of ["connect", "grpc", "grpc-web"] as Protocol[]) {
    it(`echoes a JSON payload over ${protocol}`, async () => {
      const client = connectClient(app.server.port, protocol);
      const res = await client.submit({
        backend: "echo",
        sessionId: `s-${protocol}`,
        payload: { case: "json", value: fromJson(ValueSchema, { hi: [1, "two", null] }) },
      });
      expect(res.payload.case).toBe("json");
      expect(toJson(ValueSchema, res.payload.value as never)).toEqual({ hi: [1, "two", null] });
      expect(res.workerId).toMatch(/^echo\/[01]$/);
      expect(res.affinity).toBe("miss");
      expect(res.attempts).toBe(1);
      const again = await client.submit({ backend: "echo", sessionId: `s-${protocol}`, payload: { case: "binary", value: new Uint8Array([1, 2]) } });
      expect(again.workerId).toBe(res.workerId);
      expect(again.affinityHit).toBe(true);
      expect(again.payload).toEqual({ case: "binary", value: new Uint8Array([1, 2]) });
    });
  }

  it("serves a grpc-js client, binary and JSON", async () => {
    const client = grpcJsClient(app.server.port);
    try {
      const bin = await grpcUnary<SubmitResponse>(
        client,
        "submit",
        create(SubmitRequestSchema, { backend: "echo", payload: { case: "binary", value: new Uint8Array([9, 8, 7]) } }),
      );
      expect(bin.payload.case).toBe("binary");
      expect([...(bin.payload.value as Uint8Array)]).toEqual([9, 8, 7]);
      expect(bin.affinity).toBe("none");
      const json = await grpcUnary<SubmitResponse>(
        client,
        "submit",
        create(SubmitRequestSchema, { backend: "echo", payload: { case: "json", value: fromJson(ValueSchema, "text") } }),
      );
      expect(toJson(ValueSchema, json.payload.value as never)).toBe("text");
      const err = await grpcUnary(client, "submit", create(SubmitRequestSchema, { backend: "missing" })).catch((e: grpc.ServiceError) => e);
      expect((err as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
      expect((err as grpc.ServiceError).details).toContain("echo");
    } finally {
      client.close();
    }
  });
});
