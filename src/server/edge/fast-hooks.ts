/**
 * Interceptors as cheap hooks for the gRPC fast path. An interceptor that
 * carries a FastHook under `fastHook` (auth, telemetry) is run on the fast
 * path through it instead of through connect's async interceptor chain: no
 * request or response objects, no Headers copy, no promise per layer. When
 * any interceptor has no hook, the fast path runs the chain itself.
 */
export const fastHook: unique symbol = Symbol.for("dispatcher.edge.fastHook");

export interface FastCallInfo {
  /** e.g. "dispatcher.v1.DispatcherService". */
  readonly service: string;
  /** e.g. "Submit". */
  readonly method: string;
  /** A request header, lower-case name; multiple values joined with ", ". */
  header(name: string): string | undefined;
  /** Request header names (no pseudo-headers). */
  headerNames(): string[];
}

export interface FastHookCall {
  /**
   * The call's trace context, handed to the implementation (traceParentOf in
   * src/server/trace-parent.ts) rather than made active around it.
   */
  traceParent?: unknown;
  /** The call's gRPC status (0 = OK) once answered; CANCELLED when the client went away. */
  end(code: number, error?: unknown): void;
}

export interface FastHook {
  /** Before the body is decoded: may throw a ConnectError to refuse the call. */
  start(call: FastCallInfo): FastHookCall | undefined;
}

export type WithFastHook = { [fastHook]?: FastHook };
