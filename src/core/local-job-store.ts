import { randomUUID } from "node:crypto";
import {
  isTerminal,
  type AsyncJob,
  type AsyncJobEvent,
  type AsyncJobOutcome,
  type AsyncJobState,
  type ClaimedJob,
  type JobStore,
  type NewAsyncJob,
} from "./job-store.js";

interface Kept {
  job: AsyncJob;
  events: AsyncJobEvent[];
  /** When an ended job is forgotten (epoch ms). */
  forgetAt: number;
}

export interface LocalJobStoreOptions {
  /** How long an ended job (and its idempotency key) is kept, ms. */
  resultTtlMs: number;
  /** Most jobs kept at once, ended ones included: past it, Enqueue is refused. */
  maxJobs: number;
}

/**
 * Background jobs held in this process: bounded (maxJobs, each ended job
 * forgotten after resultTtlMs) and lost on restart, as documented. Event ids
 * are a job's own sequence numbers.
 */
export class LocalJobStore implements JobStore {
  private readonly kept = new Map<string, Kept>();
  private readonly keys = new Map<string, string>();
  private readonly queue: string[] = [];
  private readonly queuedBy = new Map<string, number>();
  private readonly ended = new Map<string, Partial<Record<AsyncJobState, number>>>();
  private waiter: (() => void) | undefined;
  private cancelled: ((id: string) => void) | undefined;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly o: LocalJobStoreOptions) {
    this.sweeper = setInterval(() => this.sweep(), 1_000);
    this.sweeper.unref();
  }

  enqueue(n: NewAsyncJob, maxQueued: number): Promise<{ id: string; created: boolean } | { refused: string }> {
    this.sweep();
    const keyOf = `${n.backend}\u0000${n.idempotencyKey}`;
    if (n.idempotencyKey !== "") {
      const id = this.keys.get(keyOf);
      if (id !== undefined && this.kept.has(id)) return Promise.resolve({ id, created: false });
    }
    const queued = this.queuedBy.get(n.backend) ?? 0;
    if (queued >= maxQueued) return Promise.resolve({ refused: `backend "${n.backend}" holds its cap of ${maxQueued} queued background jobs` });
    if (this.kept.size >= this.o.maxJobs) return Promise.resolve({ refused: `the service holds its cap of ${this.o.maxJobs} background jobs (jobs.max_jobs)` });
    const now = Date.now();
    const job: AsyncJob = {
      id: randomUUID(), backend: n.backend, state: "queued", request: n.request, idempotencyKey: n.idempotencyKey,
      createdAt: now, deadline: n.deadline, startedAt: 0, finishedAt: 0, attempts: 0, workerId: "",
      result: undefined, errorCode: "", errorMessage: "", cancelRequested: false, traceparent: n.traceparent,
    };
    this.kept.set(job.id, { job, events: [{ id: "1", time: now, state: "queued" }], forgetAt: Infinity });
    if (n.idempotencyKey !== "") this.keys.set(keyOf, job.id);
    this.queuedBy.set(n.backend, queued + 1);
    this.queue.push(job.id);
    this.waiter?.();
    return Promise.resolve({ id: job.id, created: true });
  }

  get(id: string): Promise<AsyncJob | undefined> {
    return Promise.resolve(this.kept.get(id)?.job);
  }

  cancel(id: string): Promise<AsyncJob | undefined> {
    const k = this.kept.get(id);
    if (k === undefined) return Promise.resolve(undefined);
    if (k.job.state === "queued") this.end(k, { state: "cancelled", errorCode: "cancelled", errorMessage: "cancelled by CancelJob while queued" });
    else if (k.job.state === "running") {
      k.job.cancelRequested = true;
      this.cancelled?.(id);
    }
    return Promise.resolve(k.job);
  }

  events(id: string, afterId: string | undefined, max: number): Promise<{ events: AsyncJobEvent[]; job: AsyncJob } | undefined> {
    const k = this.kept.get(id);
    if (k === undefined) return Promise.resolve(undefined);
    // Ids are 1, 2, 3, …: the events after n start at index n.
    const from = afterId === undefined ? 0 : Number(afterId);
    return Promise.resolve({ events: k.events.slice(from, from + max), job: k.job });
  }

  validEventId(afterId: string): boolean {
    return /^[0-9]{1,15}$/.test(afterId);
  }

  async claim(max: number, waitMs: number): Promise<ClaimedJob[]> {
    if (this.queue.length === 0 && waitMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, waitMs);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.waiter = done;
      });
      this.waiter = undefined;
    }
    const out: ClaimedJob[] = [];
    while (out.length < max && this.queue.length > 0) {
      const k = this.kept.get(this.queue.shift()!);
      if (k === undefined || k.job.state !== "queued") continue;
      out.push({ job: k.job, claim: k.job.id });
    }
    return out;
  }

  started(c: ClaimedJob, workerId: string): Promise<boolean> {
    const k = this.kept.get(c.job.id);
    if (k === undefined || isTerminal(k.job.state) || k.job.cancelRequested) return Promise.resolve(false);
    if (k.job.state === "queued") this.queuedBy.set(k.job.backend, (this.queuedBy.get(k.job.backend) ?? 1) - 1);
    k.job.state = "running";
    k.job.startedAt = Date.now();
    k.job.workerId = workerId;
    k.job.attempts++;
    this.event(k, { state: "running" });
    return Promise.resolve(true);
  }

  chunk(c: ClaimedJob, chunk: Uint8Array): Promise<void> {
    const k = this.kept.get(c.job.id);
    if (k !== undefined && !isTerminal(k.job.state)) this.event(k, { chunk });
    return Promise.resolve();
  }

  finish(c: ClaimedJob, outcome: AsyncJobOutcome): Promise<boolean> {
    const k = this.kept.get(c.job.id);
    if (k === undefined || isTerminal(k.job.state)) return Promise.resolve(false);
    this.end(k, outcome);
    return Promise.resolve(true);
  }

  onCancel(fn: (id: string) => void): void {
    this.cancelled = fn;
  }

  keepAlive(claims: readonly ClaimedJob[]): Promise<string[]> {
    return Promise.resolve(claims.filter((c) => this.kept.get(c.job.id)?.job.cancelRequested === true).map((c) => c.job.id));
  }

  /** Queued and running now; ended in total since the start (as the Redis store counts). */
  counts(): Promise<Record<string, Partial<Record<AsyncJobState, number>>>> {
    const out: Record<string, Partial<Record<AsyncJobState, number>>> = {};
    for (const [backend, ended] of this.ended) out[backend] = { ...ended };
    for (const { job } of this.kept.values()) {
      if (isTerminal(job.state)) continue;
      const b = (out[job.backend] ??= {});
      b[job.state] = (b[job.state] ?? 0) + 1;
    }
    return Promise.resolve(out);
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    this.waiter?.();
    return Promise.resolve();
  }

  private end(k: Kept, o: AsyncJobOutcome): void {
    if (k.job.state === "queued") this.queuedBy.set(k.job.backend, (this.queuedBy.get(k.job.backend) ?? 1) - 1);
    const now = Date.now();
    k.job.state = o.state;
    k.job.finishedAt = now;
    k.job.result = o.result;
    k.job.errorCode = o.errorCode ?? "";
    k.job.errorMessage = o.errorMessage ?? "";
    k.forgetAt = now + this.o.resultTtlMs;
    let ended = this.ended.get(k.job.backend);
    if (ended === undefined) this.ended.set(k.job.backend, (ended = {}));
    ended[o.state] = (ended[o.state] ?? 0) + 1;
    this.event(k, { state: o.state });
  }

  private event(k: Kept, e: { state?: AsyncJobState; chunk?: Uint8Array }): void {
    k.events.push({ id: String(k.events.length + 1), time: Date.now(), ...e });
  }

  /** Forgets ended jobs past their TTL, and expires queued jobs past their deadline. */
  private sweep(): void {
    const now = Date.now();
    for (const [id, k] of this.kept) {
      if (k.forgetAt <= now) {
        this.kept.delete(id);
        if (k.job.idempotencyKey !== "") this.keys.delete(`${k.job.backend}\u0000${k.job.idempotencyKey}`);
      } else if (k.job.state === "queued" && k.job.deadline <= now) {
        this.end(k, { state: "expired", errorCode: "deadline_exceeded", errorMessage: "the job's timeout passed while it was queued" });
      }
    }
  }
}
