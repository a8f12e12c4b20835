import { Code, ConnectError } from "@connectrpc/connect";
import type { CancelSignal, Payload } from "../core/index.js";

/**
 * What the decoded requests of calls in progress may hold, server-wide.
 * Each Submit and SubmitStream holds its request from decode to its answer:
 * queued behind a slow backend that is as long as the backend takes, and a
 * 1 MB request of 50,000 one-key JSON objects is ~34 MB once decoded (the
 * protobuf Value tree and its JSON). Without a bound, filling the queues of a
 * slow backend with such requests (a few hundred places is a usual config)
 * takes gigabytes. A call whose request would take the total over the limit
 * is refused with RESOURCE_EXHAUSTED before it reaches a queue.
 */
export class PayloadBudget {
  held = 0;

  constructor(private readonly max: number) {}

  /**
   * Throws RESOURCE_EXHAUSTED if `bytes` more would go over: before decode,
   * from the wire (edge/json-scan.ts), so that a refused request is not decoded.
   */
  check(bytes: number): void {
    if (this.max > 0 && this.held + bytes > this.max) {
      throw new ConnectError(
        `server busy: calls in progress hold ${this.held} bytes of decoded requests and this one needs ${bytes}, ` +
          `over the server's limit of ${this.max} (server.limits.max_held_request_bytes); retry later`,
        Code.ResourceExhausted,
      );
    }
  }

  /** Takes `bytes` or throws RESOURCE_EXHAUSTED; give them back once, when the call ends. */
  take(bytes: number): void {
    this.check(bytes);
    this.held += bytes;
  }

  give(bytes: number): void {
    this.held -= bytes;
  }

  /**
   * Takes `bytes` for a streamed call; the function returned gives them back,
   * once: at the call's end, or when `signal` aborts. A client that stops
   * reading and then goes away can leave the call suspended at a write that
   * never completes (connect-node's response writer waits for a 'drain' a
   * destroyed response never emits), so its end may never come.
   */
  hold(bytes: number, signal: CancelSignal): () => void {
    this.take(bytes);
    let given = false;
    const listener = { handleEvent: () => give() };
    const give = () => {
      if (given) return;
      given = true;
      this.held -= bytes;
      signal.removeEventListener("abort", listener);
    };
    signal.addEventListener("abort", listener);
    return give;
  }
}

/**
 * Memory a decoded request holds, estimated from its payload and metadata:
 * per JSON value 96 bytes (its protobuf Value and JSON forms); 480 more per
 * object (a Struct's field map) and 100 more per key; 100 more per list; 48
 * more per number; 24 more per string plus its characters (two bytes each
 * past Latin-1, as V8 stores it). Checked against the heap on Node 20
 * (test/production/held-requests.e2e.test.ts) for payloads of each shape. A
 * bound, so it errs high rather than low.
 */
export function heldBytes(payload: Payload, metadata: Record<string, string>): number {
  let bytes = 128;
  for (const k in metadata) bytes += 64 + k.length + metadata[k]!.length;
  if (payload.binary !== undefined) return bytes + payload.binary.byteLength;
  return bytes + jsonBytes(payload.json);
}

export const VALUE_BYTES = 96;
export const OBJECT_BYTES = 480;
/** Each key of an object: its entry in the Struct's map and in the JSON object. */
export const KEY_BYTES = 100;
export const LIST_BYTES = 100;
export const STRING_BYTES = 24;
/** A number that is not a small integer is a heap number in each form. */
export const NUMBER_BYTES = 48;
/** A string with a character past Latin-1 takes two bytes a character. */
const TWO_BYTE = /[^\u0000-\u00ff]/;

function jsonBytes(root: unknown): number {
  let bytes = 0;
  // Iterative: the depth is bounded before decode (max_json_depth), but a stack of values costs nothing to keep.
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const v = pending.pop();
    bytes += VALUE_BYTES;
    if (typeof v === "string") bytes += STRING_BYTES + (TWO_BYTE.test(v) ? 2 * v.length : v.length);
    else if (typeof v === "number") bytes += NUMBER_BYTES;
    else if (Array.isArray(v)) {
      bytes += LIST_BYTES;
      for (const x of v) pending.push(x);
    } else if (typeof v === "object" && v !== null) {
      bytes += OBJECT_BYTES;
      for (const k in v) {
        bytes += KEY_BYTES + (TWO_BYTE.test(k) ? 2 * k.length : k.length);
        pending.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return bytes;
}
