import type { Readable } from "node:stream";
import { DispatchError, type HandlerContext } from "../core/index.js";
import { transportError } from "./upstream-errors.js";
import type { CommonOptions } from "./upstream-options.js";
import type { OpenResponse } from "./upstream.js";

/** One server-sent event (the WHATWG event-stream format): its name and its data lines joined. */
export interface ServerSentEvent {
  event: string | undefined;
  data: string;
}

/**
 * The lines of a streamed answer, parsed as they arrive. A line longer than
 * max_response_bytes fails the call (RESOURCE_EXHAUSTED), so one endless line
 * cannot grow without bound; a transport failure midway is classed as a
 * failure of the answer (never retried unless the backend is idempotent).
 */
export async function* lines(res: OpenResponse, ctx: HandlerContext, common: CommonOptions): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let carry = "";
  try {
    for (;;) {
      const text = await nextText(res.body, decoder);
      if (text === undefined) break;
      carry += text;
      let nl = carry.indexOf("\n");
      while (nl >= 0) {
        const line = carry.slice(0, nl);
        carry = carry.slice(nl + 1);
        yield line.endsWith("\r") ? line.slice(0, -1) : line;
        nl = carry.indexOf("\n");
      }
      if (carry.length > common.maxResponseBytes) {
        throw new DispatchError("resource_exhausted", `upstream ${ctx.workerId} sent a line longer than max_response_bytes (${common.maxResponseBytes})`);
      }
    }
  } catch (e) {
    res.body.destroy();
    throw e instanceof DispatchError ? e : transportError(e, "answer", ctx, common);
  }
  carry += decoder.decode();
  if (carry !== "") yield carry;
}

/** Bytes of the body decoded per step: a stalled stream keeps at most this much of its text in hand. */
const TEXT_STEP = 16 * 1024;

/**
 * The body's next bytes as text, or undefined at its end. Read here, not
 * through the body's async iterator, so that no Buffer is held while the
 * caller is suspended: a chunk is a view of a whole 64 KiB socket read, and
 * an iterator (and a generator's `for await` variable) keeps the last one
 * alive; 1,000 streams whose clients stopped reading held about 200 MiB so.
 */
async function nextText(body: Readable, decoder: InstanceType<typeof TextDecoder>): Promise<string | undefined> {
  for (;;) {
    if (body.errored !== null) throw body.errored;
    const n = Math.min(TEXT_STEP, body.readableLength);
    const chunk = (n > 0 ? body.read(n) : body.read()) as Buffer | null;
    if (chunk !== null) return decoder.decode(chunk, { stream: true });
    if (body.readableEnded) return undefined;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        body.off("readable", done);
        body.off("end", done);
        body.off("error", failed);
        resolve();
      };
      const failed = (e: unknown) => {
        body.off("readable", done);
        body.off("end", done);
        reject(e);
      };
      body.once("readable", done);
      body.once("end", done);
      body.once("error", failed);
    });
  }
}

/** Server-sent events of a text/event-stream answer; comments and retry/id fields are skipped. */
export async function* serverSentEvents(res: OpenResponse, ctx: HandlerContext, common: CommonOptions): AsyncGenerator<ServerSentEvent> {
  let event: string | undefined;
  let data: string[] = [];
  for await (const line of lines(res, ctx, common)) {
    if (line === "") {
      if (data.length > 0) yield { event, data: data.join("\n") };
      event = undefined;
      data = [];
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
  }
  if (data.length > 0) yield { event, data: data.join("\n") };
}

/** Whether a content type is a stream the http backend passes through as chunks. */
export function streamKind(contentType: string): "sse" | "ndjson" | undefined {
  const t = contentType.split(";")[0]!.trim().toLowerCase();
  if (t === "text/event-stream") return "sse";
  if (t === "application/x-ndjson" || t === "application/jsonl" || t === "application/ndjson") return "ndjson";
  return undefined;
}
