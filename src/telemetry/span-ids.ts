import type { IdGenerator } from "@opentelemetry/sdk-trace-base";

/** Random bytes made at a time: 512 span ids. */
const POOL_BYTES = 4096;

/**
 * Trace and span ids cut from a pool of random hex: one hex encoding per
 * 512 span ids, where the SDK's default encodes each id on its own. Like
 * the SDK's, the bytes come from Math.random: ids must be unique, not
 * secret (a CSPRNG here cost more than the rest of a span). An all-zero id
 * (invalid) is skipped.
 */
export class PooledIdGenerator implements IdGenerator {
  private readonly bytes = Buffer.alloc(POOL_BYTES);
  private readonly words = new Uint32Array(this.bytes.buffer, this.bytes.byteOffset, POOL_BYTES / 4);
  private pool = "";
  private at = 0;

  generateTraceId(): string {
    return this.take(32);
  }

  generateSpanId(): string {
    return this.take(16);
  }

  private take(chars: number): string {
    for (;;) {
      if (this.at + chars > this.pool.length) this.refill();
      const id = this.pool.slice(this.at, this.at + chars);
      this.at += chars;
      if (id.charCodeAt(0) !== 48 || !ALL_ZERO.test(id)) return id;
    }
  }

  private refill(): void {
    const words = this.words;
    for (let i = 0; i < words.length; i++) words[i] = (Math.random() * 0x1_0000_0000) >>> 0;
    this.pool = this.bytes.toString("hex");
    this.at = 0;
  }
}

const ALL_ZERO = /^0+$/;
