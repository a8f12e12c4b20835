import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import type { AddressInfo } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createCors, type Cors } from "./cors.js";
import type { DashboardHandler } from "./dashboard.js";
import { ByteBudget } from "./edge/budget.js";
import { READ_OPTIONS } from "./edge/routes.js";
import { connectionKey } from "./edge/connection.js";
import { clampDeadlineHeaders } from "./edge/deadline.js";
import { createStreamHandler } from "./edge/stream-handler.js";
import { Watchdog, type Watched } from "./edge/watchdog.js";
import { SpecGrpcMessageResponse } from "./grpc-message.js";
import { isGrpcWebText } from "./grpc-web-text.js";
import { BAD_HOST, requestUrl } from "./request-url.js";
import { http2StreamValues } from "./frame-sink.js";
import { watchHttp1 } from "./http1.js";
import { createNodeDirect } from "./node-direct.js";
import { sniffProtocol } from "./protocol-sniff.js";

export interface Http2ServerOptions {
  host: string;
  port: number;
  routes: (router: ConnectRouter) => void;
  interceptors?: Interceptor[];
  readMaxBytes: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open at once. */
  maxConcurrentStreams: number;
  /** PEM certificate chain and key: serve TLS (h2 and HTTP/1.1 by ALPN) instead of cleartext. */
  tls?: { cert: Buffer | string; key: Buffer | string };
  /** Serves the dashboard's GET/HEAD requests before connect sees them; absent: no dashboard. */
  dashboard?: DashboardHandler;
  /** Ceiling for incoming grpc-timeout / connect-timeout-ms, in ms. */
  deadlineCeilingMs: number;
  headersTimeoutMs: number;
  bodyIdleTimeoutMs: number;
  idleTimeoutMs: number;
  goawayGraceMs: number;
  maxInflightCalls: number;
  maxDecodingBytes: number;
  json: { maxNodes: number; maxDepth: number };
  prechecks?: ReadonlyMap<string, (bytes: Uint8Array) => void>;
  /** Per request path: a direct encoder for the fast path's commonest response messages (stream-handler.ts). */
  encoders?: ReadonlyMap<string, (message: unknown) => Uint8Array | undefined>;
  /**
   * "edge" (default): raw HTTP/2 streams (edge/stream-handler.ts). "compat":
   * HTTP/2 through node's compat layer and connectNodeAdapter, the previous
   * front end, kept as the reference the conformance tests compare against.
   */
  frontEnd?: "edge" | "compat";
  /** With the edge front end: false sends every call through connect's handler. Default true. */
  fastPath?: boolean;
  /** Origins whose pages may call the service (cors.ts). Absent or empty: no CORS headers, same-origin pages only. */
  corsAllowedOrigins?: readonly string[];
}

export interface Http2Listener {
  readonly port: number;
  readonly host: string;
  readonly tls: boolean;
  /** Request bytes held in the decode budget now (maxDecodingBytes). */
  decodingBytes(): number;
  /**
   * Stops accepting connections, sends GOAWAY on every HTTP/2 session and
   * closes idle HTTP/1.1 connections, letting open calls finish; destroys what
   * is left after `forceAfterMs`.
   */
  close(forceAfterMs: number): Promise<void>;
}

/** Calls a client may cancel unanswered within RESET_WINDOW_MS before its connection is sent GOAWAY and closed. */
const MAX_RESETS_PER_WINDOW = 1_000;
const RESET_WINDOW_MS = 10_000;

/** An HTTP/1.1 connection and its calls in progress, so that drain can close it once idle. */
interface H1Conn {
  active: number;
}

/**
 * Serves gRPC, gRPC-Web and Connect on one port: cleartext HTTP/2 (h2c) and
 * HTTP/1.1 told apart by the connection preface, or with TLS, h2 and HTTP/1.1
 * by ALPN. HTTP/2 streams are served raw by the edge; HTTP/1.1 by
 * connectNodeAdapter. Connections are tracked because Node 20's
 * server.close() leaves open HTTP/2 sessions (and keep-alive HTTP/1.1
 * connections) alone; every stall a client can cause is timed (watchdog.ts).
 */
