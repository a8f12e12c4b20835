import { adaptDown } from "./adaptive.js";
import { DispatchError } from "./errors.js";
import { isChunkStream, type ChunkStream, type HandlerResult } from "./handler.js";
import type { Job } from "./job.js";
import { callHandler, JobRun } from "./job-run.js";
import { deadlineError, isResult, type Lifecycle } from "./lifecycle.js";
import { retryDelay, withinBudget } from "./retry.js";
import { selectWorker } from "./select.js";
import type { ChunkCollector } from "./stream.js";
import { driveStream, type StreamOutcome } from "./stream-run.js";

/**
 * Runs attempts: calls a started job's handler, turns what it returns or
 * throws into the job's next transition (settled, or backoff and a retry on
 * a worker chosen by the same selection as admission).
 */
export class Attempts {
  /** Runs whose handler returned or threw synchronously, settled together in one microtask. */
  private readonly returned: (JobRun | undefined)[] = [];
  private readonly settleReturned = () => this.drainReturned();
  private readonly streamOutcome: StreamOutcome = {
    done: (run, final, collected) => this.streamDone(run, final, collected),
    failed: (run, e) => this.failed(run, e),
    chunk: (run) => this.chunkPulled(run),
  };

  constructor(private readonly life: Lifecycle) {
    life.startAttempt = (job, now) => this.start(job, now);
    life.backoffOver = (job) => this.retryNow(job);
  }

  private start(job: Job, now: number): void {
    const life = this.life;
    life.transition(job, "running", now);
    const run = new JobRun(job, job.worker, now);
    job.run = run;
    job.chunks = 0;
    job.firstChunkAt = 0;
    job.sink?.started({ type: "started", workerId: job.worker.id, affinity: job.affinity, queueWaitMs: now - job.admittedAt, attempt: job.attempt });
    let out: Promise<HandlerResult | ChunkStream> | HandlerResult | ChunkStream;
    try {
      out = job.context !== undefined ? job.context.runInAsyncScope(callHandler, undefined, run) : callHandler(run);
    } catch (e) {
      this.returnedLater(run, e, true);
      return;
    }
    if (typeof (out as { then?: unknown } | null)?.then === "function") {
      Promise.resolve(out).then(
        (r) => this.succeeded(run, r),
        (e: unknown) => this.failed(run, e),
      );
    } else {
      this.returnedLater(run, out, false);
    }
  }

  /**
   * Settles a run whose handler returned (or threw) synchronously in a
   * microtask, as if it had returned a promise, so that a synchronous
   * handler cannot re-enter pump(); one microtask serves every such run of
   * the turn instead of a promise and two closures each.
   */
  private returnedLater(run: JobRun, outcome: unknown, threw: boolean): void {
    run.outcome = outcome;
    run.threw = threw;
    if (this.returned.push(run) === 1) queueMicrotask(this.settleReturned);
  }

