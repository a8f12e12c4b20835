import { PassThrough } from "node:stream";
import { setImmediate as tick } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { EventReader, LineReader, type ServerSentEvent } from "../../src/backends/event-stream.js";
import type { CommonOptions } from "../../src/backends/upstream.js";
import { DispatchError, type HandlerContext } from "../../src/core/index.js";
import { seededRandom } from "../helpers/manual-clock.js";

/**
 * The readers that split a streamed upstream answer into lines and
 * server-sent events, fed the same bytes cut at random places (inside a
 * "\r\n", inside a multi-byte character, one byte at a time), arriving at
 * once or over several turns of the event loop; compared with the
 * WHATWG event-stream rules applied to the whole text at once.
 */

const ctx = { workerId: "chat-0" } as HandlerContext;
const common = (maxResponseBytes = 1 << 20) => ({ maxResponseBytes, exposeUpstreamErrors: false }) as unknown as CommonOptions;

function answer(pieces: Buffer[], spread: boolean) {
  const body = new PassThrough({ highWaterMark: 1 });
  void (async () => {
    for (const p of pieces) {
      body.write(p);
      if (spread) await tick();
    }
    body.end();
  })();
  return { status: 200, contentType: "text/event-stream", contentEncoding: "", body };
}

/** The bytes cut at `cuts` random places (duplicates make empty pieces, which a stream never delivers: dropped). */
function cut(bytes: Buffer, random: () => number, cuts: number): Buffer[] {
  const at = Array.from({ length: cuts }, () => Math.floor(random() * bytes.length)).sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const i of [...at, bytes.length]) {
    if (i > from) pieces.push(bytes.subarray(from, i));
    from = i;
  }
  return pieces;
}

/** The reference: the event-stream rules applied to the whole text (lines end at "\r\n", "\n" or "\r"). */
function reference(text: string): ServerSentEvent[] {
  const out: ServerSentEvent[] = [];
  let event: string | undefined;
  let data: string[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.at(-1) === "") lines.pop();
  for (const line of lines) {
    if (line === "") {
      if (data.length > 0) out.push({ event, data: data.join("\n") });
      event = undefined;
      data = [];
    } else if (!line.startsWith(":")) {
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
    }
  }
  if (data.length > 0) out.push({ event, data: data.join("\n") });
  return out;
}

function randomStream(random: () => number): string {
  const words = ["tok", " ", "é", "日本", "🙂", "data", ":", "x".repeat(40), '{"a":1}', "\u00a0"];
  const word = () => words[Math.floor(random() * words.length)]!;
  let s = "";
  const n = 1 + Math.floor(random() * 30);
  for (let i = 0; i < n; i++) {
    const r0 = random();
    const nl = r0 < 0.3 ? "\r\n" : r0 < 0.45 ? "\r" : "\n";
    const r = random();
    if (r < 0.1) s += `: keep-alive${nl}`;
    else if (r < 0.2) s += `event: ${word()}${nl}`;
    else if (r < 0.25) s += `id: ${i}${nl}retry: 10${nl}`;
    else if (r < 0.3) s += `data${nl}`;
    const lines = 1 + Math.floor(random() * 3);
    for (let j = 0; j < lines; j++) s += `data:${random() < 0.8 ? " " : ""}${word()}${word()}${word()}${nl}`;
    if (random() < 0.9) s += nl;
  }
  return s;
}

async function readAll(reader: EventReader): Promise<ServerSentEvent[]> {
  const out: ServerSentEvent[] = [];
  for (let e = await reader.next(); e !== undefined; e = await reader.next()) out.push(e);
  return out;
}

describe("server-sent events from a streamed answer", () => {
  it("give the same events however the bytes are cut and whenever they arrive (seeds 1–200)", async () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = seededRandom(seed);
      const text = randomStream(random);
      const bytes = Buffer.from(text, "utf8");
      const byteAtATime = seed % 10 === 0;
      const pieces = byteAtATime ? [...bytes].map((b) => Buffer.from([b])) : cut(bytes, random, Math.floor(random() * 12));
      const events = await readAll(new EventReader(answer(pieces, seed % 2 === 0), ctx, common()));
      expect(events, `seed ${seed}: ${JSON.stringify(text)}`).toEqual(reference(text));
    }
  });

  it("count an event the answer ends without closing", async () => {
    const events = await readAll(new EventReader(answer([Buffer.from("data: a\n\ndata: b")], false), ctx, common()));
    expect(events).toEqual([
      { event: undefined, data: "a" },
      { event: undefined, data: "b" },
    ]);
  });
});

describe("lines of a streamed answer", () => {
  it("end at \\n or \\r\\n (a lone \\r stays in the line), keep a last line without one, and come one by one however the bytes are cut", async () => {
    const text = "a\r\n\nb c\n日本\r\n{\"a\":\r1}\nlast";
    const bytes = Buffer.from(text, "utf8");
    for (let seed = 1; seed <= 50; seed++) {
      const reader = new LineReader(answer(cut(bytes, seededRandom(seed), 6), seed % 2 === 0), ctx, common());
      const lines: string[] = [];
      for (let l = await reader.next(); l !== undefined; l = await reader.next()) lines.push(l);
      expect(lines).toEqual(["a", "", "b c", "日本", '{"a":\r1}', "last"]);
    }
  });

  it("fail with RESOURCE_EXHAUSTED on a line longer than max_response_bytes, before holding much more of it", async () => {
    const body = answer([Buffer.from("data: ok\n"), ...Array.from({ length: 64 }, () => Buffer.alloc(1024, 0x61))], true);
    const reader = new LineReader(body, ctx, common(8 * 1024));
    expect(await reader.next()).toBe("data: ok");
    const e = await reader.next().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DispatchError);
    expect((e as DispatchError).code).toBe("resource_exhausted");
    expect((e as DispatchError).message).toMatch(/line longer than max_response_bytes \(8192\)/);
    expect(body.body.destroyed).toBe(true);
  });

  it("pass a line exactly max_response_bytes long", async () => {
    const line = "x".repeat(8 * 1024);
    const reader = new LineReader(answer(cut(Buffer.from(`${line}\nend\n`), seededRandom(7), 5), true), ctx, common(8 * 1024));
    expect(await reader.next()).toBe(line);
    expect(await reader.next()).toBe("end");
    expect(await reader.next()).toBeUndefined();
  });
});
