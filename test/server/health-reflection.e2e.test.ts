import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as Status, type HealthCheckResponse } from "../../gen/grpc/health/v1/health_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp } from "../helpers/app.js";
import { bufCurl } from "../helpers/buf.js";
import { grpcJsHealthClient, grpcUnary } from "../helpers/clients.js";

const backends = [{ name: "echo", kind: "echo", workers: 1 }];
let app: App;

beforeAll(async () => {
  app = await startTestApp({ backends });
});
afterAll(async () => {
  await app.close();
});

const check = (port: number, service: string) => {
  const client = grpcJsHealthClient(port);
  return grpcUnary<HealthCheckResponse>(client, "check", create(HealthCheckRequestSchema, { service })).finally(() => client.close());
};

describe("gRPC health through grpc-js", () => {
  it("reports the server and each service SERVING, and NOT_FOUND for an unknown service", async () => {
    expect((await check(app.server.port, "")).status).toBe(Status.SERVING);
    expect((await check(app.server.port, "dispatcher.v1.DispatcherService")).status).toBe(Status.SERVING);
    const err = (await check(app.server.port, "nope.Service").catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.NOT_FOUND);
  });

  it("Watch streams the change to NOT_SERVING as soon as draining starts, then ends with UNAVAILABLE", async () => {
    const own = await startTestApp({ backends, server: { shutdown_grace: "1s" } });
    const client = grpcJsHealthClient(own.server.port);
    const seen: Status[] = [];
    const call = client["watch"]!(create(HealthCheckRequestSchema, { service: "" })) as grpc.ClientReadableStream<HealthCheckResponse>;
    const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
      call.on("error", (e: grpc.ServiceError) => resolve(e));
      call.on("end", () => resolve(undefined));
    });
    const first = new Promise<void>((resolve) => call.once("data", () => resolve()));
    call.on("data", (m: HealthCheckResponse) => seen.push(m.status));
    await first;
    expect(seen).toEqual([Status.SERVING]);
    const closed = own.close();
    const err = await ended;
    await closed;
    client.close();
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);
  });
});

describe("server reflection through buf curl (no --schema)", () => {
  const url = () => `http://127.0.0.1:${app.server.port}`;

  it("lists services and methods", async () => {
    const services = await bufCurl(["--http2-prior-knowledge", "--list-services", url()]);
    expect(services.stderr).toBe("");
    expect(services.stdout.trim().split("\n").sort()).toEqual([
      "dispatcher.v1.DispatcherService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
    const methods = await bufCurl(["--http2-prior-knowledge", "--list-methods", url()]);
    expect(methods.stdout).toContain("dispatcher.v1.DispatcherService/Submit");
    expect(methods.stdout).toContain("dispatcher.v1.DispatcherService/WorkerMetrics");
    expect(methods.stdout).toContain("grpc.health.v1.Health/Watch");
  });

  it("calls Submit over gRPC and Connect with the schema from reflection", async () => {
    for (const protocol of ["grpc", "connect"]) {
      const r = await bufCurl([
        "--http2-prior-knowledge", "--protocol", protocol,
        "-d", '{"backend":"echo","json":{"hi":[1,"two"]}}',
        `${url()}/dispatcher.v1.DispatcherService/Submit`,
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as { json: unknown; workerId: string };
      expect(out.json).toEqual({ hi: [1, "two"] });
      expect(out.workerId).toBe("echo/0");
    }
  });

  it("serves the v1alpha protocol and the proto doc comments", async () => {
    const r = await bufCurl(["--http2-prior-knowledge", "--reflect-protocol", "grpc-v1alpha", "--list-methods", url()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("dispatcher.v1.DispatcherService/Submit");
    const { descriptorIndex } = await import("../../src/server/reflection.js");
    const { fromBinary } = await import("@bufbuild/protobuf");
    const { FileDescriptorProtoSchema } = await import("@bufbuild/protobuf/wkt");
    const file = fromBinary(FileDescriptorProtoSchema, descriptorIndex().files.get("dispatcher/v1/dispatcher.proto")!.bytes);
    const comments = file.sourceCodeInfo?.location.map((l) => l.leadingComments).join("") ?? "";
    expect(comments.length).toBeGreaterThan(100);
  });

  it("can be switched off", async () => {
    const off = await startTestApp({ backends, server: { reflection: false } });
    try {
      const r = await bufCurl(["--http2-prior-knowledge", "--list-services", `http://127.0.0.1:${off.server.port}`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/unimplemented|not implemented|reflection/i);
    } finally {
      await off.close();
    }
  });
});
