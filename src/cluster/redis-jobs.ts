import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { AsyncJob, AsyncJobEvent, AsyncJobOutcome, AsyncJobState, ClaimedJob, JobStore, NewAsyncJob } from "../core/index.js";
import { CANCEL, CHUNK, ENQUEUE, FINISH, STARTED } from "./job-scripts.js";

export interface RedisJobStoreOptions {
  /** Commands. */
  redis: Redis;
  /** The runner's blocking reads of the queue (XREADGROUP BLOCK): a connection of its own. */
  blocking: Redis;
  keyPrefix: string;
  /** This replica's consumer name in the group: unique per process. */
  consumer: string;
  resultTtlMs: number;
  /** A claim not renewed for this long is taken over by another replica. */
  claimTimeoutMs: number;
}

type Scripts = Redis & {
  jobEnqueue(...a: (string | number | Buffer | Uint8Array)[]): Promise<[string, number]>;
  jobStarted(...a: (string | number)[]): Promise<number>;
  jobChunk(...a: (string | number | Buffer | Uint8Array)[]): Promise<number>;
  jobFinish(...a: (string | number | Buffer | Uint8Array)[]): Promise<number>;
  jobCancel(...a: (string | number)[]): Promise<string>;
};

const GROUP = "runners";
const STATES = new Set<AsyncJobState>(["queued", "running", "succeeded", "failed", "cancelled", "expired"]);

/**
 * Background jobs durable in Redis (DESIGN.md §12): a job accepted by any
 * replica is an entry of one Redis stream read by a consumer group; a replica
 * claims entries, renews its claims while it runs them, and acknowledges them
 * when the job's terminal state is written. A replica that dies (SIGKILL)
 * stops renewing: after claim_timeout another replica takes its entries over
 * (XAUTOCLAIM) and runs those jobs again. So execution is at least once;
 * the terminal state, written by a script that checks the state it leaves,
 * is recorded exactly once.
 */
export class RedisJobStore implements JobStore {
  private readonly r: Scripts;
  private groupReady: Promise<void> | undefined;

  constructor(private readonly o: RedisJobStoreOptions) {
    const r = o.redis as Scripts;
    r.defineCommand("jobEnqueue", { lua: ENQUEUE, numberOfKeys: 5 });
    r.defineCommand("jobStarted", { lua: STARTED, numberOfKeys: 3 });
    r.defineCommand("jobChunk", { lua: CHUNK, numberOfKeys: 2 });
    r.defineCommand("jobFinish", { lua: FINISH, numberOfKeys: 5 });
    r.defineCommand("jobCancel", { lua: CANCEL, numberOfKeys: 5 });
    this.r = r;
  }

  async enqueue(n: NewAsyncJob, maxQueued: number): Promise<{ id: string; created: boolean } | { refused: string }> {
    const id = randomUUID();
    const [got, created] = await this.r.jobEnqueue(
      this.idemKey(n.backend, n.idempotencyKey), this.k("jobs:counts"), this.k("jobs:queue"), this.jobKey(id), this.evKey(id),
      id, n.backend, Buffer.from(n.request), n.idempotencyKey, n.deadline, maxQueued, n.traceparent,
    );
    if (created === -1) return { refused: `backend "${n.backend}" holds its cap of ${maxQueued} queued background jobs` };
    return { id: got, created: created === 1 };
  }

  async get(id: string): Promise<AsyncJob | undefined> {
    const h = await this.r.hgetallBuffer(this.jobKey(id));
    return jobOf(id, h);
  }

  async cancel(id: string): Promise<AsyncJob | undefined> {
    const job = await this.get(id);
    if (job === undefined) return undefined;
    await this.r.jobCancel(this.jobKey(id), this.evKey(id), this.k("jobs:counts"), this.idemKey(job.backend, job.idempotencyKey), this.k("jobs:queue"), this.o.resultTtlMs);
    return this.get(id);
  }

  async events(id: string, afterId: string | undefined, max: number): Promise<{ events: AsyncJobEvent[]; job: AsyncJob } | undefined> {
    const [entries, job] = await Promise.all([
      this.r.xrangeBuffer(this.evKey(id), afterId === undefined ? "-" : `(${afterId}`, "+", "COUNT", max),
      this.get(id),
    ]);
    if (job === undefined) return undefined;
    const events: AsyncJobEvent[] = entries.map(([eid, fields]) => {
      const e: AsyncJobEvent = { id: eid.toString(), time: Number(eid.toString().split("-")[0]) };
      for (let i = 0; i < fields.length; i += 2) {
        const f = fields[i]!.toString();
        if (f === "s") e.state = fields[i + 1]!.toString() as AsyncJobState;
        else if (f === "c") e.chunk = new Uint8Array(fields[i + 1]!);
      }
      return e;
    });
    return { events, job };
  }

  validEventId(afterId: string): boolean {
    return /^[0-9]{1,20}-[0-9]{1,20}$/.test(afterId);
  }

