import type { Socket } from "node:net";

/** What every cleartext HTTP/2 connection starts with (RFC 9113 §3.4). */
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** A connection that sends nothing decisive this long is dropped. */
const SNIFF_TIMEOUT_MS = 10_000;

/**
 * Reads a new connection's first bytes and hands it to the HTTP/2 server (it
 * sent the h2c preface) or the HTTP/1.1 server (anything else), so that one
 * cleartext port serves gRPC over h2c and Connect/gRPC-Web/curl over HTTP/1.1.
 *
 * The bytes read must reach the chosen server, which reads the socket's native
 * handle directly: node:http2 takes data left in the socket's buffer
 * (unshift), node:http only data delivered as a 'data' event.
 */
export function sniffProtocol(socket: Socket, onH2: (s: Socket) => void, onH1: (s: Socket) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
  timer.unref();
  const onError = () => socket.destroy();
  const onClose = () => clearTimeout(timer);
  const onData = (chunk: Buffer) => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, PREFACE.length);
    const h2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (h2 && seen.length < PREFACE.length) return;
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("error", onError);
    socket.off("close", onClose);
    socket.pause();
    if (h2) {
      socket.unshift(seen);
      onH2(socket);
    } else {
      onH1(socket);
      socket.resume();
      socket.emit("data", seen);
    }
  };
  socket.on("data", onData);
  socket.on("error", onError);
  socket.on("close", onClose);
}
