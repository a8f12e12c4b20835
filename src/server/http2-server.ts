import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { DashboardHandler } from "./dashboard.js";
import { SpecGrpcMessageResponse } from "./grpc-message.js";
import { http2StreamValues } from "./frame-sink.js";
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
}

export interface Http2Listener {
  readonly port: number;
  readonly host: string;
  readonly tls: boolean;
  /**
   * Stops accepting connections, sends GOAWAY on every HTTP/2 session and
   * closes idle HTTP/1.1 connections, letting open calls finish; destroys what
   * is left after `forceAfterMs`.
   */
  close(forceAfterMs: number): Promise<void>;
}

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** An HTTP/1.1 connection and its calls in progress, so that drain can close it once idle. */
interface H1Conn {
  active: number;
}

/**
 * Serves gRPC, gRPC-Web and Connect on one port: cleartext HTTP/2 (h2c) and
 * HTTP/1.1 told apart by the connection preface, or with TLS, h2 and HTTP/1.1
 * by ALPN. Connections are tracked because Node 20's server.close() leaves
 * open HTTP/2 sessions (and keep-alive HTTP/1.1 connections) alone.
 */
export async function listenHttp2(o: Http2ServerOptions): Promise<Http2Listener> {
  const handler = connectNodeAdapter({
    routes: o.routes,
    interceptors: o.interceptors ?? [],
    readMaxBytes: o.readMaxBytes,
    contextValues: http2StreamValues,
  });
  const settings: http2.Settings = { maxConcurrentStreams: o.maxConcurrentStreams };
  const sessions = new Set<http2.ServerHttp2Session>();
  const h1 = new Map<net.Socket, H1Conn>();
  let closing = false;

  const trackH1 = (socket: net.Socket) => {
    h1.set(socket, { active: 0 });
    socket.once("close", () => h1.delete(socket));
  };
  const sockets = new Set<net.Socket>();
  const trackSocket = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const serve = (req: Req, res: Res) => {
    if (req.httpVersionMajor !== 2) {
      const socket = req.socket as net.Socket;
      const conn = h1.get(socket);
      if (conn !== undefined) {
        conn.active++;
        if (closing) (res as http.ServerResponse).setHeader("connection", "close");
        res.once("close", () => {
          conn.active--;
          if (closing && conn.active === 0) socket.destroySoon();
        });
      }
    }
    if (o.dashboard?.(req, res) === true) return;
    handler(req as http.IncomingMessage, res as http.ServerResponse);
  };

  let server: net.Server;
  if (o.tls !== undefined) {
    const secure = http2.createSecureServer(
      { cert: o.tls.cert, key: o.tls.key, allowHTTP1: true, settings, Http2ServerResponse: SpecGrpcMessageResponse },
      serve,
    );
    secure.on("connection", trackSocket);
    secure.on("secureConnection", (socket: net.Socket & { alpnProtocol?: string | false }) => {
      if (socket.alpnProtocol !== "h2") trackH1(socket);
    });
    secure.on("session", (s) => {
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
    server = secure;
  } else {
    const h2c = http2.createServer({ settings, Http2ServerResponse: SpecGrpcMessageResponse }, serve);
    h2c.on("session", (s) => {
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
    // Deadlines and max_deadline bound calls; node:http's own 5-minute request timeout would cut long LLM calls.
    const http1 = http.createServer({ requestTimeout: 0 }, serve);
    server = net.createServer((socket) => {
      trackSocket(socket);
      sniffProtocol(
        socket,
        (s) => h2c.emit("connection", s),
        (s) => {
          trackH1(s);
          http1.emit("connection", s);
        },
      );
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
          resolve();
        });
        for (const s of sessions) s.close();
        for (const [socket, conn] of h1) if (conn.active === 0) socket.destroySoon();
      });
      return closed;
    },
  };
}
