import { Code, ConnectError } from "@connectrpc/connect";
import type { Payload } from "../core/index.js";

/**
 * What the decoded requests of calls in progress may hold, server-wide.
 * Each Submit and SubmitStream holds its request from decode to its answer:
 * queued behind a slow backend that is as long as the backend takes, and a
 * 4 MiB request of 100,000 small JSON objects is ~28 MB once decoded (the
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
}

/**
 * Memory a decoded request holds, estimated from its payload and metadata:
 * per JSON value 96 bytes (its protobuf Value and JSON forms), 480 more per
 * object (a Struct's field map), 24 more per string plus its characters. Measured on
 * Node 20 (test/production/held-requests.e2e.test.ts) for lists of 100,000
 * nulls and short strings and of 50,000 one-key objects: ~45 bytes per null,
 * ~113 per short string, ~680 per object with its field. A bound, so it errs
 * high rather than low.
 */
export function heldBytes(payload: Payload, metadata: Record<string, string>): number {
  let bytes = 128;
  for (const k in metadata) bytes += 64 + k.length + metadata[k]!.length;
  if (payload.binary !== undefined) return bytes + payload.binary.byteLength;
  return bytes + jsonBytes(payload.json);
}

export const VALUE_BYTES = 96;
export const OBJECT_BYTES = 480;
export const STRING_BYTES = 24;

function jsonBytes(root: unknown): number {
  let bytes = 0;
  // Iterative: the depth is bounded before decode (max_json_depth), but a stack of values costs nothing to keep.
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const v = pending.pop();
    bytes += VALUE_BYTES;
    if (typeof v === "string") bytes += STRING_BYTES + v.length;
    else if (Array.isArray(v)) for (const x of v) pending.push(x);
    else if (typeof v === "object" && v !== null) {
      bytes += OBJECT_BYTES;
      for (const k in v) {
        bytes += k.length;
        pending.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return bytes;
}
