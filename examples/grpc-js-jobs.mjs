// Background jobs from @grpc/grpc-js: Enqueue, then WatchJob until the job ends.
// Usage: node examples/grpc-js-jobs.mjs [host:port]   (default 127.0.0.1:8080)
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const definition = protoLoader.loadSync("proto/dispatcher/v1/dispatcher.proto", { keepCase: true, defaults: true, oneofs: true, enums: String });
const { dispatcher } = grpc.loadPackageDefinition(definition);
const client = new dispatcher.v1.DispatcherService(process.argv[2] ?? "127.0.0.1:8080", grpc.credentials.createInsecure());

const request = { backend: "echo", json: { structValue: { fields: { prompt: { stringValue: "hello" } } } } };
client.Enqueue({ request, idempotency_key: "report-2026-11" }, (err, res) => {
  if (err) {
    console.error(`failed: ${grpc.status[err.code]}: ${err.details}`);
    process.exit(1);
  }
  // Each event: a state (JOB_STATE_QUEUED, …_RUNNING, …_SUCCEEDED) or a chunk; the last carries the job.
  // To resume after a dropped stream, pass the last event_id seen as after_event_id.
  const events = client.WatchJob({ job_id: res.job_id, after_event_id: "" });
  const seen = [];
  events.on("data", (e) => {
    seen.push(e.event === "state" ? e.state : e.event);
    if (e.job) console.log(JSON.stringify({ job_id: res.job_id, created: res.created, events: seen, state: e.job.state, worker_id: e.job.worker_id }));
  });
  events.on("error", (e) => {
    console.error(`watch failed: ${grpc.status[e.code]}: ${e.details}`);
    process.exit(1);
  });
  events.on("end", () => client.close());
});
