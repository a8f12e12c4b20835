import type { Readable } from "node:stream";
import { Pool } from "undici";
import { DispatchError, type HandlerContext } from "../core/index.js";
import { ERROR_BODY_BYTES, statusError, transportError } from "./upstream-errors.js";
import type { CommonOptions } from "./upstream-options.js";

/**
 * What the http and genai backends share: one keep-alive connection pool per
 * endpoint, and sending one request with a bounded read of its answer.
 * Options live in upstream-options.ts, failure classification in upstream-errors.ts.
 */

export { checkKeys, COMMON_KEYS, DEFAULT_MAX_RESPONSE_BYTES, mapping, parseCommonOptions, parseHeaders, type CommonOptions } from "./upstream-options.js";
export { codeOfStatus, parseRetryAfter } from "./upstream-errors.js";

/** Where one worker's requests go, fixed by the config: no request field reaches the host or path. */
export interface Target {
  pool: Pool;
  /** Path and query of the endpoint URL joined with the kind's path. */
  path: string;
}

export interface Upstreams {
  /** The target of a worker's endpoint; throws INTERNAL if the worker has none (a config error caught at start). */
  target(ctx: HandlerContext): Target;
  close(): Promise<void>;
}

/** One pool per endpoint origin; created at start, connecting on first use. */
export function createUpstreams(endpoints: readonly string[], path: string, at: string, kind: string): Upstreams {
  if (endpoints.length === 0) {
    throw new TypeError(`${at}.endpoints: required for kind "${kind}" (one worker per upstream URL)`);
  }
  const pools = new Map<string, Pool>();
  const targets = new Map<string, Target>();
  for (const [i, raw] of endpoints.entries()) {
    const where = `${at}.endpoints[${i}]`;
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new TypeError(`${where}: expected an http:// or https:// URL, got ${JSON.stringify(raw)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`${where}: expected an http:// or https:// URL, got ${JSON.stringify(raw)}`);
    }
    if (url.username !== "" || url.password !== "") {
      throw new TypeError(`${where}: credentials in the URL are not allowed; use options.headers with { env: VAR }`);
    }
    let pool = pools.get(url.origin);
    if (pool === undefined) {
      // Socket reads are 64 KiB; with its default high-water mark a socket reads one more ahead of a paused
      // answer. At 0 it reads only when the parser asks: a stalled stream holds at most the read in hand.
      // (undici passes connect options on to net.connect; its types list only its own.)
      pool = new Pool(url.origin, { keepAliveTimeout: 30_000, connect: { highWaterMark: 0 } as never });
      pools.set(url.origin, pool);
    }
    const base = url.pathname.endsWith("/") ? url.pathname.slice(0, -1) : url.pathname;
    targets.set(raw, { pool, path: `${base}${path}${url.search}` || "/" });
  }
  return {
    target(ctx) {
      const t = ctx.endpoint === undefined ? undefined : targets.get(ctx.endpoint);
      if (t === undefined) throw new DispatchError("internal", `worker ${ctx.workerId} has no configured endpoint`);
      return t;
    },
    async close() {
      await Promise.allSettled([...pools.values()].map((p) => p.close()));
    },
  };
}

export interface UpstreamResponse {
  status: number;
  contentType: string;
  body: Buffer;
}

/** An answer whose status was 2xx, with its body still to be read. */
export interface OpenResponse {
  status: number;
  contentType: string;
  /** Its Content-Encoding, "" when none. */
  contentEncoding: string;
  body: Readable;
}

/**
 * Sends one request to `t` and waits for its answer's status and headers.
 * The job's signal aborts it; its deadline bounds the wait for headers and
 * body, and is announced in `deadline_header` when configured. Rejects with
 * a DispatchError for transport failures and for non-2xx answers; the status
 * is judged before the body is read, so an error status wins over its body's
 * size (a 500 with 10 MB of HTML is UNAVAILABLE, and only its start is read).
 */
