import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { specGrpcMessages } from "./grpc-message.js";

export interface Http2ServerOptions {
  host: string;
  port: number;
  routes: (router: ConnectRouter) => void;
  interceptors?: Interceptor[];
  readMaxBytes: number;
}

export interface Http2Listener {
  readonly port: number;
  readonly host: string;
  /**
   * Stops accepting connections and sends GOAWAY on every open session,
   * letting open streams finish; destroys what is left after `forceAfterMs`.
   */
  close(forceAfterMs: number): Promise<void>;
}

/**
 * Serves gRPC, gRPC-Web and Connect over cleartext HTTP/2 (h2c). Sessions are
 * tracked because Node 20's server.close() leaves open HTTP/2 sessions alone.
 */
export async function listenHttp2(o: Http2ServerOptions): Promise<Http2Listener> {
  const handler = connectNodeAdapter({
    routes: o.routes,
    interceptors: o.interceptors ?? [],
    readMaxBytes: o.readMaxBytes,
  });
  const server = http2.createServer({}, specGrpcMessages(handler));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  // Raw sockets too: a session destroyed while a stream still waits on a write
  // can leave its socket open, and server.close() waits for every socket.
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    port: addr.port,
    host: o.host,
    close(forceAfterMs) {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
        const force = setTimeout(() => {
          for (const s of sessions) s.destroy();
          for (const socket of sockets) socket.destroy();
        }, forceAfterMs);
        force.unref();
        server.once("close", () => clearTimeout(force));
      });
      return closing;
    },
  };
}
