import { JobQueue, type QueueNode } from "./queue.js";

/**
 * What a job must carry to wait in a FairQueue: its tier, its tenant and the
 * links of its tier's arrival-order list (beside the QueueNode links its
 * tenant's FIFO uses). The job is its own node: no allocation per job.
 */
export interface FairNode extends QueueNode {
  /** 0 = most urgent; already clamped to the queue's levels. */
  readonly priority: number;
  readonly tenant: string;
  /** Clock ms at which it joined this queue (aging). */
  readonly queuedAt: number;
  aprev: FairNode | null;
  anext: FairNode | null;
  lane: Lane | undefined;
}

/** One tenant's FIFO inside one tier, and its place in the tier's round-robin ring. */
export class Lane {
  readonly jobs = new JobQueue<FairNode>();
  /** Jobs this lane may still serve in its current turn (deficit round-robin with unit costs). */
  credit = 0;
  prev: Lane | null = null;
  next: Lane | null = null;
  constructor(
    readonly tier: Tier,
    readonly tenant: string,
    readonly weight: number,
  ) {}
}

class Tier {
  readonly lanes = new Map<string, Lane>();
  /** The lane whose turn it is; null when the tier is empty. The ring is circular. */
  cursor: Lane | null = null;
  /** Every job of the tier in arrival order: the oldest for aging, the newest for displacement. */
  head: FairNode | null = null;
  tail: FairNode | null = null;
  length = 0;
}

/** Per-queue settings, shared by all the workers of a backend. */
export interface FairPolicy {
  /** Tiers 0 … levels−1. */
  levels: number;
  /** Relative share of a tenant inside a tier (integers ≥ 1). */
  weightOf(tenant: string): number;
  /** A job waiting this long in a lower tier is served before higher tiers (0 = strict priority, no aging). */
  agingMs: number;
}

/**
 * A worker's queue: strict priority across tiers, with an optional aging
 * bound so that the lowest tier is never starved forever; inside a tier,
 * weighted deficit round-robin across tenants (each active tenant serves
 * `weight` jobs per round), each tenant FIFO. Every operation is O(1) in the
 * number of jobs and tenants (O(levels) for the tier scan; levels is small).
 * Memory is bounded by the jobs queued: a tenant's lane exists only while it
 * has jobs (tenant names come from clients).
 */
export class FairQueue<J extends FairNode> {
  private readonly tiers: Tier[];
  /** Jobs queued per tenant, all tiers (the per-tenant cap). */
  private readonly perTenant = new Map<string, number>();
  length = 0;

  constructor(private readonly policy: FairPolicy) {
    this.tiers = Array.from({ length: policy.levels }, () => new Tier());
  }

  push(job: J): void {
    const tier = this.tiers[job.priority]!;
    let lane = tier.lanes.get(job.tenant);
    if (lane === undefined) {
      lane = new Lane(tier, job.tenant, this.policy.weightOf(job.tenant));
      tier.lanes.set(job.tenant, lane);
      this.linkLane(tier, lane);
    }
    lane.jobs.push(job);
    job.lane = lane;
    job.aprev = tier.tail;
    job.anext = null;
    if (tier.tail === null) tier.head = job;
    else tier.tail.anext = job;
    tier.tail = job;
    tier.length++;
    this.length++;
    this.perTenant.set(job.tenant, (this.perTenant.get(job.tenant) ?? 0) + 1);
  }

  /** The job to serve next, left in place: an aged job of a lower tier, else the turn of the highest non-empty tier. */
  peek(now: number): J | undefined {
    if (this.length === 0) return undefined;
    const aging = this.policy.agingMs;
    if (aging > 0) {
      // The lowest tiers first: the one waiting longest is the one starved.
      for (let p = this.tiers.length - 1; p > 0; p--) {
        const oldest = this.tiers[p]!.head;
        if (oldest !== null && now - oldest.queuedAt >= aging) return oldest as J;
      }
    }
    for (const tier of this.tiers) if (tier.cursor !== null) return tier.cursor.jobs.peek() as J;
    return undefined;
  }

