import type { Readable } from "node:stream";
import { DispatchError, type HandlerContext } from "../core/index.js";
import { transportError } from "./upstream-errors.js";
import type { CommonOptions } from "./upstream-options.js";
import { discard, type OpenResponse } from "./upstream.js";

/** One server-sent event (the WHATWG event-stream format): its name and its data lines joined. */
export interface ServerSentEvent {
  event: string | undefined;
  data: string;
}

/**
 * The lines of a streamed answer, split as they arrive. A line longer than
 * max_response_bytes fails the call (RESOURCE_EXHAUSTED), so one endless line
 * cannot grow without bound; a transport failure midway is classed as a
 * failure of the answer (never retried unless the backend is idempotent).
 *
 * A reader, not a chain of async generators: every line already in hand is
 * taken synchronously, and the body is read only when none is. An LLM sends
 * a token as two lines of one event; through nested generators each line cost
 * several promise hops, and a token's own processing is what the next
 * stream's first token waits behind.
 *
 * Lines end at "\n" or "\r\n"; with `crEnds` (server-sent events, whose
 * format allows it) a lone "\r" ends one too. NDJSON keeps "\r" inside a
 * line: JSON may have it as whitespace between tokens.
 */
export class LineReader {
  private readonly decoder = new TextDecoder();
  /** Text read and not yet split; `at` is where its unsplit part starts. */
  private text = "";
  private at = 0;
  private ended = false;

  constructor(
    private readonly res: OpenResponse,
    private readonly ctx: HandlerContext,
    private readonly common: CommonOptions,
    private readonly crEnds = false,
  ) {}

  /** A whole line already read (without its line ending), or undefined when none is. */
  take(): string | undefined {
    const nl = this.text.indexOf("\n", this.at);
    if (this.crEnds) {
      const cr = this.text.indexOf("\r", this.at);
      if (cr >= 0 && (nl < 0 || cr < nl)) {
        // A "\r" at the end of what was read may be the first half of a "\r\n": the next read says.
        if (cr + 1 === this.text.length && !this.ended) return undefined;
        const line = this.text.slice(this.at, cr);
        this.at = cr + 1 === nl ? nl + 1 : cr + 1;
        return line;
      }
    }
    if (nl < 0) {
      if (!this.ended || this.at >= this.text.length) return undefined;
      // The answer ended without a final newline: its last line is what is left.
      const last = this.text.slice(this.at);
      this.at = this.text.length;
      return last;
    }
    const end = nl > this.at && this.text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
    const line = this.text.slice(this.at, end);
    this.at = nl + 1;
    return line;
  }

  /** Whether the answer ended and every line of it was taken. */
  get done(): boolean {
    return this.ended && this.at >= this.text.length;
  }

  /** The next line, or undefined at the end of the answer. */
  async next(): Promise<string | undefined> {
    for (;;) {
      const line = this.take();
      if (line !== undefined) return line;
      if (this.ended) return undefined;
      await this.fill();
    }
  }

  /** Reads more of the body into the text (or marks its end); called when take() gives nothing. */
  async fill(): Promise<void> {
    const { res, ctx, common } = this;
    let more: string | undefined;
    try {
      more = await nextText(res.body, this.decoder);
    } catch (e) {
      discard(res.body);
      throw transportError(e, "answer", ctx, common);
    }
    // Drop what was split off, so the text held is only the unfinished line and what came after it.
    const rest = this.at === 0 ? this.text : this.text.slice(this.at);
    this.at = 0;
    if (more === undefined) {
      this.ended = true;
      this.text = rest + this.decoder.decode();
      return;
    }
    this.text = rest + more;
    // `rest` holds no line ending (every whole line was taken before this read; at most a "\r" waiting for its
    // "\n"), so the unfinished line is all of the text when `more` holds none, else what follows its last one.
    const nl = Math.max(more.lastIndexOf("\n"), this.crEnds ? more.lastIndexOf("\r") : -1);
    const unfinished = nl < 0 ? this.text.length : more.length - nl - 1;
    if (unfinished > common.maxResponseBytes) throw this.tooLarge("a line longer");
  }

