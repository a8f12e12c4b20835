import * as http from "node:http";
import * as http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { create, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { SubmitRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startTarget, type Target } from "../lib/child.js";
import { grpcFrame } from "../lib/grpc-load.js";
import { fmt, percentile, table, writeResult, type BenchContext } from "../lib/report.js";

const CONCURRENCY = 100;
const TOKENS = 20;
const SUBMIT_STREAM = "/dispatcher.v1.DispatcherService/SubmitStream";

/**
 * Streaming: time to first chunk through the dispatcher against calling the
 * fake OpenAI-compatible upstream (examples/fake-llm.mjs) directly, with 100
 * streams open at once (closed loop: each of 100 callers starts its next
 * stream when the last one ended), in alternating rounds, with the
 * dispatcher's own CPU per stream; beside them, through a bare relay
 * (bench/targets/sse-relay.ts: undici to the upstream, each read written as
 * one Chunk, nothing parsed), the floor for any Node process between client
 * and upstream on this machine, so that the added time splits into what a
 * relay costs at all and what the dispatcher adds to it; and chunks per second through the
 * dispatcher (echo streaming a payload in 1,024 chunks). Scenarios: callers
 * whose starts are spread over a stream's length (independent clients: 100
 * open at any moment, starting at different instants), at an LLM's pace (the
 * target) and at ten times it; and the 100 starting at the same instant, in
 * lockstep to the end (a batch fired at once).
 * The upstream and the dispatcher each run in their own process; the bench
 * process is the client, with Node's own lean clients on both paths, as an
 * application would call each: the upstream's server-sent events over
 * keep-alive HTTP/1.1 (node:http), the dispatcher's SubmitStream over gRPC
 * (node:http2, one connection, frames read without decoding the messages).
 */
/** Upstream paces: a served model's (the target is checked there, starts spread) and one ten times faster, where CPU per stream shows. */
const PACES = [
  { name: "LLM pace", ttftMs: 200, tokenMs: 25, spread: true, target: true },
  { name: "LLM pace, 100 started at once", ttftMs: 200, tokenMs: 25, spread: false, target: false },
  { name: "stress pace", ttftMs: 20, tokenMs: 2, spread: true, target: false },
] as const;

interface PaceResult {
  name: string;
  ttftMs: number;
  tokenMs: number;
  direct: number[];
  /** Through the bare relay (bench/targets/sse-relay.ts): the floor for any Node process in between. */
  relay: number[];
  dispatcher: number[];
  /** The dispatcher's own CPU (user + system) per stream through it, in ms. */
  cpuPerStreamMs: number;
  streamsPerSecond: number;
}

export async function streamSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const rounds = ctx.mode === "full" ? 10 : ctx.mode === "quick" ? 4 : 1;
  const perCaller = ctx.mode === "smoke" ? 1 : 4;
  const results: PaceResult[] = [];
  let chunksPerSecond = 0;
  for (const pace of PACES) {
    const targets: Target[] = [];
    try {
      const fake = await startTarget("fake-llm", "fake-llm", ["--ttft-ms", String(pace.ttftMs), "--token-ms", String(pace.tokenMs)]);
      targets.push(fake);
      const dispatcher = await startTarget("dispatcher", "dispatcher", ["--genai", `http://127.0.0.1:${fake.port}`]);
      targets.push(dispatcher);
      const words = Array.from({ length: TOKENS }, (_, i) => `t${i}`).join(" ");
      const chat = { model: "m", stream: true, messages: [{ role: "user", content: words }] };
      const body = JSON.stringify(chat);
      // The relay sends what the genai backend sends upstream: the request with usage asked for.
      const relay = await startTarget("sse-relay", "sse-relay", [`http://127.0.0.1:${fake.port}`, JSON.stringify({ ...chat, stream_options: { include_usage: true } })]);
      targets.push(relay);
      const session = reconnecting(dispatcher.port);
      const relaySession = reconnecting(relay.port);
      const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
      try {
        const request = submitStreamRequest({ backend: "chat", payload: { case: "json", value: fromJson(ValueSchema, chat as JsonValue) } });
        const direct = () => firstSseContent(agent, fake.port, body);
        const through = () => firstGrpcChunk(session(), request);
        const relayed = () => firstGrpcChunk(relaySession(), request);
        const r: PaceResult = { name: pace.name, ttftMs: pace.ttftMs, tokenMs: pace.tokenMs, direct: [], relay: [], dispatcher: [], cpuPerStreamMs: 0, streamsPerSecond: 0 };
        // Spread: callers start one stream's length apart in all, so 100 streams are open at any
        // moment with their starts (and their tokens) at different instants, as independent clients' are.
        const streamMs = pace.ttftMs + pace.tokenMs * TOKENS;
        let streamsRun = 0;
        const loop = async (run: () => Promise<number>, into: number[]) => {
          await Promise.all(
            Array.from({ length: CONCURRENCY }, async (_, caller) => {
              if (pace.spread) await sleep((caller * streamMs) / CONCURRENCY);
              for (let i = 0; i < perCaller; i++) {
                const ms = await run();
                streamsRun++;
                // Spread, a caller's first and last streams overlap the ramp up and down: fewer than 100 open.
                if (!pace.spread || perCaller < 3 || (i > 0 && i < perCaller - 1)) into.push(ms);
              }
            }),
          );
        };
        // One unmeasured round each: connections, JIT.
        await loop(direct, []);
        await loop(relayed, []);
        await loop(through, []);
        let cpu = 0;
        let wall = 0;
        let streams = 0;
        for (let round = 0; round < rounds; round++) {
          const order = ["direct", "relay", "dispatcher"] as const;
          for (const which of round % 2 === 0 ? order : [...order].reverse()) {
            if (which === "direct") {
              await loop(direct, r.direct);
              continue;
            }
            if (which === "relay") {
              await loop(relayed, r.relay);
              continue;
            }
            const before = await dispatcher.cpuMs();
            const t0 = performance.now();
            const run0 = streamsRun;
            await loop(through, r.dispatcher);
            wall += performance.now() - t0;
            cpu += (await dispatcher.cpuMs()) - before;
            streams += streamsRun - run0;
          }
          ctx.log(`stream ${pace.name} round ${round + 1}/${rounds}`);
        }
        r.cpuPerStreamMs = cpu / streams;
        r.streamsPerSecond = streams / (wall / 1000);
        results.push(r);
        if (pace.target) chunksPerSecond = await echoChunksPerSecond(session(), ctx.mode === "smoke" ? 4 : 32);
      } finally {
        agent.destroy();
        session().close();
        relaySession().close();
      }
    } finally {
      await Promise.all(targets.map((t) => t.stop()));
    }
  }

  const p = (xs: number[], q: number) => percentile(xs, q);
  ctx.log(
    `\nStreaming: ${CONCURRENCY} streams open at once (closed loop, ${perCaller} per caller per round, ${rounds} alternating rounds; ` +
      `spread starts: each caller's first and last stream not counted), ` +
      `${TOKENS} tokens each, from the fake OpenAI-compatible upstream; upstream, dispatcher and client in three processes`,
  );
  const rows: string[][] = [];
  for (const r of results) {
    const pace = `${r.name}: first token ${r.ttftMs} ms, then ${r.tokenMs} ms apart`;
    for (const [q, label] of [
      [0.5, "p50"],
      [0.99, "p99"],
    ] as const) {
      const [d, f, x] = [p(r.direct, q), p(r.relay, q), p(r.dispatcher, q)];
      const target = q === 0.99 && PACES.find((y) => y.name === r.name)!.target ? "≤ 1 ms added" : "";
      rows.push([`${pace}: time to first chunk ${label} ms`, fmt(d, 2), fmt(f, 2), fmt(x, 2), fmt(x - d, 2), fmt(f - d, 2), fmt(x - f, 2), target]);
    }
    rows.push([`${pace}: dispatcher CPU per stream ms (${fmt(r.streamsPerSecond)} streams/s)`, "", "", fmt(r.cpuPerStreamMs, 3), "", "", "", ""]);
  }
  rows.push(["chunks/s through the dispatcher (echo, 32 streams, 1,024 chunks each)", "", "", fmt(chunksPerSecond), "", "", "", ""]);
  ctx.log(
    table(
      ["figure", "direct to the upstream", "bare relay", "through the dispatcher", "added", "of which any relay", "of which the dispatcher", "target"],
      rows,
    ),
  );
  const data = {
    concurrency: CONCURRENCY,
    tokens: TOKENS,
    rounds,
    perCaller,
    paces: results.map((r) => ({
      ...r,
      addedP50Ms: p(r.dispatcher, 0.5) - p(r.direct, 0.5),
      addedP99Ms: p(r.dispatcher, 0.99) - p(r.direct, 0.99),
      relayAddedP50Ms: p(r.relay, 0.5) - p(r.direct, 0.5),
      relayAddedP99Ms: p(r.relay, 0.99) - p(r.direct, 0.99),
    })),
    chunksPerSecond,
  };
  ctx.log(`wrote ${writeResult(ctx, "stream", data)}`);
  return data;
}

