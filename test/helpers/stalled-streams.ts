import type * as http2 from "node:http2";

/**
 * Opens `count` SubmitStream calls spread over `sessions`, each sending
 * `body(i)` (one gRPC envelope) and then never reading: its flow-control
 * window fills and stays full.
 */
export function openNonReading(sessions: http2.ClientHttp2Session[], count: number, body: (i: number) => Buffer): http2.ClientHttp2Stream[] {
  const streams: http2.ClientHttp2Stream[] = [];
  for (let i = 0; i < count; i++) {
    const s = sessions[i % sessions.length]!.request({
      ":method": "POST",
      ":path": "/dispatcher.v1.DispatcherService/SubmitStream",
      "content-type": "application/grpc",
      te: "trailers",
    });
    s.on("error", () => undefined);
    s.end(body(i));
    s.pause();
    streams.push(s);
  }
  return streams;
}