  /** Most characters a line (or an event, EventReader) may have: max_response_bytes. */
  get max(): number {
    return this.common.maxResponseBytes;
  }

  /** Closes the answer and says what in it was over max_response_bytes: the service's own bound, not the upstream's. */
  tooLarge(what: string): DispatchError {
    discard(this.res.body);
    return new DispatchError("resource_exhausted", `upstream ${this.ctx.workerId} sent ${what} than max_response_bytes (${this.max})`, { localLimit: true });
  }
}

/**
 * Server-sent events of a text/event-stream answer; comments and retry/id
 * fields are skipped. `next()` parses the lines in hand synchronously and
 * reads the body only when they hold no whole event.
 */
export class EventReader {
  private readonly lines: LineReader;
  private event: string | undefined = undefined;
  private data: string[] = [];
  /** Characters of `data` so far: an event of many short lines is bounded as one long line is. */
  private size = 0;

  constructor(res: OpenResponse, ctx: HandlerContext, common: CommonOptions) {
    this.lines = new LineReader(res, ctx, common, true);
  }

  /** The next event, or undefined at the end of the answer. */
  async next(): Promise<ServerSentEvent | undefined> {
    for (;;) {
      for (let line = this.lines.take(); line !== undefined; line = this.lines.take()) {
        const e = this.add(line);
        if (e !== undefined) return e;
      }
      // The answer ended: an event not closed by a blank line still counts.
      if (this.lines.done) return this.data.length === 0 ? undefined : this.add("");
      await this.lines.fill();
    }
  }

  /** Adds one line; returns the event a blank line completes. */
  private add(line: string): ServerSentEvent | undefined {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = undefined;
        return undefined;
      }
      const e = { event: this.event, data: this.data.length === 1 ? this.data[0]! : this.data.join("\n") };
      this.event = undefined;
      this.data = [];
      this.size = 0;
      return e;
    }
    if (line.charCodeAt(0) === 58 /* ":" */) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32 /* " " */) value = value.slice(1);
    if (field === "data") {
      this.size += value.length + 1;
      if (this.size > this.lines.max) throw this.lines.tooLarge("an event larger");
      this.data.push(value);
    } else if (field === "event") this.event = value;
    return undefined;
  }
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

/**
 * Refuses a streamed answer that cannot be read as one: not the expected
 * kind (a 200 text/html page where events were asked for), or compressed
 * (nothing asked for it: the service sends no Accept-Encoding). Its body is
 * not read. UNAVAILABLE; retryable only where the backend is idempotent, as
 * the upstream may have run the request.
 */
export function checkStreamed(res: OpenResponse, ctx: HandlerContext, common: CommonOptions, want: "sse" | "ndjson"): void {
  const encoding = res.contentEncoding.trim().toLowerCase();
  let what: string | undefined;
  if (encoding !== "" && encoding !== "identity") what = `with content-encoding ${quoted(encoding)}, which the service did not ask for`;
  else if (streamKind(res.contentType) !== want) {
    what = `with content type ${quoted(res.contentType.split(";")[0]!.trim())}, not ${want === "sse" ? "an event stream (text/event-stream)" : "NDJSON"}`;
  }
  if (what === undefined) return;
  discard(res.body);
  const message = `upstream ${ctx.workerId} answered a streamed request ${what}`;
  common.log.warn({ worker: ctx.workerId, endpoint: ctx.endpoint, attempt: ctx.attempt }, message);
  throw new DispatchError("unavailable", message, { retryable: common.idempotent });
}

/** An upstream's header value in a message: at most 64 printable characters. */
function quoted(v: string): string {
  const s = v.replace(/[^\x20-\x7e]/g, "?");
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

/** Whether a content type is a stream the http backend passes through as chunks. */
export function streamKind(contentType: string): "sse" | "ndjson" | undefined {
  const t = contentType.split(";")[0]!.trim().toLowerCase();
  if (t === "text/event-stream") return "sse";
  if (t === "application/x-ndjson" || t === "application/jsonl" || t === "application/ndjson") return "ndjson";
  return undefined;
}