/**
 * An HTTP/2 session to `port` that is opened again when it was closed: one idle through the other paths'
 * rounds may have been closed by the server's idle timeout.
 */
function reconnecting(port: number): () => http2.ClientHttp2Session {
  let session = http2.connect(`http://127.0.0.1:${port}`);
  return () => {
    if (session.closed || session.destroyed) session = http2.connect(`http://127.0.0.1:${port}`);
    return session;
  };
}

/** Chunks per second through the dispatcher: echo streams a 64 KiB string in 1,024 chunks, `streams` at once. */
async function echoChunksPerSecond(session: http2.ClientHttp2Session, streams: number): Promise<number> {
  const request = submitStreamRequest({ backend: "echo", payload: { case: "json", value: fromJson(ValueSchema, "x".repeat(64 * 1024)) }, metadata: { stream_chunks: "1024" } });
  const t0 = performance.now();
  const counts = await Promise.all(Array.from({ length: streams }, () => countGrpcChunks(session, request)));
  return counts.reduce((a, b) => a + b, 0) / ((performance.now() - t0) / 1000);
}

function submitStreamRequest(init: Parameters<typeof create<typeof SubmitRequestSchema>>[1]): Buffer {
  return grpcFrame(toBinary(SubmitRequestSchema, create(SubmitRequestSchema, init)));
}

