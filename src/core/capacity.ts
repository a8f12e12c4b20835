import type { Clock, TimerHandle } from "./clock.js";
import { DispatchError } from "./errors.js";
import type { Job } from "./job.js";
import type { CapacityAnswer, LimitKind, LimitSpec, LimitStatus, LimitStore } from "./limits.js";
import type { Worker } from "./worker.js";

/** A worker's limits (its own, then its backend's) and what its last refusal said. */
export interface WorkerLimits {
  readonly specs: readonly LimitSpec[];
  /** Tokens reserved per attempt when the request says nothing (max_tokens). */
  readonly tokenEstimate: number;
  /** Whether any spec counts tokens: only then is a reservation computed. */
  readonly countsTokens: boolean;
  /** The last refusal: which limit, and until when (clock ms) no attempt starts here. */
  refusal: { key: string; kind: LimitKind; until: number } | undefined;
  /** Wakes the worker when the refusal should be over. */
  timer: TimerHandle | undefined;
  /** An acquire of a shared store is on its way: one at a time per worker, in queue order. */
  acquiring: boolean;
}

/** What the gate decided for the worker's head job. */
export type Gate = "start" | "wait" | "ended";

/** How the gate calls back into the lifecycle (src/core/lifecycle.ts). */
export interface CapacityOwner {
  readonly clock: Clock;
  startAttempt(job: Job, now: number): void;
  pump(w: Worker<Job>, now: number): void;
  settle(job: Job, outcome: "error", error: DispatchError, pump: boolean): void;
  report(error: unknown, where: string): void;
}

/**
 * The capacity gate (DESIGN.md §11): before an attempt starts, the worker's
 * limits must grant it a lease. A refused job keeps its place at the head of
 * the queue and the worker wakes when the store says capacity is back (one
 * timer per worker); the job's deadline ends it as for any queued job.
 * Workers without limits never come here: their path costs nothing.
 */
export class CapacityGate {
  private readonly wake = (w: Worker<Job>) => {
    w.limits!.timer = undefined;
    this.owner.pump(w, this.owner.clock.now());
  };

  constructor(
    private readonly store: LimitStore,
    private readonly owner: CapacityOwner,
  ) {}

  /** A limit as the store last saw it; what metrics show. A store that throws shows the limit as unknown, not a crash. */
  readonly status = (spec: LimitSpec): LimitStatus => {
    try {
      return this.store.status(spec);
    } catch (e) {
      this.owner.report(e, "limit store status");
      return { key: spec.key, requestsLeft: undefined, tokensLeft: undefined, concurrencyLeft: undefined, pausedUntil: 0 };
    }
  };

  /** Asks for the head job `job` of `w`; "start" means it holds a lease and may start now. */
  ask(w: Worker<Job>, job: Job, now: number): Gate {
    const l = w.limits!;
    if (l.acquiring) return "wait";
    // Wait for the timer while it is armed. Not without one: a timer that fired early (Node's fire up to
    // ~2 ms before their target) finds the refusal not quite over, and waiting then would never wake again.
    // A refusal for concurrency ends when a lease is released, which the timer cannot know: ask again then.
    if (l.timer !== undefined && l.refusal !== undefined && l.refusal.until > now && l.refusal.kind !== "max_concurrency") return "wait";
    if (l.timer !== undefined) {
      this.owner.clock.clearTimer(l.timer);
      l.timer = undefined;
    }
    l.refusal = undefined;
    let answer: CapacityAnswer | Promise<CapacityAnswer>;
    try {
      answer = this.store.acquire({ limits: l.specs, tokens: this.reservation(job, l) });
    } catch (e) {
      answer = unavailable(e);
    }
    if (!isPromise(answer)) return this.answered(w, job, answer, now);
    l.acquiring = true;
    answer.then(
      (a) => this.later(w, job, a),
      (e: unknown) => this.later(w, job, unavailable(e)),
    );
    return "wait";
  }

  /** Tokens to reserve for `job`: the request's own max_tokens where the backend reads it, else the estimate. */
  reservation(job: Job, l: WorkerLimits): number {
    if (!l.countsTokens) return 0;
    const asked = job.entry.tokensFor?.(job.payload);
    return typeof asked === "number" && Number.isFinite(asked) && asked >= 0 ? asked : l.tokenEstimate;
  }

