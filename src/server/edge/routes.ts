import type { DescMethod, DescMethodUnary, DescService } from "@bufbuild/protobuf";
import { createConnectRouter, type ConnectRouter, type ConnectRouterOptions, type HandlerContext } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";

/** A unary implementation as connect calls it: the fast path calls the very same function. */
export type UnaryImpl = (req: unknown, ctx: HandlerContext) => unknown;

export interface EdgeRoute {
  /** connect's handler for every protocol and every method kind. */
  readonly handler: UniversalHandler;
  /** Set for unary methods: what the gRPC fast path calls instead of connect's pipeline. */
  readonly unary?: { readonly method: DescMethodUnary; readonly impl: UnaryImpl };
}

/**
 * Builds connect's router and, beside it, a table from request path to its
 * UniversalHandler and, for unary methods, the implementation itself, taken
 * as the routes register it (connect's handlers do not expose it).
 */
export function buildRoutes(options: ConnectRouterOptions, routes: (router: ConnectRouter) => void): Map<string, EdgeRoute> {
  const router = createConnectRouter(options);
  const unary = new Map<DescMethod, UnaryImpl>();
  const recorder: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service: DescService, implementation: object, opts) {
      for (const m of service.methods) {
        const fn = (implementation as Record<string, unknown>)[m.localName];
        if (m.methodKind === "unary" && typeof fn === "function") unary.set(m, (fn as UnaryImpl).bind(implementation));
      }
      router.service(service, implementation, opts);
      return recorder;
    },
    rpc(method: DescMethod, impl: unknown, opts) {
      if (method.methodKind === "unary" && typeof impl === "function") unary.set(method, impl as UnaryImpl);
      router.rpc(method, impl as never, opts);
      return recorder;
    },
  } as ConnectRouter;
  routes(recorder);
  const table = new Map<string, EdgeRoute>();
  for (const handler of router.handlers) {
    const impl = unary.get(handler.method);
    table.set(handler.requestPath, {
      handler,
      unary: impl === undefined || !handler.protocolNames.includes("grpc") ? undefined : { method: handler.method as DescMethodUnary, impl },
    });
  }
  return table;
}
