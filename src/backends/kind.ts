import type { Handler, Payload } from "../core/index.js";
import type { BackendLog } from "./log.js";

// The contract between the registry and the kinds, apart from both so that neither imports the other's module.

/** A backend's handler, and what to release when the dispatcher has closed (connection pools). */
export interface BackendInstance {
  handler: Handler;
  close?: (() => void | Promise<void>) | undefined;
  /** Tokens a request asks for (e.g. its max_tokens), reserved under token limits; undefined = the configured estimate. */
  tokensFor?: ((payload: Payload) => number | undefined) | undefined;
  /**
   * BackendOptions.ambientTrace. Default true (a kind's handler may make its own spans); the built-in kinds
   * set false: they carry trace context in their requests' headers (ctx.traceHeaders()) and need no active span.
   */
  ambientTrace?: boolean | undefined;
}

/** What a kind may know of the backend it serves, beside its options. */
export interface KindContext {
  /** The workers' endpoint URLs, in order; empty when the backend gives a worker count. */
  endpoints: string[];
  /** Where `{ env: VAR }` secrets are read; process.env in the service. */
  env: NodeJS.ProcessEnv;
  /**
   * The backend's `idempotent` key. Default false: a request that may have
   * reached the upstream (reset after it was sent, failure mid-answer, a 500)
   * is not sent again, since the upstream may have executed it.
   */
  idempotent?: boolean | undefined;
  /**
   * The backend's `expose_upstream_errors` key. Default false: clients see an
   * upstream error's status line only; its body (which may quote a
   * credential) goes to the log.
   */
  exposeUpstreamErrors?: boolean | undefined;
  /** Where upstream error bodies and handlers' own error messages are logged. Default: nowhere. */
  log?: BackendLog | undefined;
}

/**
 * Backend kinds the config file can name. Each turns its `options` block
 * into a handler (or a handler and a close hook), throwing a TypeError that
 * names the bad option (`backends[0].options.headers.X: ...`).
 */
export type BackendKind = (
  options: Record<string, unknown>,
  at: string,
  context: KindContext,
) => Handler | BackendInstance | Promise<Handler | BackendInstance>;