  /**
   * The upstream behind `w` answered 429: no attempt starts under its
   * narrowest limit key for `forMs`, on any replica sharing the store. A
   * worker without limits gets a key of its own, and the gate from then on.
   */
  pause(w: Worker<Job>, forMs: number): void {
    if (w.limits === undefined) w.limits = newWorkerLimits([{ key: `worker:${w.id}`, windowMs: 60_000 }], 0);
    const key = w.limits.specs[0]!.key;
    try {
      this.store.pause(key, forMs);
    } catch (e) {
      this.owner.report(e, "limit store pause");
    }
  }

  /** The earliest a refused worker may start again (clock ms), or 0 when nothing refused it lately. */
  static blockedUntil(w: Worker<Job>, now: number): number {
    const r = w.limits?.refusal;
    return r !== undefined && r.until > now ? r.until : 0;
  }

  private later(w: Worker<Job>, job: Job, a: CapacityAnswer): void {
    const l = w.limits!;
    l.acquiring = false;
    const now = this.owner.clock.now();
    try {
      if (job.state !== "queued" || job.worker !== w || now >= job.deadline || w.inflight >= w.maxConcurrency) {
        // The job went (cancel, deadline, displaced) while the store answered: give the capacity back.
        if (a.granted) a.lease.release(0);
      } else if (this.answered(w, job, a, now) === "start") {
        this.owner.startAttempt(job, now);
      }
      this.owner.pump(w, now);
    } catch (e) {
      this.owner.report(e, "capacity answer");
    }
  }

  private answered(w: Worker<Job>, job: Job, a: CapacityAnswer, now: number): Gate {
    if (a.granted) {
      job.lease = a.lease;
      return "start";
    }
    if (a.kind === "unavailable") {
      this.owner.settle(job, "error", new DispatchError("unavailable", `limits of worker "${w.id}" cannot be checked: ${"reason" in a ? a.reason : "store unavailable"}`), false);
      return "ended";
    }
    const l = w.limits!;
    // At least 1 ms: timers fire up to ~2 ms early, and a wake-up that finds nothing freed re-arms rather than spins.
    const wait = Math.max(1, a.retryInMs);
    l.refusal = { key: a.key, kind: a.kind, until: now + wait };
    l.timer = this.owner.clock.setTimer(this.wake, wait, w);
    return "wait";
  }
}

/** The message of a refusal at admission: which limit, of what, for how long. */
export function limitMessage(w: Worker<Job>, now: number): string {
  const r = w.limits!.refusal!;
  const what = r.key.startsWith("backend:") ? `backend "${r.key.slice(8)}"` : `worker "${w.id}"`;
  const secs = ((r.until - now) / 1000).toFixed(1);
  return r.kind === "paused"
    ? `${what} is paused by its upstream (429) for the next ${secs} s`
    : `${r.kind} of ${what} exhausted for the next ${secs} s`;
}

/** Tokens an answer used, from its usage metadata (total_tokens, else prompt + completion); undefined when unknown. */
export function tokensUsed(metadata: Record<string, string> | undefined): number | undefined {
  if (metadata === undefined) return undefined;
  const total = Number(metadata["total_tokens"]);
  if (Number.isFinite(total) && total >= 0 && metadata["total_tokens"] !== "") return total;
  const p = Number(metadata["prompt_tokens"] ?? NaN);
  const c = Number(metadata["completion_tokens"] ?? NaN);
  return Number.isFinite(p) && Number.isFinite(c) ? p + c : undefined;
}

function isPromise(a: CapacityAnswer | Promise<CapacityAnswer>): a is Promise<CapacityAnswer> {
  return typeof (a as { then?: unknown }).then === "function";
}

/** A store that threw or rejected: its error may name internal addresses, so the caller hears only that it failed. */
function unavailable(e: unknown): CapacityAnswer {
  void e;
  return { granted: false, key: "", kind: "unavailable", retryInMs: 0, reason: "the limit store failed" };
}

export function newWorkerLimits(specs: LimitSpec[], tokenEstimate: number): WorkerLimits {
  return {
    specs,
    tokenEstimate,
    countsTokens: specs.some((s) => s.tokensPerMinute !== undefined),
    refusal: undefined,
    timer: undefined,
    acquiring: false,
  };
}