  private drainReturned(): void {
    const runs = this.returned;
    // Runs settled here may start others that return at once: they join this loop.
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i]!;
      runs[i] = undefined;
      const outcome = run.outcome;
      run.outcome = undefined;
      try {
        if (run.threw) this.failed(run, outcome);
        else this.succeeded(run, outcome as HandlerResult | ChunkStream);
      } catch (e) {
        // Not expected (observers are guarded): report it without stranding the other runs.
        this.life.report(e, "settling a run");
      }
    }
    runs.length = 0;
  }

  private succeeded(run: JobRun, r: HandlerResult | ChunkStream | null | undefined): void {
    const job = run.job;
    if (job.run !== run) return; // settled or retried meanwhile: this run's answer is no longer wanted
    if (isChunkStream(r)) {
      const w = run.worker;
      w.streams++;
      void driveStream(run, r, this.life.clock, this.streamOutcome).finally(() => w.streams--);
      return;
    }
    if (r === undefined || r === null) r = { json: null };
    if (!isResult(r)) {
      this.failed(run, new DispatchError("internal", `backend "${job.backend}" handler returned no payload (expected { json } or { binary })`));
      return;
    }
    job.result = r;
    if (job.sink !== undefined) {
      // One answer to a streaming caller is one chunk; it stays queued for the caller after the job settles.
      this.chunkPulled(run);
      job.sink.push({ json: r.json, binary: r.binary, metadata: r.metadata }).catch(() => undefined);
      job.result = { json: null, metadata: r.metadata };
    }
    this.life.settle(job, "ok", undefined);
  }

  private failed(run: JobRun, e: unknown): void {
    const job = run.job;
    if (job.run !== run) return;
    const life = this.life;
    const now = life.clock.now();
    // However the handler put it, once the client's deadline has passed (its timer may be late) or the
    // client has gone, that is what ended the call: it says nothing of the upstream and feeds no ejection.
    if (now >= job.deadline) {
      life.settle(job, "deadline_exceeded", deadlineError(job, "while running"));
      return;
    }
    if (job.clientSignal?.aborted === true) {
      life.clientCancelled(job);
      return;
    }
    const err = DispatchError.from(e);
    // A handler's RESOURCE_EXHAUSTED is its upstream's 429: pause the worker (Retry-After, else 1 s; at most 60 s).
    // Not the service's own bound on an answer's size: that says nothing of the upstream's capacity.
    if (err.code === "resource_exhausted" && !err.localLimit) {
      life.gate.pause(run.worker, Math.min(60_000, Math.max(1, err.retryAfterMs ?? 1_000)));
      adaptDown(run.worker, now);
    }
    const delay = this.retryDelay(job, err, now);
    if (delay < 0) {
      life.settle(job, "error", err);
      return;
    }
    job.run = undefined;
    life.transition(job, "backoff", now, { error: err, delayMs: delay });
    life.pump(job.worker, now);
  }

  /** The stream of `run` ended: Submit gets the collected answer, SubmitStream the final metadata. */
  private streamDone(run: JobRun, final: Record<string, string> | void, collected: ChunkCollector | undefined): void {
    const job = run.job;
    if (job.run !== run) return;
    try {
      job.result = collected !== undefined ? collected.result(final) : { json: null, metadata: final || undefined };
    } catch (e) {
      this.failed(run, e);
      return;
    }
    this.life.settle(job, "ok", undefined);
  }

  private chunkPulled(run: JobRun): void {
    const job = run.job;
    const now = this.life.clock.now();
    if (job.chunks++ === 0) {
      job.firstChunkAt = now;
      run.worker.ttft.record(now - job.startedAt, now);
    }
    const o = this.life.observer;
    if (o.jobChunk !== undefined) {
      try {
        o.jobChunk(job);
      } catch (e) {
        this.life.report(e, "jobChunk");
      }
    }
  }

  /** Wait before the job's next attempt, or -1 when it must not run again. */
  private retryDelay(job: Job, err: DispatchError, now: number): number {
    const p = job.entry.retry;
    // Once a chunk reached a streaming caller, another attempt would repeat or mix its answer.
    if (p === undefined || this.life.closing || job.sink?.delivered === true) return -1;
    const delay = retryDelay(p, job.attempt, err, this.life.random);
    if (delay < 0) return -1;
    // A retry that cannot finish before the deadline would only turn the real error into DEADLINE_EXCEEDED.
    if (now + delay >= job.deadline) return -1;
    // A job's first retry takes a share of the budget; its later ones already hold it.
    if (job.retries === 0 && !withinBudget(p, job.entry.retrying, job.entry.active)) {
      const o = this.life.observer;
      if (o.retryDenied !== undefined) {
        try {
          o.retryDenied(job, err, `retry budget exhausted: ${job.entry.retrying} of ${job.entry.active} active jobs already retrying`);
        } catch (e) {
          this.life.report(e, "retryDenied");
        }
      }
      return -1;
    }
    return delay;
  }

  /**
   * The backoff of `job` is over: place it on a worker again. A session that
   * came with a live pin stays on its worker (which holds its state, e.g. a
   * prompt cache) while that worker can admit; any other job prefers a
   * worker other than the one that just failed it.
   */
  private retryNow(job: Job): void {
    const life = this.life;
    if (job.state !== "backoff") return;
    const now = life.clock.now();
    const last = job.lastError!;
    if (now >= job.deadline) {
      life.settle(job, "deadline_exceeded", new DispatchError("deadline_exceeded", `the call's deadline passed while waiting to retry: ${last.message}`, { abortReason: "deadline" }));
      return;
    }
    const sel = life.closing ? undefined : selectWorker(job.entry, job.sessionId, now, life.random, job.worker, job.affinity === "hit");
    if (sel?.worker === undefined) {
      // No worker can take it (queues full, or closing): the caller hears why the last attempt failed.
      life.settle(job, "error", last);
      return;
    }
    if (job.affinity === "hit" && sel.affinity !== "hit") job.affinity = "spill";
    job.worker = sel.worker;
    job.attempt++;
    life.transition(job, "queued", now);
    life.pump(sel.worker, now);
  }
}
