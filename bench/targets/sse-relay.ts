// The floor for streaming: the least a Node process can do to relay an OpenAI-compatible upstream's
// server-sent events to a gRPC SubmitStream caller. Each SubmitStream call (its request read and ignored)
// sends the chat request given here to the upstream, over undici's keep-alive pool as the genai backend
// does, and writes each piece of the answer's body as it is read, unparsed, as one Chunk message; then
// grpc-status 0. No parsing, no queue, no limits, no backpressure: what is left of time to first chunk
// through it is Node's own (an extra process, two sockets, HTTP/2 and HTTP/1.1 framing).
//   node sse-relay.js <upstream URL> <chat request JSON>
import * as http2 from "node:http2";
import { Pool } from "undici";
import { varintSize, writeVarint } from "../../src/server/text-chunk.js";
import { reportReady } from "./ipc.js";

const [upstream, chat] = process.argv.slice(2) as [string, string];
const pool = new Pool(upstream, { keepAliveTimeout: 30_000 });

/** SubmitStreamResponse { chunk (2) { text (3) } } around `bytes`, in a gRPC envelope. */
function chunkMessage(bytes: Buffer): Buffer {
  const n = bytes.length;
  const inner = 1 + varintSize(n) + n;
  const size = 1 + varintSize(inner) + inner;
  const head = Buffer.allocUnsafe(5 + size - n);
  head[0] = 0;
  head.writeUInt32BE(size, 1);
  let at = 5;
  head[at++] = 0x12;
  at = writeVarint(head, at, inner);
  head[at++] = 0x1a;
  writeVarint(head, at, n);
  return Buffer.concat([head, bytes]);
}

const server = http2.createServer();
server.on("stream", (stream) => {
  stream.on("error", () => {});
  stream.on("data", () => {});
  stream.on("end", () => {
    pool
      .request({ path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json" }, body: chat })
      .then((res) => {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        res.body.on("data", (c: Buffer) => stream.write(chunkMessage(c)));
        res.body.on("end", () => {
          stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          stream.end();
        });
        res.body.on("error", () => stream.destroy());
      })
      .catch(() => stream.destroy());
  });
});
server.listen(0, "127.0.0.1", () => {
  reportReady((server.address() as { port: number }).port, () => new Promise<void>((resolve) => server.close(() => void pool.close().then(resolve))));
});
