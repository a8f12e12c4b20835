import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Request bytes held by calls that have not been decoded yet, server-wide.
 * A call takes its bytes as they arrive (never a declared length ahead of
 * its data) and gives them back once decoded or gone; a chunk that does not
 * fit is refused, so that many large requests at once cost at most the
 * budget, not their number times the message limit.
 */
export class ByteBudget {
  used = 0;
  constructor(readonly limit: number) {}

  /** False, taking nothing, when `n` more bytes would go over the budget. */
  take(n: number): boolean {
    if (this.limit > 0 && this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }

  /** The refusal of a chunk that does not fit. */
  busy(): ConnectError {
    return new ConnectError(`server busy: ${this.used} bytes of requests being read, the server's limit`, Code.ResourceExhausted);
  }
}

/** One request's bytes in the budget: taken as they arrive, given back once, when connect has parsed them. */
export class HeldBytes {
  private bytes = 0;
  private given = false;

  constructor(private readonly budget: ByteBudget) {}

  get released(): boolean {
    return this.given;
  }

  /** False, taking nothing, when `n` more bytes do not fit; nothing is taken once the request was given back. */
  take(n: number): boolean {
    if (this.given) return true;
    if (!this.budget.take(n)) return false;
    this.bytes += n;
    return true;
  }

  /** Takes `n` more bytes or throws the budget's RESOURCE_EXHAUSTED. */
  hold(n: number): void {
    if (!this.take(n)) throw this.budget.busy();
  }

  give(): void {
    if (this.given) return;
    this.given = true;
    const n = this.bytes;
    // connect parses a unary message right after the last chunk: give the bytes back once it has.
    setImmediate(() => this.budget.give(n));
  }
}

/** `body`; `held` is given back once it has been read to its end, or abandoned (a check holds the bytes till then). */
export async function* givingBack(body: AsyncIterable<Uint8Array>, held: HeldBytes): AsyncGenerator<Uint8Array> {
  try {
    yield* body;
  } finally {
    held.give();
  }
}
