import * as http from "node:http";
import type { AddressInfo } from "node:net";

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Resolves true if the client aborted before the answer was complete. */
  aborted: Promise<boolean>;
  /** The client's port: requests on one keep-alive connection share it. */
  remotePort: number;
}

export type Respond = (req: SeenRequest, res: http.ServerResponse) => void;

export interface TestUpstream {
  readonly url: string;
  readonly requests: SeenRequest[];
  /** Resolves with the n-th request (1-based) once it has arrived. */
  request(n: number): Promise<SeenRequest>;
  respond: Respond;
  close(): Promise<void>;
}

/** A real node:http server on 127.0.0.1, port 0, answering with `respond` once each request body is read. */
export async function startUpstream(respond: Respond): Promise<TestUpstream> {
  const requests: SeenRequest[] = [];
  const waiters = new Map<number, (r: SeenRequest) => void>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const aborted = new Promise<boolean>((resolve) => res.once("close", () => resolve(!res.writableFinished)));
      const seen: SeenRequest = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks), aborted, remotePort: req.socket.remotePort! };
      requests.push(seen);
      waiters.get(requests.length)?.(seen);
      up.respond(seen, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const up: TestUpstream = {
    url: `http://127.0.0.1:${port}`,
    requests,
    respond,
    request(n) {
      if (requests.length >= n) return Promise.resolve(requests[n - 1]!);
      return new Promise((resolve) => waiters.set(n, resolve));
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return up;
}

export function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}
