import { DispatchError, type HandlerResult } from "../core/index.js";

/**
 * What a user's handler returns, made into a result the transport can send:
 * `{ json }` normalised as `JSON.stringify` would read it (undefined and
 * functions dropped from objects and null in arrays, `toJSON` honoured, so a
 * Date is its ISO string), `{ binary }` as a Uint8Array, string metadata.
 * Values JSON cannot hold (BigInt, NaN, ±Infinity, a cycle) are refused with
 * INVALID_ARGUMENT naming their path, rather than sent altered or failing
 * later as INTERNAL. A new object is built: the handler's own stays as it was.
 */
export function normaliseResult(r: unknown): HandlerResult {
  if (r === undefined || r === null) return { json: null };
  if (typeof r !== "object") {
    throw new DispatchError("internal", `result: expected { json: value } or { binary: Uint8Array }, the handler returned a ${typeof r}`);
  }
  const o = r as { json?: unknown; binary?: unknown; metadata?: unknown };
  const metadata = o.metadata === undefined ? undefined : normaliseMetadata(o.metadata);
  if (o.binary !== undefined) {
    const b = o.binary;
    const binary = b instanceof Uint8Array ? b : b instanceof ArrayBuffer ? new Uint8Array(b) : undefined;
    if (binary === undefined) throw new DispatchError("invalid_argument", `result.binary: expected a Uint8Array, got ${describe(b)}`);
    return metadata === undefined ? { binary } : { binary, metadata };
  }
  if (!("json" in o)) {
    const keys = Object.keys(o);
    throw new DispatchError(
      "internal",
      `result: expected { json: value } or { binary: Uint8Array }, the handler returned an object with ${keys.length === 0 ? "no keys" : `keys ${keys.slice(0, 5).join(", ")}`}`,
    );
  }
  const json = toJsonValue(o.json, "", "result.json", new Set());
  return { json: json === SKIP ? null : json, ...(metadata === undefined ? {} : { metadata }) };
}

const SKIP = Symbol("skip");

/** One value as JSON.stringify sees it (key is what toJSON receives), or SKIP where it would leave it out. */
function toJsonValue(v: unknown, key: string, path: string, seen: Set<object>): unknown {
  if ((typeof v === "object" && v !== null) || typeof v === "bigint") {
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") v = (toJSON as (k: string) => unknown).call(v, key);
  }
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      if (!Number.isFinite(v)) throw new DispatchError("invalid_argument", `${path}: ${v} is not a JSON value; return null or a string instead`);
      return v;
    case "bigint":
      throw new DispatchError("invalid_argument", `${path}: a BigInt is not a JSON value; return it as a string or a number`);
    case "undefined":
    case "function":
    case "symbol":
      return SKIP;
  }
  if (v === null) return null;
  const obj = v as object;
  // Boxed primitives are their values to JSON.stringify.
  if (obj instanceof Number || obj instanceof String || obj instanceof Boolean) return toJsonValue(obj.valueOf(), key, path, seen);
  if (seen.has(obj)) throw new DispatchError("invalid_argument", `${path}: a circular reference is not a JSON value`);
  seen.add(obj);
  let out: unknown;
  if (Array.isArray(obj)) {
    out = obj.map((x, i) => {
      const y = toJsonValue(x, String(i), `${path}[${i}]`, seen);
      return y === SKIP ? null : y;
    });
  } else {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(obj)) {
      const y = toJsonValue(x, k, `${path}${IDENT.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`}`, seen);
      if (y !== SKIP) o[k] = y;
    }
    out = o;
  }
  seen.delete(obj); // the same object twice, not nested in itself, is no cycle
  return out;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

/** Metadata values are strings on the wire: numbers and booleans are written as such, undefined and null dropped. */
function normaliseMetadata(m: unknown): Record<string, string> {
  if (typeof m !== "object" || m === null || Array.isArray(m)) {
    throw new DispatchError("invalid_argument", `result.metadata: expected a mapping of strings, got ${describe(m)}`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) {
    if (v === undefined || v === null) continue;
    if (typeof v === "string") out[k] = v;
    else if (typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v)) || typeof v === "bigint") out[k] = String(v);
    else throw new DispatchError("invalid_argument", `result.metadata${IDENT.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`}: expected a string, got ${describe(v)}`);
  }
  return out;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return `an object (${(v as object).constructor?.name ?? "no prototype"})`;
  return `a ${typeof v}`;
}
