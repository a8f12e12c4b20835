#!/usr/bin/env node
// Dependency-free gRPC health probe, for Docker HEALTHCHECK and Kubernetes exec probes.
// Calls grpc.health.v1.Health/Check over HTTP/2 and exits 0 only when the answer is SERVING.
// Environment: PROBE_HOST (default 127.0.0.1), PORT (default 8080), PROBE_SERVICE (default "": the server),
// PROBE_TLS=1 for a TLS server (certificate not verified: the probe runs beside the server),
// PROBE_TIMEOUT_MS (default 3000).
import * as http2 from "node:http2";

const host = process.env.PROBE_HOST || "127.0.0.1";
const port = Number(process.env.PORT || 8080);
const service = Buffer.from(process.env.PROBE_SERVICE || "", "utf8");
const tls = process.env.PROBE_TLS === "1";
const timeoutMs = Number(process.env.PROBE_TIMEOUT_MS || 3000);

// HealthCheckRequest { string service = 1; } in protobuf, in a gRPC length-prefixed frame.
// Services names are short: one byte of length suffices below 128.
const message = service.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, service.length]), service]);
const frame = Buffer.alloc(5 + message.length);
frame.writeUInt32BE(message.length, 1);
message.copy(frame, 5);

function done(code, why) {
  if (code !== 0) process.stderr.write(`unhealthy: ${why}\n`);
  process.exit(code);
}

setTimeout(() => done(1, `no answer within ${timeoutMs} ms`), timeoutMs).unref();
const session = http2.connect(`${tls ? "https" : "http"}://${host}:${port}`, { rejectUnauthorized: false });
session.on("error", (e) => done(1, e.message));
const req = session.request({
  ":method": "POST",
  ":path": "/grpc.health.v1.Health/Check",
  "content-type": "application/grpc",
  te: "trailers",
  "grpc-timeout": `${timeoutMs}m`,
});
const chunks = [];
let status = "";
req.on("data", (c) => chunks.push(c));
req.on("trailers", (t) => (status = String(t["grpc-status"] ?? "")));
req.on("response", (h) => {
  if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
});
req.on("error", (e) => done(1, e.message));
req.on("end", () => {
  session.close();
  if (status !== "0") return done(1, `grpc-status ${status || "missing"}`);
  const body = Buffer.concat(chunks).subarray(5);
  // HealthCheckResponse { ServingStatus status = 1; }: SERVING is 1, encoded 0x08 0x01.
  const serving = body.length >= 2 && body[0] === 0x08 && body[1] === 0x01;
  done(serving ? 0 : 1, serving ? "" : "status is not SERVING");
});
req.end(frame);
