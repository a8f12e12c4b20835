import { canAdmit, loadOf, SERVICE_MIN_SAMPLES, type WorkerView } from "./worker.js";

/**
 * A selection policy is a synchronous pick over a read-only view of a
 * backend's workers, with no I/O (as grpc-js load balancers and Envoy's
 * least_request are). It returns the index of a worker that can admit, or -1.
 * One instance per backend, so stateful policies (round-robin) keep their own cursor.
 */
export interface SelectionPolicy {
  pick(workers: readonly WorkerView[], random: () => number): number;
}

export type PolicyFactory = () => SelectionPolicy;

const registry = new Map<string, PolicyFactory>();

export function registerPolicy(name: string, factory: PolicyFactory): void {
  registry.set(name, factory);
}

export function policyNames(): string[] {
  return [...registry.keys()];
}

export function createPolicy(name: string): SelectionPolicy {
  const factory = registry.get(name);
  if (!factory) throw new Error(`unknown selection policy "${name}"; known: ${policyNames().join(", ")}`);
  return factory();
}

/**
 * Lowest load among workers that can admit; ties broken uniformly at random
 * (reservoir sampling). Once every candidate has a trusted service-time
 * average, load is weighed by it: the pick is the smallest estimated wait, so
 * a slower upstream takes fewer jobs than a fast one at the same queue length.
 */
export function pickLeastLoaded(workers: readonly WorkerView[], random: () => number): number {
  let byWait = true;
  for (let i = 0; i < workers.length && byWait; i++) {
    const w = workers[i]!;
    if (canAdmit(w) && w.serviceSamples < SERVICE_MIN_SAMPLES) byWait = false;
  }
  let best = -1;
  let bestLoad = Infinity;
  let ties = 0;
  for (let i = 0; i < workers.length; i++) {
    const w = workers[i]!;
    if (!canAdmit(w)) continue;
    const load = byWait ? loadOf(w) * w.serviceMs : loadOf(w);
    if (load < bestLoad) {
      best = i;
      bestLoad = load;
      ties = 1;
    } else if (load === bestLoad) {
      ties++;
      if (random() * ties < 1) best = i;
    }
  }
  return best;
}

/**
 * Power of two choices: two distinct workers at random, the less loaded wins.
 * Near least-loaded quality at O(1) for large pools; falls back to a full
 * scan when neither sample can admit, so it never rejects a job another
 * worker could take.
 */
function pickPowerOfTwo(workers: readonly WorkerView[], random: () => number): number {
  const n = workers.length;
  if (n < 3) return pickLeastLoaded(workers, random);
  const a = Math.floor(random() * n);
  let b = Math.floor(random() * (n - 1));
  if (b >= a) b++;
  const wa = workers[a]!;
  const wb = workers[b]!;
  const okA = canAdmit(wa);
  const okB = canAdmit(wb);
  if (okA && okB) {
    const la = loadOf(wa);
    const lb = loadOf(wb);
    if (la === lb) return random() < 0.5 ? a : b;
    return la < lb ? a : b;
  }
  if (okA) return a;
  if (okB) return b;
  return pickLeastLoaded(workers, random);
}

function roundRobin(): SelectionPolicy {
  let cursor = 0;
  return {
    pick(workers) {
      for (let k = 0; k < workers.length; k++) {
        const i = (cursor + k) % workers.length;
        if (canAdmit(workers[i]!)) {
          cursor = i + 1;
          return i;
        }
      }
      return -1;
    },
  };
}

function pickRandom(workers: readonly WorkerView[], random: () => number): number {
  let chosen = -1;
  let seen = 0;
  for (let i = 0; i < workers.length; i++) {
    if (!canAdmit(workers[i]!)) continue;
    seen++;
    if (random() * seen < 1) chosen = i;
  }
  return chosen;
}

registerPolicy("least-loaded", () => ({ pick: pickLeastLoaded }));
registerPolicy("power-of-two", () => ({ pick: pickPowerOfTwo }));
registerPolicy("round-robin", roundRobin);
registerPolicy("random", () => ({ pick: pickRandom }));
