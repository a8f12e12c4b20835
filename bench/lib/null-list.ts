/**
 * A binary SubmitRequest (backend "echo") whose `json` is a list of `n`
 * nulls: 4 bytes each on the wire, hundreds once decoded — the memory
 * amplification the edge bounds. Shared by the attacks bench and its test.
 */
export function nullListSubmit(n: number): Buffer {
  const element = Buffer.from([0x0a, 0x02, 0x08, 0x00]);
  const list = Buffer.concat(Array.from({ length: n }, () => element));
  const value = Buffer.concat([Buffer.from([0x32]), varint(list.length), list]);
  return Buffer.concat([Buffer.from([0x0a, 0x04]), Buffer.from("echo"), Buffer.from([0x1a]), varint(value.length), value]);
}

export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
