// Calls the dispatcher from @grpc/grpc-js, loading the proto at run time.
// Usage: node examples/grpc-js-client.mjs [host:port]   (default 127.0.0.1:8080)
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const definition = protoLoader.loadSync("proto/dispatcher/v1/dispatcher.proto", {
  keepCase: true, // field names as in the proto: session_id, worker_id
  defaults: true,
  oneofs: true,
});
const { dispatcher } = grpc.loadPackageDefinition(definition);
const client = new dispatcher.v1.DispatcherService(process.argv[2] ?? "127.0.0.1:8080", grpc.credentials.createInsecure());

// google.protobuf.Value is a message here; proto-loader's bundled well-known
// types spell its fields in camelCase: {structValue: {fields: {...}}}, {stringValue: "..."}, …
const request = {
  backend: "echo",
  session_id: "user-42",
  json: { structValue: { fields: { prompt: { stringValue: "hello" } } } },
  metadata: { delay_ms: "50" },
};

client.Submit(request, { deadline: Date.now() + 5_000 }, (err, res) => {
  if (err) {
    console.error(`failed: ${grpc.status[err.code]}: ${err.details}`);
    process.exitCode = 1;
  } else {
    console.log(JSON.stringify({ worker_id: res.worker_id, affinity: res.affinity, json: res.json }));
  }
  client.close();
});
