import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";

export interface ScrapeEndpoint {
  readonly reader: PrometheusExporter;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The Prometheus scrape endpoint: GET /metrics over HTTP/1.1 on its own port
 * (the gRPC port is h2c only, PLATFORM.md). The exporter's built-in server is
 * not used because it cannot report the port it bound when asked for port 0.
 */
export async function listenPrometheus(host: string, port: number): Promise<ScrapeEndpoint> {
  // One instrumentation scope ("dispatcher"): an otel_scope_name label on every series would say nothing.
  const reader = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics" && (req.method === "GET" || req.method === "HEAD")) {
      reader.getMetricsRequestHandler(req, res);
    } else {
      res.statusCode = 404;
      res.end("not found: metrics are served at GET /metrics\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    reader,
    port: (server.address() as AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
