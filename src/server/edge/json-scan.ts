import { Code, ConnectError } from "@connectrpc/connect";
import { KEY_BYTES, LIST_BYTES, NUMBER_BYTES, OBJECT_BYTES, STRING_BYTES, VALUE_BYTES } from "../payload-budget.js";

/**
 * Counts the google.protobuf.Value nodes of a binary SubmitRequest's `json`
 * payload (field 3) and their nesting, reading only the wire format:
 * nothing is allocated. A 4 MiB message can hold a million null values,
 * which protobuf-es and the JSON conversion turn into hundreds of MB; this
 * refuses such a payload before it is decoded. A malformed message is left
 * to the decoder to report. Returns what the payload will hold once decoded,
 * estimated as heldBytes (payload-budget.ts) estimates it from the JSON.
 */
export function scanSubmitJson(bytes: Uint8Array, maxNodes: number, maxDepth: number): number {
  const s = new Scan(bytes, maxNodes, maxDepth);
  s.fields(0, bytes.length, (field, start, end) => {
    if (field === 3) s.value(start, end, 1);
  });
  return s.held;
}

/** The same limits for a Connect unary JSON body, read as text (strings skipped, values and nesting counted). */
export function createJsonTextScan(maxNodes: number, maxDepth: number): (chunk: Uint8Array) => void {
  let nodes = 0;
  let depth = 0;
  let inString = false;
  let escaped = false;
  return (chunk) => {
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === 0x5c) escaped = true;
        else if (c === 0x22) inString = false;
        continue;
      }
      if (c === 0x22) inString = true;
      else if (c === 0x7b || c === 0x5b) {
        // { [
        if (++depth > maxDepth) throw tooDeep(maxDepth);
        nodes++;
      } else if (c === 0x7d || c === 0x5d) depth--;
      else if (c === 0x2c || c === 0x3a) nodes++; // , :
      if (nodes > maxNodes) throw tooMany(maxNodes);
    }
  };
}

function tooMany(max: number): ConnectError {
  return new ConnectError(`json: more than ${max} values, the server's limit`, Code.InvalidArgument);
}

function tooDeep(max: number): ConnectError {
  return new ConnectError(`json: nested deeper than ${max} levels, the server's limit`, Code.InvalidArgument);
}

class Scan {
  nodes = 0;
  /** The decoded payload's memory, estimated per value as payload-budget.ts does. */
  held = 0;
  constructor(
    private readonly b: Uint8Array,
    private readonly maxNodes: number,
    private readonly maxDepth: number,
  ) {}

  /**
   * Calls `onLen` for each length-delimited field in [start, end), `onFixed64` for each 64-bit one;
   * stops quietly at anything malformed.
   */
  fields(start: number, end: number, onLen: (field: number, start: number, end: number) => void, onFixed64?: (field: number) => void): void {
    let p = start;
    while (p < end) {
      const tag = this.varint(p, end);
      if (tag === undefined) return;
      p = tag.next;
      const wire = tag.value & 7;
      const field = Math.floor(tag.value / 8);
      if (wire === 0) {
        const v = this.varint(p, end);
        if (v === undefined) return;
        p = v.next;
      } else if (wire === 1) {
        onFixed64?.(field);
        p += 8;
      }
      else if (wire === 5) p += 4;
      else if (wire === 2) {
        const len = this.varint(p, end);
        if (len === undefined || len.next + len.value > end) return;
        onLen(field, len.next, len.next + len.value);
        p = len.next + len.value;
      } else return;
    }
  }

  value(start: number, end: number, depth: number): void {
    if (++this.nodes > this.maxNodes) throw tooMany(this.maxNodes);
    if (depth > this.maxDepth) throw tooDeep(this.maxDepth);
    this.held += VALUE_BYTES;
    this.fields(start, end, (field, s, e) => {
      // UTF-8 takes at least as many bytes as V8 does for the same string.
      if (field === 3) this.held += STRING_BYTES + (e - s);
      else if (field === 5) {
        // Struct: map entries (field 1), each with its key in field 1 and its value in field 2.
        this.held += OBJECT_BYTES;
        this.fields(s, e, (f, es, ee) => {
          if (f === 1) {
            this.fields(es, ee, (ef, vs, ve) => {
              if (ef === 1) this.held += KEY_BYTES + (ve - vs);
              else if (ef === 2) this.value(vs, ve, depth + 1);
            });
          }
        });
      } else if (field === 6) {
        this.held += LIST_BYTES;
        // ListValue: values in field 1.
        this.fields(s, e, (f, vs, ve) => f === 1 && this.value(vs, ve, depth + 1));
      }
    }, (field) => {
      if (field === 2) this.held += NUMBER_BYTES;
    });
  }

  private varint(p: number, end: number): { value: number; next: number } | undefined {
    let value = 0;
    let mul = 1;
    for (let i = 0; i < 10 && p < end; i++, p++) {
      const byte = this.b[p]!;
      value += (byte & 0x7f) * mul;
      mul *= 128;
      if (byte < 0x80) return { value, next: p + 1 };
    }
    return undefined;
  }
}

/**
 * scanSubmitJson for an EnqueueRequest: its SubmitRequest is field 1. A
 * message field that occurs more than once is merged by the decoder (its
 * lists concatenated), so every occurrence counts against one total.
 */
export function scanEnqueueJson(bytes: Uint8Array, maxNodes: number, maxDepth: number): void {
  const s = new Scan(bytes, maxNodes, maxDepth);
  s.fields(0, bytes.length, (field, start, end) => {
    if (field === 1) {
      s.fields(start, end, (f, vs, ve) => {
        if (f === 3) s.value(vs, ve, 1);
      });
    }
  });
}
