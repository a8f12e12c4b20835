import { STATUS_CODES } from "node:http";
import { DispatchError, type ErrorCode, type HandlerContext } from "../core/index.js";
import type { CommonOptions } from "./upstream-options.js";

/**
 * How an upstream's failures become DispatchErrors, and which may run again.
 *
 * `retryable` means "sending this request again cannot execute it twice",
 * unless the backend is `idempotent`, where it means "another attempt may
 * succeed". Provably not executed: the connection was never made (refused,
 * unresolvable, connect timeout), or the upstream answered 429 or 503, which
 * say it did not process the request (RFC 6585 §4, RFC 9110 §15.6.4). Anything
 * else may have run: undici fails only the request it was writing or awaiting
 * when a socket dies (requests not yet written move to a new connection), so
 * a reset before the answer is not proof of "not sent"; a 500 or 502 may
 * follow a partial execution; a failure mid-answer follows a full one.
 *
 * Messages name the worker, never its address: clients read them.
 */

/** Most bytes of an upstream's error body read (for the log, and quoted when exposed). */
export const ERROR_BODY_BYTES = 2048;
/** Most characters of an error body quoted to a client with `expose_upstream_errors`. */
const ERROR_BODY_CHARS = 512;

/** Upstream HTTP status → gRPC code (issue 3's table). */
export function codeOfStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
    case 422:
      return "invalid_argument";
    case 401:
    case 403:
      // Our configured credentials were refused, not the caller's: PERMISSION_DENIED, not UNAUTHENTICATED.
      return "permission_denied";
    case 404:
      return "not_found";
    case 408:
    case 504:
      return "deadline_exceeded";
    case 429:
      return "resource_exhausted";
  }
  if (status >= 500) return "unavailable";
  // Other 4xx: the upstream understood and refused; 1xx/3xx: redirects are not followed (the config fixes the URL).
  return status >= 400 ? "failed_precondition" : "unknown";
}

/** Whether a status may be retried: 429 and 503 always; 5xx, 408 and 504 when the backend is idempotent. */
export function statusRetryable(status: number, idempotent: boolean): boolean {
  if (status === 429 || status === 503) return true;
  return idempotent && (status >= 500 || status === 408);
}

/** A non-2xx answer. `body` is at most ERROR_BODY_BYTES of it: logged, and quoted only when the backend exposes errors. */
export function statusError(
  status: number,
  retryAfter: string | string[] | undefined,
  body: Buffer,
  ctx: HandlerContext,
  common: CommonOptions,
): DispatchError {
  const code = codeOfStatus(status);
  const retryable = statusRetryable(status, common.idempotent);
  let text = body.toString("utf8").replace(/\s+/g, " ").trim();
  if (text.length > ERROR_BODY_CHARS) text = `${text.slice(0, ERROR_BODY_CHARS)}…`;
  // The standard reason phrase, not the upstream's: that one is free text too.
  const line = `upstream ${ctx.workerId} answered HTTP ${status}${STATUS_CODES[status] === undefined ? "" : ` ${STATUS_CODES[status]}`}`;
  common.log.warn({ worker: ctx.workerId, endpoint: ctx.endpoint, status, body: text, attempt: ctx.attempt }, line);
  return new DispatchError(code, common.exposeUpstreamErrors && text !== "" ? `${line}: ${text}` : line, {
    retryable,
    retryAfterMs: retryable ? parseRetryAfter(retryAfter) : undefined,
  });
}

/** Retry-After: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), as ms; undefined when absent or unreadable. */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || s.trim() === "") return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Where a transport failure happened: before any answer arrived, or while the answer's body was read. */
export type FailurePhase = "request" | "answer";

const TIMEOUTS = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);
/** Failures to open a connection, hence to send anything: what they say, for the client. */
const CONNECT_FAILURES: Record<string, string> = {
  ECONNREFUSED: "refused the connection",
  ENOTFOUND: "has a host name that does not resolve",
  EAI_AGAIN: "has a host name that does not resolve (yet)",
  EHOSTUNREACH: "is unreachable (no route to host)",
  ENETUNREACH: "is unreachable (network unreachable)",
  UND_ERR_CONNECT_TIMEOUT: "did not accept the connection in time",
};

/** A failure before or while reading the answer, classified by what it proves about the request. */
export function transportError(e: unknown, phase: FailurePhase, ctx: HandlerContext, common: CommonOptions): DispatchError {
  if (ctx.signal.aborted) return DispatchError.from(ctx.signal.reason, "cancelled");
  const err = e as { code?: unknown; syscall?: unknown } | undefined;
  const code = typeof err?.code === "string" ? err.code : undefined;
  const w = ctx.workerId;
  let out: DispatchError;
  if (code !== undefined && TIMEOUTS.has(code)) {
    out = new DispatchError("deadline_exceeded", `upstream ${w} did not answer before the deadline`, { cause: e });
  } else if (code === "UND_ERR_INVALID_ARG" || code === "UND_ERR_NOT_SUPPORTED") {
    out = new DispatchError("internal", `the request to upstream ${w} could not be built`, { cause: e });
  } else if (phase === "request" && (CONNECT_FAILURES[code ?? ""] !== undefined || err?.syscall === "connect")) {
    // Not connected, nothing sent: safe to send again, anywhere.
    out = new DispatchError("unavailable", `upstream ${w} ${CONNECT_FAILURES[code ?? ""] ?? "could not be connected to"}`, { retryable: true, cause: e });
  } else if (phase === "request") {
    out = new DispatchError("unavailable", `upstream ${w} closed the connection before answering`, { retryable: common.idempotent, cause: e });
  } else {
    out = new DispatchError("unavailable", `upstream ${w} failed while sending its answer`, { retryable: common.idempotent, cause: e });
  }
  // The original (with the address it names) is for operators only.
  common.log.warn({ err: e, worker: w, endpoint: ctx.endpoint, phase, retryable: out.retryable, attempt: ctx.attempt }, out.message);
  return out;
}
