import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  DispatcherService,
  SubmitRequestSchema,
  SubmitResponseSchema,
  SubmitStreamResponseSchema,
  WorkerMetricsRequestSchema,
  WorkerMetricsResponseSchema,
} from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";

export type Protocol = "grpc" | "connect" | "grpc-web";

/** A connect-node client over h2c speaking the given protocol. */
export function connectClient(port: number, protocol: Protocol = "connect"): Client<typeof DispatcherService> {
  const baseUrl = `http://127.0.0.1:${port}`;
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl })
      : protocol === "grpc-web"
        ? createGrpcWebTransport({ baseUrl, httpVersion: "2" })
        : createConnectTransport({ baseUrl, httpVersion: "2" });
  return createClient(DispatcherService, transport);
}

function method<I extends DescMessage, O extends DescMessage>(path: string, i: I, o: O, responseStream: boolean) {
  return {
    path,
    requestStream: false,
    responseStream,
    requestSerialize: (m: MessageShape<I>) => Buffer.from(toBinary(i, m)),
    requestDeserialize: (b: Buffer) => fromBinary(i, b),
    responseSerialize: (m: MessageShape<O>) => Buffer.from(toBinary(o, m)),
    responseDeserialize: (b: Buffer) => fromBinary(o, b),
  };
}

const grpcDefinition = {
  submit: method("/dispatcher.v1.DispatcherService/Submit", SubmitRequestSchema, SubmitResponseSchema, false),
  workerMetrics: method("/dispatcher.v1.DispatcherService/WorkerMetrics", WorkerMetricsRequestSchema, WorkerMetricsResponseSchema, true),
  submitStream: method("/dispatcher.v1.DispatcherService/SubmitStream", SubmitRequestSchema, SubmitStreamResponseSchema, true),
};

const GrpcClient = grpc.makeGenericClientConstructor(grpcDefinition as unknown as grpc.ServiceDefinition, "DispatcherService");

/** A @grpc/grpc-js client, as a user in another process would build one; messages encoded by protobuf-es. */
export function grpcJsClient(port: number): grpc.Client & Record<string, Function> {
  return new GrpcClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
}

/** Unary call through a grpc-js client, as a promise of the response or the ServiceError. */
export function grpcUnary<Res>(
  client: grpc.Client & Record<string, Function>,
  name: string,
  request: unknown,
  options: { deadline?: Date; metadata?: grpc.Metadata } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    client[name]!(request, options.metadata ?? new grpc.Metadata(), { deadline: options.deadline }, (err: grpc.ServiceError | null, res: Res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

const healthDefinition = {
  check: method("/grpc.health.v1.Health/Check", HealthCheckRequestSchema, HealthCheckResponseSchema, false),
  watch: method("/grpc.health.v1.Health/Watch", HealthCheckRequestSchema, HealthCheckResponseSchema, true),
};

const HealthClient = grpc.makeGenericClientConstructor(healthDefinition as unknown as grpc.ServiceDefinition, "Health");

/** A grpc-js client of grpc.health.v1.Health, as Kubernetes' probe or a load balancer would call it. */
export function grpcJsHealthClient(port: number): grpc.Client & Record<string, Function> {
  return new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
}
