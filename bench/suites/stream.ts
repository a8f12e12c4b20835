import { startTarget, type Target } from "../lib/child.js";
import { fmt, percentile, table, writeResult, type BenchContext } from "../lib/report.js";

const CONCURRENCY = 100;
const TOKENS = 20;
const SUBMIT_STREAM = "/dispatcher.v1.DispatcherService/SubmitStream";

/**
 * Streaming: time to first chunk through the dispatcher against calling the
 * fake OpenAI-compatible upstream (examples/fake-llm.mjs) directly, with 100
 * streams open at once (closed loop: each of 100 callers starts its next
 * stream when the last one ended), in alternating rounds; and chunks per
 * second through the dispatcher (echo streaming a payload in 1,024 chunks).
 * The upstream and the dispatcher each run in their own process; the bench
 * process is the client, with the same client (fetch) on both paths: the
 * upstream's server-sent events directly, the dispatcher's SubmitStream over
 * the Connect protocol (HTTP/1.1, JSON).
 */
export async function streamSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const rounds = ctx.mode === "full" ? 10 : ctx.mode === "quick" ? 4 : 1;
  const perCaller = ctx.mode === "smoke" ? 1 : 5;
  const targets: Target[] = [];
  try {
    const fake = await startTarget("fake-llm", "fake-llm", ["--ttft-ms", "20", "--token-ms", "2"]);
    targets.push(fake);
    const upstream = `http://127.0.0.1:${fake.port}`;
    const dispatcher = await startTarget("dispatcher", "dispatcher", ["--genai", upstream]);
    targets.push(dispatcher);
    const base = `http://127.0.0.1:${dispatcher.port}`;
    const words = Array.from({ length: TOKENS }, (_, i) => `t${i}`).join(" ");
    const chat = { model: "m", stream: true, messages: [{ role: "user", content: words }] };

    const direct = () =>
      firstChunk(`${upstream}/v1/chat/completions`, { "content-type": "application/json" }, JSON.stringify(chat), '"content"');
    const through = () =>
      firstChunk(`${base}${SUBMIT_STREAM}`, connectHeaders, envelope({ backend: "chat", json: chat }), '"chunk"');

    const ttft: Record<"direct" | "dispatcher", number[]> = { direct: [], dispatcher: [] };
    const loop = async (run: () => Promise<number>, into: number[]) => {
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          for (let i = 0; i < perCaller; i++) into.push(await run());
        }),
      );
    };
    // One unmeasured round each: connections, JIT.
    await loop(direct, []);
    await loop(through, []);
    for (let r = 0; r < rounds; r++) {
      for (const which of r % 2 === 0 ? (["direct", "dispatcher"] as const) : (["dispatcher", "direct"] as const)) {
        await loop(which === "direct" ? direct : through, ttft[which]);
      }
      ctx.log(`stream round ${r + 1}/${rounds}`);
    }

    // Chunks per second through the dispatcher: echo streams a 64 KiB string in 1,024 chunks, 32 streams at once.
    const streams = ctx.mode === "smoke" ? 4 : 32;
    const text = "x".repeat(64 * 1024);
    const t0 = performance.now();
    const counts = await Promise.all(
      Array.from({ length: streams }, () => countChunks(`${base}${SUBMIT_STREAM}`, envelope({ backend: "echo", json: text, metadata: { stream_chunks: "1024" } }))),
    );
    const chunksPerSecond = counts.reduce((a, b) => a + b, 0) / ((performance.now() - t0) / 1000);

    const p = (xs: number[], q: number) => percentile(xs, q);
    const added50 = p(ttft.dispatcher, 0.5) - p(ttft.direct, 0.5);
    const added99 = p(ttft.dispatcher, 0.99) - p(ttft.direct, 0.99);
    ctx.log(
      `\nStreaming: ${CONCURRENCY} streams open at once (closed loop, ${perCaller} per caller per round, ${rounds} alternating rounds), ` +
        `${TOKENS} tokens each; fake upstream: 20 ms to the first token, 2 ms apart; upstream, dispatcher and client in three processes`,
    );
    ctx.log(
      table(
        ["figure", "direct to the upstream", "through the dispatcher", "added", "target"],
        [
          ["time to first chunk p50 ms", fmt(p(ttft.direct, 0.5), 2), fmt(p(ttft.dispatcher, 0.5), 2), fmt(added50, 2), ""],
          ["time to first chunk p99 ms", fmt(p(ttft.direct, 0.99), 2), fmt(p(ttft.dispatcher, 0.99), 2), fmt(added99, 2), "≤ 1 ms added"],
          [`chunks/s through the dispatcher (echo, ${streams} streams)`, "", fmt(chunksPerSecond), "", ""],
        ],
      ),
    );
    const data = { concurrency: CONCURRENCY, tokens: TOKENS, rounds, perCaller, samples: ttft.dispatcher.length, addedP50Ms: added50, addedP99Ms: added99, chunksPerSecond, ttft };
    ctx.log(`wrote ${writeResult(ctx, "stream", data)}`);
    return data;
  } finally {
    await Promise.all(targets.map((t) => t.stop()));
  }
}

const connectHeaders = { "content-type": "application/connect+json", "connect-protocol-version": "1" };

/** One Connect-protocol streaming request message: a 5-byte envelope around the JSON. */
function envelope(message: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  const out = Buffer.alloc(5 + json.length);
  out.writeUInt32BE(json.length, 1);
  json.copy(out, 5);
  return out;
}

/** Milliseconds from sending the request to the first response bytes that contain `marker`; reads the rest. */
async function firstChunk(url: string, headers: Record<string, string>, body: string | Buffer, marker: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url, { method: "POST", headers, body });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let first = NaN;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (Number.isNaN(first) && decoder.decode(value, { stream: true }).includes(marker)) first = performance.now() - t0;
  }
  if (Number.isNaN(first)) throw new Error(`no chunk from ${url} (HTTP ${res.status})`);
  return first;
}

/** Chunk messages in a Connect-protocol response stream (envelopes whose JSON holds "chunk"). */
async function countChunks(url: string, body: Buffer): Promise<number> {
  const res = await fetch(url, { method: "POST", headers: connectHeaders, body });
  const bytes = Buffer.from(await res.arrayBuffer());
  let n = 0;
  for (let at = 0; at + 5 <= bytes.length; ) {
    const len = bytes.readUInt32BE(at + 1);
    if (bytes[at] === 0 && bytes.subarray(at + 5, at + 5 + len).toString().startsWith('{"chunk"')) n++;
    at += 5 + len;
  }
  return n;
}
