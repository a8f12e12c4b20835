import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { startApp } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { DispatcherService } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { fmt, percentile, table, writeResult, type BenchContext } from "../lib/report.js";

const CONCURRENCY = 100;
const TOKENS = 20;

/**
 * Streaming: time to first chunk through the dispatcher against calling the
 * fake OpenAI-compatible upstream (examples/fake-llm.mjs) directly, at 100
 * concurrent streams, in alternating rounds; and chunks per second through
 * one process (echo streaming its payload in many chunks). Client, dispatcher
 * and upstream share this process and its two cores: the added time is an
 * upper bound (the dispatcher's CPU is also the client's).
 */
export async function streamSuite(ctx: BenchContext): Promise<Record<string, unknown>> {
  const rounds = ctx.mode === "full" ? 10 : ctx.mode === "quick" ? 4 : 1;
  // The example script, from the working tree (the bench runs from the repository's root, as `npm run bench` does).
  const { startFakeLlm } = (await import(pathToFileURL(resolve("examples/fake-llm.mjs")).href)) as {
    startFakeLlm(o: object): Promise<{ url: string; close(): Promise<void> }>;
  };
  const fake = await startFakeLlm({ ttftMs: 20, tokenMs: 2 });
  const app = await startApp(
    validateConfig({
      server: { port: 0 },
      backends: [
        { name: "chat", kind: "genai", endpoints: [fake.url], max_concurrency: CONCURRENCY, queue_capacity: 0, options: { model: "m" } },
        { name: "echo", kind: "echo", workers: 2, max_concurrency: 64 },
      ],
    }),
  );
  const client = createClient(DispatcherService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${app.server.port}` }));
  const words = Array.from({ length: TOKENS }, (_, i) => `t${i}`).join(" ");
  const body = JSON.stringify({ model: "m", stream: true, messages: [{ role: "user", content: words }] });

  const direct = async (): Promise<number> => {
    const t0 = performance.now();
    const res = await fetch(`${fake.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const reader = res.body!.getReader();
    let first = NaN;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (Number.isNaN(first) && new TextDecoder().decode(value).includes('"content"')) first = performance.now() - t0;
    }
    return first;
  };
  const through = async (): Promise<number> => {
    const t0 = performance.now();
    let first = NaN;
    for await (const m of client.submitStream({
      backend: "chat",
      payload: { case: "json", value: fromJson(ValueSchema, JSON.parse(body) as JsonValue) },
    })) {
      if (Number.isNaN(first) && m.event.case === "chunk") first = performance.now() - t0;
    }
    return first;
  };

  const ttft: Record<"direct" | "dispatcher", number[]> = { direct: [], dispatcher: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const which of r % 2 === 0 ? (["direct", "dispatcher"] as const) : (["dispatcher", "direct"] as const)) {
        const run = which === "direct" ? direct : through;
        ttft[which].push(...(await Promise.all(Array.from({ length: CONCURRENCY }, run))));
      }
      ctx.log(`stream round ${r + 1}/${rounds}`);
    }
    // Chunks per second through one process: echo streams a 64 KiB string in 1,024 chunks, 32 streams at once.
    const text = "x".repeat(64 * 1024);
    const t0 = performance.now();
    let chunks = 0;
    const streams = ctx.mode === "smoke" ? 4 : 32;
    await Promise.all(
      Array.from({ length: streams }, async () => {
        for await (const m of client.submitStream({ backend: "echo", payload: { case: "json", value: { kind: { case: "stringValue", value: text } } }, metadata: { stream_chunks: "1024" } })) {
          if (m.event.case === "chunk") chunks++;
        }
      }),
    );
    const chunksPerSecond = chunks / ((performance.now() - t0) / 1000);
    const p = (xs: number[], q: number) => percentile(xs, q);
    const added50 = p(ttft.dispatcher, 0.5) - p(ttft.direct, 0.5);
    const added99 = p(ttft.dispatcher, 0.99) - p(ttft.direct, 0.99);
    ctx.log(`\nStreaming (${CONCURRENCY} concurrent streams of ${TOKENS} tokens, fake upstream: 20 ms to the first token, 2 ms apart; ${rounds} alternating rounds; client, dispatcher and upstream in one process)`);
    ctx.log(
      table(
        ["figure", "direct to the upstream", "through the dispatcher", "added", "target"],
        [
          ["time to first chunk p50 ms", fmt(p(ttft.direct, 0.5), 2), fmt(p(ttft.dispatcher, 0.5), 2), fmt(added50, 2), ""],
          ["time to first chunk p99 ms", fmt(p(ttft.direct, 0.99), 2), fmt(p(ttft.dispatcher, 0.99), 2), fmt(added99, 2), "≤ 1 ms added"],
          ["chunks/s through one process (echo, 32 streams)", "", fmt(chunksPerSecond), "", ""],
        ],
      ),
    );
    const data = { concurrency: CONCURRENCY, tokens: TOKENS, rounds, ttft, addedP50Ms: added50, addedP99Ms: added99, chunksPerSecond };
    ctx.log(`wrote ${writeResult(ctx, "stream", data)}`);
    return data;
  } finally {
    await app.close();
    await fake.close();
  }
}