  async claim(max: number, waitMs: number): Promise<ClaimedJob[]> {
    await this.ensureGroup();
    const queue = this.k("jobs:queue");
    const entries: [string, string][] = [];
    try {
      // First the entries of replicas that stopped renewing (died), then new ones.
      const [, stale] = (await this.r.xautoclaim(queue, GROUP, this.o.consumer, this.o.claimTimeoutMs, "0-0", "COUNT", max)) as [string, [string, string[]][]];
      for (const [eid, fields] of stale) if (fields !== null) entries.push([eid, fields[1]!]);
      if (entries.length < max) {
        const fresh = (await this.o.blocking.xreadgroup("GROUP", GROUP, this.o.consumer, "COUNT", max - entries.length, "BLOCK", waitMs, "STREAMS", queue, ">")) as
          | [string, [string, string[]][]][]
          | null;
        for (const [eid, fields] of fresh?.[0]?.[1] ?? []) entries.push([eid, fields[1]!]);
      }
    } catch (e) {
      // A Redis that restarted empty has no group: make it again, then go on.
      if (String((e as Error).message).includes("NOGROUP")) this.groupReady = undefined;
      throw e;
    }
    const out: ClaimedJob[] = [];
    for (const [eid, id] of entries) {
      const job = await this.get(id);
      if (job === undefined || (job.state !== "queued" && job.state !== "running")) {
        // Ended (cancelled, or recorded by a run that was thought dead) or gone: nothing to run.
        await this.r.multi().xack(queue, GROUP, eid).xdel(queue, eid).exec();
        continue;
      }
      out.push({ job, claim: eid });
    }
    return out;
  }

  async started(c: ClaimedJob, workerId: string): Promise<boolean> {
    return (await this.r.jobStarted(this.jobKey(c.job.id), this.evKey(c.job.id), this.k("jobs:counts"), workerId)) === 1;
  }

  async chunk(c: ClaimedJob, chunk: Uint8Array): Promise<void> {
    await this.r.jobChunk(this.jobKey(c.job.id), this.evKey(c.job.id), Buffer.from(chunk));
  }

  async finish(c: ClaimedJob, o: AsyncJobOutcome): Promise<boolean> {
    const id = c.job.id;
    const wrote = await this.r.jobFinish(
      this.jobKey(id), this.evKey(id), this.k("jobs:counts"), this.idemKey(c.job.backend, c.job.idempotencyKey), this.k("jobs:queue"),
      o.state, o.result === undefined ? "" : Buffer.from(o.result), o.errorCode ?? "", o.errorMessage ?? "", this.o.resultTtlMs, c.claim,
    );
    return wrote === 1;
  }

  async keepAlive(claims: readonly ClaimedJob[]): Promise<string[]> {
    if (claims.length === 0) return [];
    const p = this.r.pipeline();
    // XCLAIM to ourselves resets each entry's idle time: the claim stays ours.
    p.xclaim(this.k("jobs:queue"), GROUP, this.o.consumer, 0, ...claims.map((c) => c.claim), "JUSTID");
    for (const c of claims) p.hget(this.jobKey(c.job.id), "cancel");
    const res = (await p.exec()) ?? [];
    return claims.filter((_, i) => res[i + 1]?.[1] === "1").map((c) => c.job.id);
  }

  async counts(): Promise<Record<string, Partial<Record<AsyncJobState, number>>>> {
    const h = await this.r.hgetall(this.k("jobs:counts"));
    const out: Record<string, Partial<Record<AsyncJobState, number>>> = {};
    for (const [f, v] of Object.entries(h)) {
      const i = f.lastIndexOf(":");
      const state = f.slice(i + 1) as AsyncJobState;
      if (!STATES.has(state)) continue;
      (out[f.slice(0, i)] ??= {})[state] = Math.max(0, Number(v));
    }
    return out;
  }

  async close(): Promise<void> {
    this.o.blocking.disconnect();
    this.o.redis.disconnect();
  }

  private ensureGroup(): Promise<void> {
    this.groupReady ??= this.r.xgroup("CREATE", this.k("jobs:queue"), GROUP, "0", "MKSTREAM").then(
      () => undefined,
      (e: Error) => {
        if (!e.message.includes("BUSYGROUP")) {
          this.groupReady = undefined;
          throw e;
        }
      },
    );
    return this.groupReady;
  }

  private k(s: string): string {
    return `${this.o.keyPrefix}${s}`;
  }

  private jobKey(id: string): string {
    return this.k(`job:${id}`);
  }

  private evKey(id: string): string {
    return this.k(`job:${id}:ev`);
  }

  private idemKey(backend: string, key: string): string {
    return this.k(`idem:${backend}:${key}`);
  }
}

function jobOf(id: string, h: Record<string, Buffer>): AsyncJob | undefined {
  const s = (f: string) => h[f]?.toString() ?? "";
  const n = (f: string) => Number(s(f) || "0");
  const state = s("state") as AsyncJobState;
  if (!STATES.has(state)) return undefined;
  return {
    id,
    backend: s("backend"),
    state,
    request: new Uint8Array(h["request"] ?? Buffer.alloc(0)),
    idempotencyKey: s("key"),
    createdAt: n("createdAt"),
    deadline: n("deadline"),
    startedAt: n("startedAt"),
    finishedAt: n("finishedAt"),
    attempts: n("attempts"),
    workerId: s("workerId"),
    result: h["result"] === undefined ? undefined : new Uint8Array(h["result"]),
    errorCode: s("errorCode"),
    errorMessage: s("errorMessage"),
    cancelRequested: s("cancel") === "1",
    traceparent: s("traceparent"),
  };
}
