import type * as http from "node:http";
import type * as http2 from "node:http2";
import { Code, ConnectError, createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { ByteBudget } from "./edge/budget.js";
import { connectionKey } from "./edge/connection.js";
import { prescanned } from "./edge/prescan.js";
import { buildRoutes, type EdgeRoute } from "./edge/routes.js";
import { decodeTextRequest, encodeTextResponse } from "./grpc-web-text.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface NodeDirectOptions {
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  readMaxBytes: number;
  prechecks: ReadonlyMap<string, (bytes: Uint8Array) => void> | undefined;
  json: { maxNodes: number; maxDepth: number };
  budget: ByteBudget;
  /** connectNodeAdapter's: the HTTP/2 stream (frame-sink.ts) and the connection. */
  contextValues: (req: NodeRequest) => ContextValues;
}

/**
 * HTTP/1.1 (and the compat front end): calls with a body, served by
 * connect's handlers directly rather than through connectNodeAdapter, so
 * that the body counts against the server's decode budget as it arrives,
 * the methods whose messages are checked before decode are (edge/prescan.ts),
 * and gRPC-Web text mode is translated (grpc-web-text.ts).
 */
export function createNodeDirect(o: NodeDirectOptions) {
  // Built on first use: most deployments never see a call that needs it.
  let routes: Map<string, EdgeRoute> | undefined;

  function serve(req: NodeRequest, res: NodeResponse, path: string, text: boolean): void {
    routes ??= buildRoutes({ interceptors: o.interceptors, readMaxBytes: o.readMaxBytes, acceptCompression: [compressionGzip, compressionBrotli] }, o.routes);
    const route = routes.get(path);
    if (route === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    const nodeRes = res as unknown as Parameters<typeof universalResponseToNodeResponse>[1];
    // In text mode without the HTTP/2 stream: frames written straight to it (frame-sink.ts) would skip the translation.
    const values = text ? createContextValues() : o.contextValues(req);
    values.set(connectionKey, "stream" in req ? req.stream.session : req.socket);
    let ureq = universalRequestFromNodeRequest(req, nodeRes, undefined, values);
    let body = counted(req, ureq.body as AsyncIterable<Uint8Array>, o.budget);
    const check = o.prechecks?.get(path);
    if (check !== undefined) {
      const header = (name: string) => one(req.headers[name]);
      body = prescanned(body, header("content-type") ?? "", header, { binary: check, json: o.json }, o.readMaxBytes);
    }
    ureq = { ...ureq, body };
    route.handler(text ? decodeTextRequest(ureq) : ureq).then(
      (ures) => universalResponseToNodeResponse(text ? encodeTextResponse(ures) : ures, nodeRes),
      () => res.destroy(),
    ).catch(() => res.destroy());
  }

  return { serve };
}

/**
 * The request's body, its bytes counted against the server's decode budget
 * as they arrive and given back once connect has parsed them (or the request
 * is gone), as the edge's HTTP/2 streams count theirs. A chunk that does not
 * fit fails the body: connect answers RESOURCE_EXHAUSTED in the call's own
 * protocol, and the rest of the body is drained unread.
 */
async function* counted(req: NodeRequest, body: AsyncIterable<Uint8Array>, budget: ByteBudget): AsyncGenerator<Uint8Array> {
  let held = 0;
  let given = false;
  const give = () => {
    if (given) return;
    given = true;
    const n = held;
    // connect parses a unary message right after the last chunk: give the bytes back once it has.
    setImmediate(() => budget.give(n));
  };
  // The request's close comes however it ends, also when connect stops reading it halfway.
  req.once("close", give);
  try {
    for await (const chunk of body) {
      if (given) return;
      if (!budget.take(chunk.length)) {
        throw new ConnectError(`server busy: ${budget.used} bytes of requests being read, the server's limit`, Code.ResourceExhausted);
      }
      held += chunk.length;
      yield chunk;
    }
  } finally {
    req.off("close", give);
    give();
  }
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}
