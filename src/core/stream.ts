import { DispatchError } from "./errors.js";
import type { Chunk, HandlerResult } from "./handler.js";
import type { AffinityOutcome } from "./observer.js";

/** What a streaming caller sees (DESIGN.md §9): Started per attempt, the chunks, then the end. */
export type StreamEvent =
  | { type: "started"; workerId: string; affinity: AffinityOutcome; queueWaitMs: number; attempt: number }
  | { type: "chunk"; chunk: Chunk };

/**
 * Hands a streaming job's events to its caller with a buffer of one chunk:
 * the attempt's driver pushes a chunk and waits until the caller has taken
 * it before it pulls the next one from the handler, so the upstream is read
 * no faster than the client reads (end-to-end backpressure). Started events
 * are control events and never wait. The end (the job's result or error)
 * comes through `end()`.
 */
export class StreamSink {
  private readonly events: StreamEvent[] = [];
  private waiter: (() => void) | undefined = undefined;
  /** Resolves the driver's push once its chunk was taken; rejects it when the caller went away. */
  private taken: { resolve: () => void; reject: (e: unknown) => void } | undefined = undefined;
  private ended = false;
  private failure: DispatchError | undefined = undefined;
  /** Whether any chunk reached the caller: a retry or failover is legal only before that. */
  delivered = false;

  started(e: Extract<StreamEvent, { type: "started" }>): void {
    this.events.push(e);
    this.wake();
  }

  /** The driver's chunk: resolves when the caller has taken it. */
  push(chunk: Chunk): Promise<void> {
    if (this.ended) return Promise.reject(this.failure ?? new DispatchError("cancelled", "the stream's caller went away"));
    this.events.push({ type: "chunk", chunk });
    this.wake();
    return new Promise<void>((resolve, reject) => {
      this.taken = { resolve, reject };
    });
  }

  /** The job settled: no more events after those queued. */
  end(error: DispatchError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = error;
    // A driver still waiting on its chunk learns the stream is over.
    this.taken?.reject(error ?? new DispatchError("cancelled", "the stream ended"));
    this.taken = undefined;
    this.wake();
  }

  /** The caller's next event; undefined at the end. Throws the job's error, after any queued events. */
  async next(): Promise<StreamEvent | undefined> {
    for (;;) {
      const e = this.events.shift();
      if (e !== undefined) {
        if (e.type === "chunk") {
          this.delivered = true;
          const t = this.taken;
          this.taken = undefined;
          t?.resolve();
        }
        return e;
      }
      if (this.ended) {
        if (this.failure !== undefined) throw this.failure;
        return undefined;
      }
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}

/** Most bytes a stream collected into one answer (Submit on a streaming backend) may hold. */
export const MAX_COLLECTED_BYTES = 4 * 1024 * 1024;

/**
 * Collects a stream's chunks into one answer, for a caller of Submit: the
 * text deltas joined, the JSON chunks in a list, binary chunks concatenated.
 * `{ json: { text, chunks? } }` when there is text or JSON, `{ binary }` when
 * only bytes came; metadata merged, later keys winning.
 */
export class ChunkCollector {
  private text = "";
  private readonly json: unknown[] = [];
  private readonly bytes: Uint8Array[] = [];
  private size = 0;
  private metadata: Record<string, string> | undefined = undefined;
  count = 0;

  add(c: Chunk): void {
    this.count++;
    if (c.text !== undefined) {
      this.text += c.text;
      this.size += c.text.length * 2;
    }
    if (c.json !== undefined) {
      this.json.push(c.json);
      this.size += 64;
    }
    if (c.binary !== undefined) {
      this.bytes.push(c.binary);
      this.size += c.binary.byteLength;
    }
    if (c.metadata !== undefined) this.metadata = { ...this.metadata, ...c.metadata };
    if (this.size > MAX_COLLECTED_BYTES) {
      throw new DispatchError("resource_exhausted", `the streamed answer is larger than ${MAX_COLLECTED_BYTES} bytes; call SubmitStream to receive it in chunks`, {
        localLimit: true,
      });
    }
  }

  result(final: Record<string, string> | void): HandlerResult {
    const metadata = final ? { ...this.metadata, ...final } : this.metadata;
    if (this.bytes.length > 0 && this.text === "" && this.json.length === 0) {
      return { binary: Buffer.concat(this.bytes), metadata };
    }
    const json: Record<string, unknown> = { text: this.text };
    if (this.json.length > 0) json["chunks"] = this.json;
    return { json, metadata };
  }
}