export async function open(
  t: Target,
  ctx: HandlerContext,
  common: CommonOptions,
  method: string,
  body: Uint8Array | string,
  contentType: string,
): Promise<OpenResponse> {
  const headers: Record<string, string> = { ...common.headers, ...ctx.traceHeaders(), "content-type": contentType };
  // 0 disables undici's own timers: the job's signal (backend timeout, deadline) is then the bound.
  let timeout = 0;
  if (ctx.deadline !== undefined) {
    timeout = Math.max(1, Math.ceil(ctx.deadline - Date.now()));
    if (common.deadlineHeader !== undefined) headers[common.deadlineHeader] = String(timeout);
  }
  let res;
  try {
    // Resolves once the answer's status and headers arrived: a failure before that is in the "request" phase.
    res = await t.pool.request({
      path: t.path,
      method: method as "POST",
      headers,
      body,
      signal: ctx.signal,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      // The body buffers no more than the chunk in hand: a client that stops reading stops the socket at once.
      highWaterMark: 1,
    });
  } catch (e) {
    throw transportError(e, "request", ctx, common);
  }
  const status = res.statusCode;
  if (status < 200 || status > 299) {
    throw statusError(status, res.headers["retry-after"], await readPrefix(res.body, ERROR_BODY_BYTES), ctx, common);
  }
  return { status, contentType: String(res.headers["content-type"] ?? ""), contentEncoding: String(res.headers["content-encoding"] ?? ""), body: res.body };
}

/**
 * Closes an answer's body that will not be read to its end, and with it the
 * upstream request. undici's body reports an early close as an 'error'
 * (RequestAbortedError), which with no listener left would be thrown as an
 * uncaught exception: a listener that ignores it goes first.
 */
export function discard(body: Readable): void {
  if (body.readableEnded || body.destroyed) return;
  body.on("error", ignore);
  body.destroy();
}

function ignore(): void {}

/** How long, and how much more, a body that is done with may take to end on its own before it is closed. */
const RELEASE_MS = 1_000;
const RELEASE_BYTES = 64 * 1024;

/**
 * Lets a body whose content is complete (a stream past its last event) end
 * on its own, reading and dropping what is left, so that its keep-alive
 * connection is reused: an upstream may send the end of its answer a moment
 * after its last event, and over TLS a new connection costs a handshake on
 * the next call's first token. One that has not ended within a second, or
 * sends more than 64 KiB more, is closed (discard).
 */
export function release(body: Readable): void {
  if (body.readableEnded || body.destroyed) return;
  body.on("error", ignore);
  let extra = 0;
  const timer = setTimeout(() => body.destroy(), RELEASE_MS);
  timer.unref();
  body.on("data", (c: Buffer) => {
    extra += c.length;
    if (extra > RELEASE_BYTES) body.destroy();
  });
  body.once("close", () => clearTimeout(timer));
  body.resume();
}

/** Reads a whole 2xx answer, bounded by max_response_bytes. */
export async function readAll(res: OpenResponse, ctx: HandlerContext, common: CommonOptions): Promise<UpstreamResponse> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += chunk.length;
      if (size > common.maxResponseBytes) {
        discard(res.body);
        throw new DispatchError("resource_exhausted", `upstream ${ctx.workerId} sent more than max_response_bytes (${common.maxResponseBytes})`, {
          localLimit: true,
        });
      }
      chunks.push(chunk);
    }
  } catch (e) {
    throw e instanceof DispatchError ? e : transportError(e, "answer", ctx, common);
  }
  return { status: res.status, contentType: res.contentType, body: Buffer.concat(chunks, size) };
}

/** open() then readAll(): one request, its whole answer. */
export async function send(
  t: Target,
  ctx: HandlerContext,
  common: CommonOptions,
  method: string,
  body: Uint8Array | string,
  contentType: string,
): Promise<UpstreamResponse> {
  return readAll(await open(t, ctx, common, method, body, contentType), ctx, common);
}

/** The first `limit` bytes of an error body; the rest is dropped with the connection. A failure mid-read keeps what came. */
async function readPrefix(body: AsyncIterable<unknown> & { destroy(): unknown }, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= limit) break; // leaving the loop destroys the stream
    }
  } catch {
    // The status already says what happened; a body cut short changes nothing.
  }
  return Buffer.concat(chunks, size).subarray(0, limit);
}
