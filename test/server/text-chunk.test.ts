import { create, fromJson, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { SubmitStreamResponseSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { encodeTextChunk } from "../../src/server/text-chunk.js";

const textChunk = (text: string, more: object = {}) =>
  create(SubmitStreamResponseSchema, { event: { case: "chunk", value: { text, ...more } } });

/** Seeded: the same strings every run. */
function* strings(seed: number, count: number): Generator<string> {
  let x = seed;
  const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
  const alphabet = ["a", " ", "é", "中", "😀", "\n", "\u0000", "\ud800", "\udfff", "\u07ff", "\uffff"];
  for (let i = 0; i < count; i++) {
    // Lengths across the one-, two- and three-byte varint boundaries (127, 16,383 bytes).
    const length = [0, 1, 5, 40, 63, 64, 127, 128, 5_000, 16_383, 16_384, 40_000][next() % 12]!;
    let s = "";
    while (s.length < length) s += alphabet[next() % alphabet.length];
    yield s;
  }
}

describe("encodeTextChunk", () => {
  it("writes exactly what protobuf-es writes for a text-only chunk", () => {
    let checked = 0;
    for (const text of strings(7, 400)) {
      const m = textChunk(text);
      const fast = encodeTextChunk(m);
      if (text === "") {
        expect(fast).toBeUndefined();
        continue;
      }
      const reference = Buffer.from(toBinary(SubmitStreamResponseSchema, m));
      // equals(), not toEqual(): a deep comparison of 40,000-byte buffers takes seconds.
      expect(Buffer.from(fast!).equals(reference), `text of ${text.length} characters`).toBe(true);
      checked++;
    }
    expect(checked).toBeGreaterThan(300);
  });

  it("leaves every other message to the reflective encoder", () => {
    expect(encodeTextChunk(textChunk("t", { metadata: { k: "v" } }))).toBeUndefined();
    expect(encodeTextChunk(textChunk("t", { payload: { case: "json", value: fromJson(ValueSchema, 1) } }))).toBeUndefined();
    expect(encodeTextChunk(textChunk("t", { payload: { case: "binary", value: new Uint8Array([1]) } }))).toBeUndefined();
    expect(encodeTextChunk(create(SubmitStreamResponseSchema, { event: { case: "started", value: { workerId: "w" } } }))).toBeUndefined();
    expect(encodeTextChunk(create(SubmitStreamResponseSchema, {}))).toBeUndefined();
    expect(encodeTextChunk({ text: "not a message" })).toBeUndefined();
  });
});
