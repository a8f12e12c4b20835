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
}
