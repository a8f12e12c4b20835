import type * as http from "node:http";
import type * as net from "node:net";
import type { Watchdog, Watched } from "./edge/watchdog.js";

export interface Http1Timeouts {
  /** Longest a connection may take to send a request's headers, from connect or the end of its previous answer. */
  headersTimeoutMs: number;
  /** Longest a request body may go without a byte arriving. */
  bodyIdleTimeoutMs: number;
}

/**
 * Header and body-idle timeouts for HTTP/1.1 connections. node:http's own
 * checker runs only for a server that listen()s itself, and ours is handed
 * connections by the protocol sniffer (or the TLS server); its
 * requestTimeout is also a total-request limit, wrong for long LLM calls.
 */
export function watchHttp1(dog: Watchdog, t: Http1Timeouts) {
  const headerWatch = new WeakMap<net.Socket, Watched>();
  return {
    /** A new connection: its first request's headers must arrive in time. */
    connection(socket: net.Socket): void {
      const w: Watched = { expiresAt: 0, expire: () => socket.destroy() };
      headerWatch.set(socket, w);
      dog.watch(w, t.headersTimeoutMs);
      socket.once("close", () => dog.unwatch(w));
    },
    /** Headers in: the body must keep arriving; after the answer, the next request's headers are timed again. */
    request(req: http.IncomingMessage, res: http.ServerResponse): void {
      const socket = req.socket;
      const hw = headerWatch.get(socket);
      if (hw !== undefined) dog.unwatch(hw);
      if (!req.complete && t.bodyIdleTimeoutMs > 0) {
        let seen = socket.bytesRead;
        const body: Watched = {
          expiresAt: 0,
          expire: () => {
            // Progress since the last look: wait another period.
            if (socket.bytesRead !== seen && !req.complete) {
              seen = socket.bytesRead;
              dog.watch(body, t.bodyIdleTimeoutMs);
            } else if (!req.complete) socket.destroy();
          },
        };
        dog.watch(body, t.bodyIdleTimeoutMs);
        const done = () => dog.unwatch(body);
        req.once("end", done);
        res.once("close", done);
      }
      res.once("finish", () => {
        if (hw !== undefined && !socket.destroyed) dog.watch(hw, t.headersTimeoutMs);
      });
    },
  };
}
