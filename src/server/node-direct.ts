import type * as http from "node:http";
import type * as http2 from "node:http2";
import { createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { givingBack, HeldBytes, type ByteBudget } from "./edge/budget.js";
import { connectionKey } from "./edge/connection.js";
import { joined } from "./edge/context.js";
import { prescanned } from "./edge/prescan.js";
import { buildRoutes, READ_OPTIONS, type EdgeRoute } from "./edge/routes.js";
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
    routes ??= buildRoutes({ interceptors: o.interceptors, readMaxBytes: o.readMaxBytes, acceptCompression: [compressionGzip, compressionBrotli], binaryOptions: READ_OPTIONS }, o.routes);
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
    const held = new HeldBytes(o.budget);
    // The request's close comes however it ends, also when connect stops reading it halfway.
    req.once("close", () => held.give());
    const check = o.prechecks?.get(path);
    let body = counted(ureq.body as AsyncIterable<Uint8Array>, held, o.budget, check === undefined);
    if (check !== undefined) {
      const header = (name: string) => joined(req.headers[name]);
      // Its bytes stay counted until connect has the checked message, not only until they are read.
      // The request's close can come before the check is done (once its body is read): a decompressed copy is
      // held on its own, until connect has the checked message.
      const copy = new HeldBytes(o.budget);
      body = givingBack(givingBack(prescanned(body, header("content-type") ?? "", header, { binary: check, json: o.json }, o.readMaxBytes, (n) => copy.hold(n)), held), copy);
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
 * The request's body, its bytes counted as they arrive, as the edge's HTTP/2
 * streams count theirs. A chunk that does not fit fails the body: connect
 * answers RESOURCE_EXHAUSTED in the call's own protocol, and the rest of the
 * body is drained unread. `giveAtEnd` false leaves the giving back to the
 * caller (givingBack).
 */
async function* counted(body: AsyncIterable<Uint8Array>, held: HeldBytes, budget: ByteBudget, giveAtEnd: boolean): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of body) {
      if (held.released) return;
      if (!held.take(chunk.length)) throw budget.busy();
      yield chunk;
    }
  } finally {
    if (giveAtEnd) held.give();
  }
}
