import type { DescMethod, DescMethodServerStreaming, DescMethodUnary, DescService } from "@bufbuild/protobuf";
import { createConnectRouter, type ConnectRouter, type ConnectRouterOptions, type HandlerContext } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";

/** A unary implementation as connect calls it: the fast path calls the very same function. */
export type UnaryImpl = (req: unknown, ctx: HandlerContext) => unknown;
/** A server-streaming implementation as connect calls it: one request, an async iterable of responses. */
export type ServerStreamImpl = (req: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;

export interface EdgeRoute {
  /** connect's handler for every protocol and every method kind. */
  readonly handler: UniversalHandler;
  /** Set for unary methods: what the gRPC fast path calls instead of connect's pipeline. */
  readonly unary?: { readonly method: DescMethodUnary; readonly impl: UnaryImpl };
  /** Set for server-streaming methods: what the gRPC streaming fast path calls. */
  readonly serverStream?: { readonly method: DescMethodServerStreaming; readonly impl: ServerStreamImpl };
}

/**
 * How every request is decoded, on every path (connect's handlers, the fast
 * path): unknown fields are skipped, not kept. protobuf-es keeps each as an
 * object with a view of the message, and a 4 MiB request of two-byte unknown
 * fields held ~300 MB decoded, past every payload limit.
 */
export const READ_OPTIONS = { readUnknownFields: false } as const;

/**
 * Builds connect's router and, beside it, a table from request path to its
 * UniversalHandler and, for unary and server-streaming methods, the implementation itself, taken
 * as the routes register it (connect's handlers do not expose it).
 */
export function buildRoutes(options: ConnectRouterOptions, routes: (router: ConnectRouter) => void): Map<string, EdgeRoute> {
  const router = createConnectRouter(options);
  const impls = new Map<DescMethod, UnaryImpl>();
  const fastKind = (m: DescMethod) => m.methodKind === "unary" || m.methodKind === "server_streaming";
  const recorder: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service: DescService, implementation: object, opts) {
      for (const m of service.methods) {
        const fn = (implementation as Record<string, unknown>)[m.localName];
        if (fastKind(m) && typeof fn === "function") impls.set(m, (fn as UnaryImpl).bind(implementation));
      }
      router.service(service, implementation, opts);
      return recorder;
    },
    rpc(method: DescMethod, impl: unknown, opts) {
      if (fastKind(method) && typeof impl === "function") impls.set(method, impl as UnaryImpl);
      router.rpc(method, impl as never, opts);
      return recorder;
    },
  } as ConnectRouter;
  routes(recorder);
  const table = new Map<string, EdgeRoute>();
  for (const handler of router.handlers) {
    const impl = impls.get(handler.method);
    const fast = impl !== undefined && handler.protocolNames.includes("grpc");
    const m = handler.method;
    table.set(handler.requestPath, {
      handler,
      unary: fast && m.methodKind === "unary" ? { method: m as DescMethodUnary, impl } : undefined,
      serverStream: fast && m.methodKind === "server_streaming" ? { method: m as DescMethodServerStreaming, impl: impl as ServerStreamImpl } : undefined,
    });
  }
  return table;
}
