/** Checks of option values that throw a TypeError naming the option and the value received. */

export function nonNegativeNumber(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new TypeError(`${what}: expected a number ≥ 0, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function positiveInt(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new TypeError(`${what}: expected a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function nonNegativeInt(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new TypeError(`${what}: expected an integer ≥ 0, got ${JSON.stringify(v)}`);
  }
  return v;
}
