import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DispatcherService, SubmitRequestSchema, type SubmitResponse } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { connectClient, grpcJsClient, type Protocol } from "../helpers/clients.js";

let app: App;

beforeAll(async () => {
  const config = validateConfig({
    server: { port: 0, shutdown_grace: "2s" },
    cluster: { replica_id: "replica-a" },
    backends: [{ name: "echo", kind: "echo", workers: 4 }],
  });
  app = await startApp(config);
});
afterAll(async () => {
  await app.close();
});

/** A grpc-js unary call (the edge's fast path) with metadata, resolving with the response and the response headers. */
function grpcJsSubmit(session: string, sessionId = ""): Promise<{ res: SubmitResponse; headers: grpc.Metadata }> {
  const client = grpcJsClient(app.server.port);
  const md = new grpc.Metadata();
  md.set("dispatcher-session", session);
  return new Promise((resolve, reject) => {
    let headers = new grpc.Metadata();
    const call = client["submit"]!(create(SubmitRequestSchema, { backend: "echo", sessionId }), md, (err: grpc.ServiceError | null, res: SubmitResponse) => {
      client.close();
      if (err) reject(err);
      else resolve({ res, headers });
    }) as grpc.ClientUnaryCall;
    call.on("metadata", (m: grpc.Metadata) => (headers = m));
  });
}

describe("the dispatcher-session header", () => {
  it("is the session of a gRPC call on the fast path, and the answer names the replica", async () => {
    const first = await grpcJsSubmit("user-1");
    expect(first.res.affinity).toBe("miss");
    expect(first.headers.get("dispatcher-replica")).toEqual(["replica-a"]);
    for (let i = 0; i < 5; i++) {
      const again = await grpcJsSubmit("user-1");
      expect([again.res.workerId, again.res.affinity]).toEqual([first.res.workerId, "hit"]);
    }
  });

  for (const protocol of ["connect", "grpc", "grpc-web"] as Protocol[]) {
    it(`is the session over ${protocol} (HTTP/2), Submit and SubmitStream alike`, async () => {
      const client = connectClient(app.server.port, protocol);
      const headers = { "dispatcher-session": `s-${protocol}` };
      let replica: string | null = null;
      const first = await client.submit({ backend: "echo" }, { headers, onHeader: (h) => (replica = h.get("dispatcher-replica")) });
      expect(first.affinity).toBe("miss");
      expect(replica).toBe("replica-a");
      const again = await client.submit({ backend: "echo" }, { headers });
      expect([again.workerId, again.affinity]).toEqual([first.workerId, "hit"]);
      const started = [];
      for await (const m of client.submitStream({ backend: "echo" }, { headers })) if (m.event.case === "started") started.push(m.event.value);
      expect(started.map((s) => [s.workerId, s.affinity])).toEqual([[first.workerId, "hit"]]);
    });
  }

  it("is the session over HTTP/1.1 (Connect)", async () => {
    const client = createClient(DispatcherService, createConnectTransport({ baseUrl: `http://127.0.0.1:${app.server.port}`, httpVersion: "1.1" }));
    const headers = { "dispatcher-session": "s-http1" };
    const first = await client.submit({ backend: "echo" }, { headers });
    const again = await client.submit({ backend: "echo" }, { headers });
    expect([first.affinity, again.affinity, again.workerId]).toEqual(["miss", "hit", first.workerId]);
  });

  it("may repeat session_id; the same session either way", async () => {
    const client = connectClient(app.server.port, "grpc");
    const first = await client.submit({ backend: "echo", sessionId: "both" });
    const again = await client.submit({ backend: "echo", sessionId: "both" }, { headers: { "dispatcher-session": "both" } });
    expect([again.workerId, again.affinity]).toEqual([first.workerId, "hit"]);
  });

  for (const protocol of ["grpc", "connect"] as Protocol[]) {
    it(`differing from session_id is INVALID_ARGUMENT naming both (${protocol})`, async () => {
      const client = connectClient(app.server.port, protocol);
      const err = await client.submit({ backend: "echo", sessionId: "a" }, { headers: { "dispatcher-session": "b" } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
      expect((err as ConnectError).rawMessage).toBe(
        `session_id "a" and the dispatcher-session header "b" differ: send the session in one, or the same in both`,
      );
    });

    it(`longer than session_id may be is INVALID_ARGUMENT (${protocol})`, async () => {
      const client = connectClient(app.server.port, protocol);
      const err = await client.submit({ backend: "echo" }, { headers: { "dispatcher-session": "x".repeat(257) } }).catch((e: unknown) => e);
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
      expect((err as ConnectError).rawMessage).toBe("dispatcher-session header: 257 characters, over the limit of 256");
    });
  }

  it("is not needed: without it and without session_id a call has no session", async () => {
    const client = connectClient(app.server.port, "grpc");
    const res = await client.submit({ backend: "echo" });
    expect(res.affinity).toBe("none");
  });
});
