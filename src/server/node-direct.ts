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
 * HTTP/1.1 (and the compat front end) beside connectNodeAdapter: the byte
 * budget every request body counts against, and the calls served by
 * connect's handlers directly rather than through the adapter — gRPC-Web
 * text mode (translated, grpc-web-text.ts), the methods whose messages are
 * checked before decode (edge/prescan.ts), and refusals, answered in the
 * call's own protocol before a byte of its body is read.
 */
export function createNodeDirect(o: NodeDirectOptions) {
  // Built on first use: most deployments never see a call that needs it.
  let routes: Map<string, EdgeRoute> | undefined;

  /**
   * A request's body counts against the server's decode budget from its
   * headers until it has been read (connect decodes it then), as the edge's
   * HTTP/2 streams count theirs: its declared length, or read_max_bytes when
   * it declares none (chunked). One that does not fit gets its refusal.
   */
  function reserveBody(req: NodeRequest, res: NodeResponse): ConnectError | undefined {
    if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") return undefined;
    const declared = Number(req.headers["content-length"] ?? NaN);
    const n = Number.isInteger(declared) && declared >= 0 ? Math.min(declared, o.readMaxBytes + 1024) : o.readMaxBytes;
    if (n === 0) return undefined;
    if (!o.budget.take(n)) {
      return new ConnectError(`server busy: ${o.budget.used} bytes of requests being read, the server's limit`, Code.ResourceExhausted);
    }
    let held = true;
    const give = () => {
      if (!held) return;
      held = false;
      // connect parses the message right after the body's last byte: give the bytes back once it has.
      setImmediate(() => o.budget.give(n));
    };
    req.once("end", give);
    res.once("close", give);
    return undefined;
  }

  function serve(req: NodeRequest, res: NodeResponse, path: string, text: boolean, refuse: ConnectError | undefined): void {
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
    const check = o.prechecks?.get(path);
    if (refuse !== undefined) ureq = { ...ureq, body: refusing(req, refuse) };
    else if (check !== undefined) {
      const header = (name: string) => one(req.headers[name]);
      const body = ureq.body as AsyncIterable<Uint8Array>;
      ureq = { ...ureq, body: prescanned(body, header("content-type") ?? "", header, { binary: check, json: o.json }, o.readMaxBytes) };
    }
    route.handler(text ? decodeTextRequest(ureq) : ureq).then(
      (ures) => universalResponseToNodeResponse(text ? encodeTextResponse(ures) : ures, nodeRes),
      () => res.destroy(),
    ).catch(() => res.destroy());
  }

  return { reserveBody, serve };
}

/** A body that fails at once (connect answers the error in the call's protocol); what was sent is drained. */
// eslint-disable-next-line require-yield
async function* refusing(req: NodeRequest, e: ConnectError): AsyncGenerator<Uint8Array> {
  req.resume();
  throw e;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}
