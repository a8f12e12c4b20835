import { nonNegativeInt, nonNegativeNumber, positiveInt } from "./validate.js";

/**
 * How a worker's queue orders its jobs: strict priority across tiers
 * (0 = most urgent), weighted round-robin across tenants inside a tier, and
 * admission that refuses at once a job whose estimated wait exceeds its
 * remaining deadline.
 */
export interface SchedulingOptions {
  /** Number of tiers; a request's priority above the last is held to the last. Default 4 (0-3). */
  priorityLevels?: number;
  /** Tier of a request that sets none (priority 0 on the wire means "unset" too). Default 0. */
  defaultPriority?: number;
  /**
   * A job waiting this long in a lower tier is served before the higher
   * tiers, so the lowest tier is never starved forever, in ms. Default 0:
   * strict priority.
   */
  agingMs?: number;
  /** Weights of named tenants inside a tier (integers ≥ 1). Default: every tenant 1. */
  tenantWeights?: Record<string, number>;
  /**
   * Where the tenant of a call that names none comes from: this key of its
   * metadata (e.g. "team"). Default: none; such calls share the tenant "".
   */
  tenantMetadataKey?: string;
  /** Weight of tenants not named in tenantWeights. Default 1. */
  defaultTenantWeight?: number;
  /**
   * Most of a worker's queue one tenant may hold, as a fraction (0-1]; past
   * it the tenant's calls get RESOURCE_EXHAUSTED naming its cap. Default 1:
   * no cap beyond the queue's own.
   */
  tenantQueueShare?: number;
  /**
   * Refuse at admission (RESOURCE_EXHAUSTED, naming the estimate) a call whose
   * estimated queue wait (recent service time × jobs ahead ÷ concurrency)
   * exceeds its remaining deadline, rather than queue it to fail later.
   * Default true.
   */
  deadlineAware?: boolean;
  /**
   * When a queue is full, a more urgent arrival displaces the newest queued
   * job of the lowest tier below it (answered RESOURCE_EXHAUSTED at once).
   * Default true.
   */
  displace?: boolean;
}

export interface ValidSchedulingOptions {
  priorityLevels: number;
  defaultPriority: number;
  agingMs: number;
  tenantWeights: ReadonlyMap<string, number>;
  tenantMetadataKey: string | undefined;
  defaultTenantWeight: number;
  tenantQueueShare: number;
  deadlineAware: boolean;
  displace: boolean;
}

export function validateScheduling(r: SchedulingOptions | undefined, at: string): ValidSchedulingOptions {
  if (r !== undefined && (typeof r !== "object" || r === null)) throw new TypeError(`${at}: expected an object, got ${JSON.stringify(r)}`);
  const priorityLevels = positiveInt(r?.priorityLevels ?? 4, `${at}.priorityLevels`);
  if (priorityLevels > 16) throw new TypeError(`${at}.priorityLevels: expected at most 16, got ${priorityLevels}`);
  const defaultPriority = nonNegativeInt(r?.defaultPriority ?? 0, `${at}.defaultPriority`);
  if (defaultPriority >= priorityLevels) {
    throw new TypeError(`${at}.defaultPriority: expected a tier below priorityLevels (${priorityLevels}), got ${defaultPriority}`);
  }
  const weights = new Map<string, number>();
  const tw = r?.tenantWeights ?? {};
  if (typeof tw !== "object" || tw === null) throw new TypeError(`${at}.tenantWeights: expected an object, got ${JSON.stringify(tw)}`);
  for (const [k, v] of Object.entries(tw)) weights.set(k, weight(v, `${at}.tenantWeights.${k}`));
  const share = r?.tenantQueueShare ?? 1;
  if (typeof share !== "number" || !(share > 0 && share <= 1)) {
    throw new TypeError(`${at}.tenantQueueShare: expected a fraction in (0, 1], got ${JSON.stringify(share)}`);
  }
  const flag = (v: unknown, name: string) => {
    if (typeof v !== "boolean") throw new TypeError(`${at}.${name}: expected true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  return {
    priorityLevels,
    defaultPriority,
    agingMs: nonNegativeNumber(r?.agingMs ?? 0, `${at}.agingMs`),
    tenantWeights: weights,
    tenantMetadataKey: optionalKey(r?.tenantMetadataKey, `${at}.tenantMetadataKey`),
    defaultTenantWeight: weight(r?.defaultTenantWeight ?? 1, `${at}.defaultTenantWeight`),
    tenantQueueShare: share,
    deadlineAware: flag(r?.deadlineAware ?? true, "deadlineAware"),
    displace: flag(r?.displace ?? true, "displace"),
  };
}

function weight(v: unknown, what: string): number {
  const n = positiveInt(v, what);
  if (n > 1000) throw new TypeError(`${what}: expected an integer 1-1000, got ${n}`);
  return n;
}


function optionalKey(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v === "") throw new TypeError(`${what}: expected a metadata key, got ${JSON.stringify(v)}`);
  return v;
}
