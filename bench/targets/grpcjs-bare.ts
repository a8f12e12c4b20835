// Target (b): a bare @grpc/grpc-js server on the same proto (messages coded by
// protobuf-es), with a no-op Submit that answers with the request's payload.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { SubmitRequestSchema, SubmitResponseSchema, type SubmitRequest, type SubmitResponse } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { reportReady } from "./ipc.js";

const service: grpc.ServiceDefinition = {
  submit: {
    path: "/dispatcher.v1.DispatcherService/Submit",
    requestStream: false,
    responseStream: false,
    requestDeserialize: (b: Buffer) => fromBinary(SubmitRequestSchema, b),
    requestSerialize: (m: SubmitRequest) => Buffer.from(toBinary(SubmitRequestSchema, m)),
    responseSerialize: (m: SubmitResponse) => Buffer.from(toBinary(SubmitResponseSchema, m)),
    responseDeserialize: (b: Buffer) => fromBinary(SubmitResponseSchema, b),
  },
};

const server = new grpc.Server();
server.addService(service, {
  submit: (call: grpc.ServerUnaryCall<SubmitRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
    callback(null, create(SubmitResponseSchema, { payload: call.request.payload }));
  },
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  reportReady(port, async () => server.forceShutdown());
});
