import * as http from "node:http";
import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";

const backends = [{ name: "echo", kind: "echo", workers: 1 }];

describe("server close()", () => {
  it("ends metrics streams with UNAVAILABLE, sends GOAWAY to HTTP/2 clients and closes idle HTTP/1.1 connections promptly", async () => {
    const app = await startTestApp({ backends, server: { shutdown_grace: "1s" } });
    const port = app.server.port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const goaway = new Promise<void>((resolve) => session.once("goaway", () => resolve()));
    session.on("error", () => undefined);
    await new Promise<void>((resolve) => session.once("remoteSettings", () => resolve()));
    // A keep-alive HTTP/1.1 connection left idle after one call.
    const agent = new http.Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ port, host: "127.0.0.1", method: "POST", path: "/dispatcher.v1.DispatcherService/Submit", agent,
        headers: { "content-type": "application/json" } }, (res) => res.resume().on("end", () => resolve()));
      req.on("error", reject);
      req.end(JSON.stringify({ backend: "echo" }));
    });
    const metrics = connectClient(port, "grpc").workerMetrics({})[Symbol.asyncIterator]();
    await metrics.next();
    const metricsEnd = (async () => {
      for (;;) await metrics.next();
    })().catch((e: unknown) => ConnectError.from(e).code);
    const started = Date.now();
    await app.close();
    expect(Date.now() - started).toBeLessThan(2_000);
    await goaway;
    expect(await metricsEnd).toBe(Code.Unavailable);
    session.destroy();
    agent.destroy();
  });
});
