import type { Clock } from "./clock.js";
import { DispatchError } from "./errors.js";
import type { Chunk, ChunkStream } from "./handler.js";
import type { JobRun } from "./job-run.js";
import { ChunkCollector } from "./stream.js";

/** What the stream driver reports back to the attempt runner. */
export interface StreamOutcome {
  /** The stream ended: its collected result (Submit) or its final metadata (SubmitStream). */
  done(run: JobRun, final: Record<string, string> | void, collected: ChunkCollector | undefined): void;
  failed(run: JobRun, e: unknown): void;
  /** A chunk was pulled from the handler (the first sets time to first chunk). */
  chunk(run: JobRun): void;
}

/**
 * Pulls a handler's chunk stream for one attempt. For SubmitStream each chunk
 * goes to the job's sink, and the next is pulled only once the caller took
 * it; for Submit the chunks are collected into one answer. A chunk that does
 * not come within the backend's firstChunkTimeoutMs (the first) or
 * stallTimeoutMs (the later ones, counted from when it was asked for, so a
 * slow reader is not taken for a stalled upstream) fails the attempt as a
 * backend timeout: retryable (failover) while no chunk has reached the
 * caller. The handler's iterator is closed whenever the attempt ends early,
 * which closes its upstream request.
 */
export async function driveStream(run: JobRun, stream: ChunkStream, clock: Clock, out: StreamOutcome): Promise<void> {
  const job = run.job;
  const entry = job.entry;
  const it = stream[Symbol.asyncIterator]();
  const collector = job.sink === undefined ? new ChunkCollector() : undefined;
  let first = true;
  try {
    for (;;) {
      const limit = first ? entry.firstChunkTimeoutMs : entry.stallTimeoutMs;
      const r = await nextWithin(it, limit, clock, () => timeoutError(run, first, limit));
      if (job.run !== run) {
        // The job settled or moved on while this attempt waited: its stream is no longer wanted.
        void it.return?.();
        return;
      }
      if (r.done === true) {
        out.done(run, r.value, collector);
        return;
      }
      const chunk = checkChunk(r.value);
      out.chunk(run);
      first = false;
      if (collector !== undefined) collector.add(chunk);
      else await job.sink!.push(chunk);
      if (job.run !== run) {
        void it.return?.();
        return;
      }
    }
  } catch (e) {
    // Stop the handler and its upstream request: a stalled stream may never end by itself.
    run.abort(e instanceof DispatchError ? e : DispatchError.from(e));
    void Promise.resolve()
      .then(() => it.return?.())
      .catch(() => undefined);
    out.failed(run, e);
  }
}

function nextWithin(
  it: AsyncIterator<Chunk, Record<string, string> | void>,
  ms: number,
  clock: Clock,
  timeout: () => DispatchError,
): Promise<IteratorResult<Chunk, Record<string, string> | void>> {
  if (ms <= 0) return it.next();
  return new Promise((resolve, reject) => {
    const timer = clock.setTimer(() => reject(timeout()), ms, undefined);
    it.next().then(
      (r) => {
        clock.clearTimer(timer);
        resolve(r);
      },
      (e: unknown) => {
        clock.clearTimer(timer);
        reject(e);
      },
    );
  });
}

function timeoutError(run: JobRun, first: boolean, ms: number): DispatchError {
  const what = first ? `no first chunk within ${ms} ms` : `no chunk for ${ms} ms`;
  // Before any chunk reached the caller another worker may still answer: retryable (failover).
  return new DispatchError("deadline_exceeded", `backend "${run.job.backend}" stream stalled on ${run.worker.id}: ${what}`, {
    retryable: run.job.sink?.delivered !== true,
    abortReason: "timeout",
  });
}

function checkChunk(v: unknown): Chunk {
  if (typeof v !== "object" || v === null) {
    throw new DispatchError("internal", `a streaming handler yielded ${v === null ? "null" : typeof v}, expected a chunk { text?, json?, binary? }`);
  }
  return v as Chunk;
}
