/**
 * An AbortController made only when a handler first reads its signal.
 * Creating one costs more than the rest of a submit (about half of the
 * core's CPU with a no-op handler in `npm run bench`'s core suite, per
 * `node --cpu-prof`), and fast handlers often never look at it.
 */
export class LazyAbortController {
  private controller: AbortController | undefined = undefined;
  private aborted = false;
  private reason: unknown = undefined;

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}