export async function listenHttp2(o: Http2ServerOptions): Promise<Http2Listener> {
  const dog = new Watchdog(Math.max(20, Math.min(1_000, Math.min(o.headersTimeoutMs || 1e9, o.bodyIdleTimeoutMs || 1e9, o.idleTimeoutMs || 1e9) / 4)));
  const budget = new ByteBudget(o.maxDecodingBytes);
  const contextValues = (req: http.IncomingMessage | http2.Http2ServerRequest) => {
    const values = http2StreamValues(req);
    values.set(connectionKey, "stream" in req ? req.stream.session : req.socket);
    return values;
  };
  const adapter = connectNodeAdapter({
    routes: o.routes,
    interceptors: o.interceptors ?? [],
    readMaxBytes: o.readMaxBytes,
    binaryOptions: READ_OPTIONS,
    contextValues,
  });
  const cors = createCors({ allowedOrigins: o.corsAllowedOrigins ?? [] });
  // What connect's handlers are served with, and the checks and budget around them, on every front end.
  const serving = { routes: o.routes, interceptors: o.interceptors ?? [], readMaxBytes: o.readMaxBytes, prechecks: o.prechecks, json: o.json, budget };
  const direct = createNodeDirect({ ...serving, contextValues });
  /** Before the dashboard and connect, HTTP/1.1 and the compat front end: CORS, the byte budget, then connect. */
  const serveNode = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const url = req.url ?? "";
    // connect-node builds the request's URL from its host and throws, out of this handler, on one it refuses.
    const authority = "authority" in req ? req.authority : req.headers.host;
    if (authority === undefined || authority === "" || requestUrl("http", authority, url) === undefined) {
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" });
      res.end(BAD_HOST);
      return;
    }
    if (cors !== undefined && corsHttp(cors, req, res)) return;
    if (o.dashboard?.http(req, res) === true) return;
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    // A call with a body (every method but Connect's GET): its bytes count against the budget as they arrive.
    if (req.method === "POST") return direct.serve(req, res, path, isGrpcWebText(req.headers["content-type"]));
    adapter(req as http.IncomingMessage, res as http.ServerResponse);
  };
  const h1Timeouts = watchHttp1(dog, o);
  const settings: http2.Settings = { maxConcurrentStreams: o.maxConcurrentStreams };
  const sessions = new Set<http2.ServerHttp2Session>();
  const h1 = new Map<net.Socket, H1Conn>();
  const sockets = new Set<net.Socket>();
  let closing = false;

  const trackSocket = (socket: net.Socket) => {
    // A server we listen with ourselves does not get http's default: without it, Nagle holds a stream's small
    // message (a token) back until the client acknowledges the one before.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const serveH1 = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    const conn = h1.get(socket);
    if (conn !== undefined) {
      conn.active++;
      if (closing) res.setHeader("connection", "close");
      res.once("close", () => {
        conn.active--;
        if (closing && conn.active === 0) socket.destroySoon();
      });
    }
    h1Timeouts.request(req, res);
    clampDeadlineHeaders(req.headers as Record<string, unknown>, o.deadlineCeilingMs);
    serveNode(req, res);
  };
  // Deadlines and max_deadline bound calls; node:http's own 5-minute request timeout would cut long LLM calls.
  const http1 = http.createServer({ requestTimeout: 0 }, serveH1);
  const toH1 = (socket: net.Socket) => {
    h1.set(socket, { active: 0 });
    socket.once("close", () => h1.delete(socket));
    h1Timeouts.connection(socket);
    http1.emit("connection", socket);
  };

  let h2: http2.Http2Server;
  if ((o.frontEnd ?? "edge") === "edge") {
    const edge = createStreamHandler({
      ...serving,
      deadlineCeilingMs: o.deadlineCeilingMs,
      maxInflightCalls: o.maxInflightCalls,
      watchdog: dog,
      bodyIdleTimeoutMs: o.bodyIdleTimeoutMs,
      encoders: o.encoders,
      fastPath: o.fastPath,
    });
    h2 = http2.createServer({ settings });
    const dashboard = o.dashboard;
    h2.on("stream", dashboard === undefined && cors === undefined ? edge.onStream : (stream, headers) => {
      if (cors !== undefined && corsStream(cors, stream, headers)) return;
      if (dashboard?.stream(stream, headers) !== true) edge.onStream(stream, headers);
    });
  } else {
    h2 = http2.createServer({ settings, Http2ServerResponse: SpecGrpcMessageResponse }, (req, res) => {
      clampDeadlineHeaders(req.headers as Record<string, unknown>, o.deadlineCeilingMs);
      serveNode(req, res);
    });
  }
  h2.on("session", (s) => trackSession(s));

  /**
   * A session must open its first stream within the header timeout, and is
   * closed (GOAWAY) once it has had no stream open for the idle timeout;
   * after a GOAWAY, the connection is destroyed when the grace is over. A
   * session that sent GOAWAY on its own (a rapid-reset flood) opens no
   * further streams, so it too ends idle.
   */
  function trackSession(s: http2.ServerHttp2Session): void {
    sessions.add(s);
    let open = 0;
    const idle: Watched = { expiresAt: 0, expire: () => goaway(s) };
    dog.watch(idle, o.headersTimeoutMs);
    // Rapid reset (CVE-2023-44487): streams the client cancels before they are answered, per window.
    let resets = 0;
    let windowStart = dog.now;
    s.on("stream", (stream: http2.ServerHttp2Stream) => {
      if (open++ === 0) dog.unwatch(idle);
      stream.once("close", () => {
        if (stream.rstCode === http2.constants.NGHTTP2_CANCEL && !stream.headersSent) {
          if (dog.now - windowStart > RESET_WINDOW_MS) {
            windowStart = dog.now;
            resets = 0;
          }
          if (++resets === MAX_RESETS_PER_WINDOW) {
            s.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
            goaway(s);
          }
        }
        if (--open === 0 && !s.closed) dog.watch(idle, o.idleTimeoutMs);
      });
    });
    s.on("error", () => s.destroy());
    s.once("close", () => {
      dog.unwatch(idle);
      sessions.delete(s);
    });
  }

  function goaway(s: http2.ServerHttp2Session): void {
    if (s.destroyed) return;
    s.close();
    const grace = setTimeout(() => s.destroy(), o.goawayGraceMs);
    grace.unref();
    s.once("close", () => clearTimeout(grace));
  }

  let server: net.Server;
  if (o.tls !== undefined) {
    server = tls.createServer({ cert: o.tls.cert, key: o.tls.key, ALPNProtocols: ["h2", "http/1.1"], handshakeTimeout: o.headersTimeoutMs || 120_000 }, (socket) => {
      if (socket.alpnProtocol === "h2") h2.emit("connection", socket);
      else toH1(socket);
    });
    server.on("connection", trackSocket);
  } else {
    server = net.createServer((socket) => {
      trackSocket(socket);
      sniffProtocol(socket, (s) => h2.emit("connection", s), toH1);
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    port: addr.port,
    host: o.host,
    tls: o.tls !== undefined,
    decodingBytes: () => budget.used,
    close(forceAfterMs) {
      closed ??= new Promise<void>((resolve) => {
        closing = true;
        const force = setTimeout(() => {
          for (const s of sessions) s.destroy();
          // Every raw socket too: a session destroyed while a stream waits on a write can leave its socket open.
          for (const socket of sockets) socket.destroy();
        }, forceAfterMs);
        force.unref();
        // The net server's callback runs once every connection, of either protocol, has closed.
        server.close(() => {
          clearTimeout(force);
          dog.close();
          resolve();
        });
        for (const s of sessions) s.close();
        for (const [socket, conn] of h1) if (conn.active === 0) socket.destroySoon();
      });
      return closed;
    },
  };
}

/** Answers a preflight (true), or adds CORS headers to the answer still to come for an allowed origin (false). */
function corsHttp(cors: Cors, req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): boolean {
  const pre = cors.preflight(req.method, req.headers);
  if (pre !== undefined) {
    req.resume();
    res.writeHead(pre.status, pre.headers);
    res.end();
    return true;
  }
  const extra = cors.actual(req.headers["origin"]);
  if (extra !== undefined) for (const k in extra) res.setHeader(k, extra[k]!);
  return false;
}

/**
 * The same for a raw HTTP/2 stream. Every answer on the edge, the fast path's
 * included, starts with this stream's respond(): wrapping it on the one
 * stream merges the headers in without touching the paths that answer.
 */
function corsStream(cors: Cors, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
  const pre = cors.preflight(headers[":method"], headers);
  if (pre !== undefined) {
    stream.on("error", () => {});
    stream.respond({ ...pre.headers, ":status": pre.status }, { endStream: true });
    stream.resume();
    return true;
  }
  const extra = cors.actual(headers["origin"]);
  if (extra !== undefined) {
    const respond = stream.respond;
    stream.respond = (h, options) => respond.call(stream, { ...h, ...extra, vary: h?.["vary"] === undefined ? extra["vary"] : `${String(h["vary"])}, Origin` }, options);
  }
  return false;
}
