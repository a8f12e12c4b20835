import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startTestApp } from "../helpers/app.js";
import { openNonReading } from "../helpers/stalled-streams.js";
import { envelope } from "../server/raw-h2.js";

/**
 * Streams to clients that never read: HTTP/2 flow control stops the server's
 * writes once the client's window is full, and the dispatcher must then stop
 * pulling the backend (one chunk in hand), rather than buffer its whole
 * answer in memory.
 */
const STREAMS = 1_000;
const CHUNK = "x".repeat(1024);
let app: App;
const pulled = new Map<string, number>();

beforeAll(async () => {
  app = await startTestApp({ server: { limits: { max_concurrent_streams: 1000 } }, backends: [{ name: "echo", kind: "echo" }] });
  app.dispatcher.register({
    name: "endless",
    workers: 1,
    maxConcurrency: STREAMS,
    queueCapacity: 0,
    timeoutMs: 0,
    handler: async function* (_p, ctx) {
      const id = ctx.metadata["id"]!;
      for (;;) {
        pulled.set(id, (pulled.get(id) ?? 0) + 1);
        yield { text: CHUNK };
        // Let the event loop breathe, as a real upstream's socket reads would.
        await new Promise((r) => setImmediate(r));
      }
    },
  });
});
afterAll(async () => {
  await app?.close();
});

function frame(i: number): Buffer {
  const msg = toBinary(SubmitRequestSchema, create(SubmitRequestSchema, { backend: "endless", metadata: { id: String(i) } }));
  return envelope(msg);
}

describe("streams to clients that never read", () => {
  it(`${STREAMS} streams: the backend is pulled no faster than flow control lets the answer out`, async () => {
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    const sessions = Array.from({ length: 4 }, () => http2.connect(`http://127.0.0.1:${app.server.port}`));
    const streams = openNonReading(sessions, STREAMS, frame);
    await expect.poll(() => pulled.size, { timeout: 20_000 }).toBe(STREAMS);
    // Let every stream fill its client's flow-control window (64 KiB by default) and stall.
    await new Promise((r) => setTimeout(r, 4_000));
    // Per stream: the client's 64 KiB window of 1 KiB chunks, plus one in hand and the transport's own write
    // buffer (Node 24 holds about one more window). A writer that ignored flow control would have pulled thousands.
    const most = Math.max(...pulled.values());
    expect(most).toBeLessThan(300);
    global.gc?.();
    const grownMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    // Server and clients share this process: the clients' own windows hold up to 64 MiB of what was sent.
    expect(grownMb).toBeLessThan(400);
    for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
    for (const s of sessions) s.close();
    await expect.poll(() => app.dispatcher.snapshot(["endless"])[0]!.inflight, { timeout: 10_000 }).toBe(0);
  }, 60_000);
});
