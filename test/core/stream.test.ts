import { describe, expect, it } from "vitest";
import { createDispatcher, DispatchError, type Chunk, type HandlerContext, type StreamEvent } from "../../src/core/index.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function* tokens(words: string[], gapMs = 0, usage?: Record<string, string>): AsyncGenerator<Chunk, Record<string, string> | void> {
  for (const w of words) {
    if (gapMs > 0) await sleep(gapMs);
    yield { text: w };
  }
  return usage;
}

async function collect(events: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

describe("streaming handlers", () => {
  it("Submit collects a stream into one answer, with the stream's final metadata", async () => {
    const d = createDispatcher({ backends: [{ name: "s", handler: () => tokens(["Hel", "lo"], 0, { total_tokens: "2" }) }] });
    const r = await d.submit({ backend: "s" });
    expect(r.payload).toEqual({ json: { text: "Hello" }, metadata: { total_tokens: "2" } });
    expect(r.metadata).toEqual({ total_tokens: "2" });
    expect(r.chunks).toBe(2);
    expect(r.timeToFirstChunkMs).toBeGreaterThanOrEqual(0);
  });

  it("SubmitStream: started, then the chunks in order, then the result", async () => {
    const d = createDispatcher({ backends: [{ name: "s", handler: () => tokens(["a", "b", "c"], 1, { finish: "stop" }) }] });
    const job = d.submitStream({ backend: "s", sessionId: "x" });
    const events = await collect(job.events);
    expect(events[0]).toMatchObject({ type: "started", workerId: "s/0", attempt: 1, affinity: "miss" });
    expect(events.slice(1).map((e) => (e.type === "chunk" ? e.chunk.text : e.type))).toEqual(["a", "b", "c"]);
    const r = await job.result;
    expect(r.metadata).toEqual({ finish: "stop" });
    expect(r.chunks).toBe(3);
  });

  it("pulls the handler no faster than the caller reads", async () => {
    let pulled = 0;
    async function* endless(): AsyncGenerator<Chunk> {
      for (;;) {
        pulled++;
        yield { text: "x" };
      }
    }
    const d = createDispatcher({ backends: [{ name: "s", handler: () => endless() }] });
    const job = d.submitStream({ backend: "s" });
    const it = job.events[Symbol.asyncIterator]();
    await it.next(); // started
    await it.next(); // first chunk
    await sleep(50);
    // One chunk taken, at most the next one pulled and waiting: never a runaway.
    expect(pulled).toBeLessThanOrEqual(2);
    await it.return!(undefined);
    await expect(job.result).rejects.toMatchObject({ code: "cancelled" });
    expect(d.snapshot()[0]).toMatchObject({ inflight: 0, cancelled: 1 });
  });

  it("fails over to another worker when the first chunk does not come in time", async () => {
    const d = createDispatcher({
      random: () => 0.99, // the first attempt goes to s/0
      backends: [
        {
          name: "s",
          workers: 2,
          firstChunkTimeoutMs: 50,
          retry: { maxAttempts: 2, initialBackoffMs: 1 },
          outlier: { consecutiveFailures: 0 },
          handler: (_p, ctx: HandlerContext) => (ctx.workerId === "s/0" ? tokens(["late"], 10_000) : tokens(["fast", "er"])),
        },
      ],
    });
    const t0 = performance.now();
    const job = d.submitStream({ backend: "s" });
    const events = await collect(job.events);
    expect(events.map((e) => (e.type === "started" ? `started ${e.workerId} #${e.attempt}` : e.chunk.text))).toEqual([
      "started s/0 #1",
      "started s/1 #2",
      "fast",
      "er",
    ]);
    expect(performance.now() - t0).toBeLessThan(50 + 1_000);
    expect((await job.result).attempts).toBe(2);
    expect(d.snapshot().map((w) => w.errors)).toEqual([1, 0]);
  });

  it("ends the stream with DEADLINE_EXCEEDED when it stalls after a chunk reached the caller, without a retry", async () => {
    let attempts = 0;
    const d = createDispatcher({
      backends: [
        {
          name: "s",
          stallTimeoutMs: 50,
          retry: { maxAttempts: 3, initialBackoffMs: 1 },
          handler: async function* (_p, ctx) {
            attempts++;
            yield { text: "first" };
            await new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
          },
        },
      ],
    });
    const job = d.submitStream({ backend: "s" });
    const seen: string[] = [];
    const err = await (async () => {
      for await (const e of job.events) if (e.type === "chunk") seen.push(e.chunk.text!);
    })().catch((e: DispatchError) => e);
    expect(seen).toEqual(["first"]);
    expect(err).toMatchObject({ code: "deadline_exceeded" });
    expect(attempts).toBe(1);
    await expect(job.result).rejects.toMatchObject({ code: "deadline_exceeded" });
  });

  it("aborts the handler and closes its iterator when the caller goes away", async () => {
    let closed = false;
    let reason: string | undefined;
    const d = createDispatcher({
      backends: [
        {
          name: "s",
          handler: async function* (_p, ctx) {
            ctx.signal.addEventListener("abort", () => (reason = (ctx.signal.reason as DispatchError).abortReason));
            try {
              for (;;) {
                await sleep(5);
                yield { text: "t" };
              }
            } finally {
              closed = true;
            }
          },
        },
      ],
    });
    const ac = new AbortController();
    const job = d.submitStream({ backend: "s", signal: ac.signal });
    let n = 0;
    const reading = (async () => {
      for await (const e of job.events) if (e.type === "chunk" && ++n === 3) ac.abort();
    })().catch((e: DispatchError) => e.code);
    expect(await reading).toBe("cancelled");
    await sleep(20);
    expect(reason).toBe("cancel");
    expect(closed).toBe(true);
  });

  it("streams a one-answer handler as one chunk", async () => {
    const d = createDispatcher({ backends: [{ name: "s", handler: (p) => ({ ...p, metadata: { k: "v" } }) }] });
    const job = d.submitStream({ backend: "s", payload: { json: { hi: 1 } } });
    const events = await collect(job.events);
    expect(events.map((e) => e.type)).toEqual(["started", "chunk"]);
    expect(events[1]).toMatchObject({ type: "chunk", chunk: { json: { hi: 1 } } });
    expect((await job.result).metadata).toEqual({ k: "v" });
  });

  it("ends a refused stream with the refusal", async () => {
    const d = createDispatcher({ backends: [{ name: "s", handler: () => tokens(["x"]) }] });
    const job = d.submitStream({ backend: "nope" });
    await expect(collect(job.events)).rejects.toMatchObject({ code: "not_found" });
    await expect(job.result).rejects.toMatchObject({ code: "not_found" });
  });
});