/** Milliseconds from sending the chat request to the first SSE bytes carrying content; reads the rest. */
function firstSseContent(agent: http.Agent, port: number, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first = NaN;
    const req = http.request(
      { agent, host: "127.0.0.1", port, method: "POST", path: "/v1/chat/completions", headers: { "content-type": "application/json" } },
      (res) => {
        res.on("data", (c: Buffer) => {
          if (Number.isNaN(first) && c.includes('"content"')) first = performance.now() - t0;
        });
        res.on("end", () => (Number.isNaN(first) ? reject(new Error(`no content from the upstream (HTTP ${res.statusCode})`)) : resolve(first)));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A SubmitStreamResponse whose event is a Chunk starts with field 2's tag, length-delimited: 0x12. */
const CHUNK_TAG = 0x12;

/** A data handler that calls `onChunk` as the first byte of each Chunk message arrives (envelopes walked, nothing decoded). */
function chunkStarts(onChunk: () => void): (c: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  let reported = false;
  return (c) => {
    pending = pending.length === 0 ? c : Buffer.concat([pending, c]);
    while (pending.length >= 5) {
      const end = 5 + pending.readUInt32BE(1);
      if (!reported && end > 5) {
        if (pending.length < 6) return;
        reported = true;
        if (pending[5] === CHUNK_TAG) onChunk();
      }
      if (pending.length < end) return;
      pending = pending.subarray(end);
      reported = false;
    }
  };
}

function submitStream(session: http2.ClientHttp2Session): http2.ClientHttp2Stream {
  return session.request({ ":method": "POST", ":path": SUBMIT_STREAM, "content-type": "application/grpc", te: "trailers" });
}

/** Milliseconds from sending SubmitStream to the first Chunk message; reads the rest and checks the status. */
function firstGrpcChunk(session: http2.ClientHttp2Session, request: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first = NaN;
    let status: string | undefined;
    const feed = chunkStarts(() => (first = performance.now() - t0));
    const s = submitStream(session);
    s.on("data", (c: Buffer) => Number.isNaN(first) && feed(c));
    s.on("trailers", (t) => (status = String(t["grpc-status"])));
    s.on("error", reject);
    s.on("close", () => (Number.isNaN(first) || status !== "0" ? reject(new Error(`SubmitStream: no chunk or grpc-status ${status}`)) : resolve(first)));
    s.end(request);
  });
}

/** Chunk messages in one SubmitStream answer. */
function countGrpcChunks(session: http2.ClientHttp2Session, request: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    const s = submitStream(session);
    s.on("data", chunkStarts(() => n++));
    s.on("error", reject);
    s.on("close", () => resolve(n));
    s.end(request);
  });
}