  /** Removes a job that is being served: it uses its lane's turn. */
  take(job: J): void {
    const lane = job.lane!;
    const onTurn = lane.tier.cursor === lane && lane.jobs.peek() === job;
    this.remove(job);
    if (onTurn && lane.tier.cursor === lane && --lane.credit < 1) this.advance(lane.tier);
  }

  /** Removes a job that leaves without being served (cancel, deadline, displacement). */
  remove(job: J): void {
    const lane = job.lane!;
    const tier = lane.tier;
    lane.jobs.remove(job);
    job.lane = undefined;
    if (job.aprev === null) tier.head = job.anext;
    else job.aprev.anext = job.anext;
    if (job.anext === null) tier.tail = job.aprev;
    else job.anext.aprev = job.aprev;
    job.aprev = job.anext = null;
    tier.length--;
    this.length--;
    const n = this.perTenant.get(job.tenant)! - 1;
    if (n === 0) this.perTenant.delete(job.tenant);
    else this.perTenant.set(job.tenant, n);
    if (lane.jobs.length === 0) this.unlinkLane(tier, lane);
  }

  /** Jobs `tenant` has queued here. */
  queuedBy(tenant: string): number {
    return this.perTenant.get(tenant) ?? 0;
  }

  /** Jobs that strict priority serves before a new job of tier `priority` (its own tier included). */
  aheadOf(priority: number): number {
    let n = 0;
    for (let p = 0; p <= priority; p++) n += this.tiers[p]!.length;
    return n;
  }

  /** The newest job of the lowest tier below `priority`: the one a full queue gives up for a more urgent arrival. */
  victimFor(priority: number): J | undefined {
    for (let p = this.tiers.length - 1; p > priority; p--) {
      const newest = this.tiers[p]!.tail;
      if (newest !== null) return newest as J;
    }
    return undefined;
  }

  /**
   * On a full queue, the job a tenant's arrival in tier `priority` may take
   * the place of: the newest job of the tier's heaviest tenant (queued jobs ÷
   * weight), if that tenant would still hold more than the arriving one
   * after the swap. Without it, slow-served tenants fill a full queue and a
   * heavier-weighted tenant cannot get its share in (buffer fairness, as
   * "longest queue drop"). O(tenants in the tier), only when the queue is full.
   */
  fairVictimFor(priority: number, tenant: string): J | undefined {
    const tier = this.tiers[priority]!;
    const own = tier.lanes.get(tenant);
    const ownShare = ((own?.jobs.length ?? 0) + 1) / this.policy.weightOf(tenant);
    let heaviest: Lane | undefined;
    let most = ownShare;
    for (const lane of tier.lanes.values()) {
      const share = lane.jobs.length / lane.weight;
      if (lane !== own && share > most) {
        heaviest = lane;
        most = share;
      }
    }
    return heaviest?.jobs.last() as J | undefined;
  }

  /** Queued jobs per tier. */
  tierLengths(): number[] {
    return this.tiers.map((t) => t.length);
  }

  /** Queued jobs per tenant (a copy; for snapshots). */
  tenantCounts(): Map<string, number> {
    return new Map(this.perTenant);
  }

  *[Symbol.iterator](): IterableIterator<J> {
    for (const tier of this.tiers) for (let j = tier.head; j !== null; j = j.anext) yield j as J;
  }

  private linkLane(tier: Tier, lane: Lane): void {
    const c = tier.cursor;
    if (c === null) {
      lane.prev = lane.next = lane;
      lane.credit = lane.weight;
      tier.cursor = lane;
      return;
    }
    // Join the ring just before the cursor: last in the current round.
    lane.next = c;
    lane.prev = c.prev;
    c.prev!.next = lane;
    c.prev = lane;
  }

  private unlinkLane(tier: Tier, lane: Lane): void {
    tier.lanes.delete(lane.tenant);
    if (lane.next === lane) {
      tier.cursor = null;
    } else {
      lane.prev!.next = lane.next;
      lane.next!.prev = lane.prev;
      if (tier.cursor === lane) {
        tier.cursor = lane.next;
        tier.cursor!.credit = tier.cursor!.weight;
      }
    }
    lane.prev = lane.next = null;
    lane.credit = 0;
  }

  private advance(tier: Tier): void {
    const next = tier.cursor!.next!;
    tier.cursor = next;
    next.credit = next.weight;
  }
}
