import { createContextKey, trace, type Context, type Span } from "@opentelemetry/api";
import type { IdGenerator } from "@opentelemetry/sdk-trace-base";
import { randomBytes } from "node:crypto";

/** The API's own key for the span in a context: a Symbol.for, the same in every copy and version of the API. */
const SPAN_KEY = createContextKey("OpenTelemetry Context Key SPAN");

/**
 * `parent` with `span` as its span: what trace.setSpan(parent, span)
 * returns, without the copy of the parent's values the API's context makes
 * (a Map and three closures, per call, for a context that is only read).
 * Setting or deleting a value makes the API's own context.
 */
export class SpanInContext implements Context {
  constructor(
    private readonly parent: Context,
    private readonly span: Span,
  ) {}

  getValue(key: symbol): unknown {
    return key === SPAN_KEY ? this.span : this.parent.getValue(key);
  }

  setValue(key: symbol, value: unknown): Context {
    return trace.setSpan(this.parent, this.span).setValue(key, value);
  }

  deleteValue(key: symbol): Context {
    return trace.setSpan(this.parent, this.span).deleteValue(key);
  }
}

/** Random bytes drawn at a time: 256 span ids. */
const POOL_BYTES = 2048;

/**
 * Trace and span ids cut from a pool of random hex: one CSPRNG draw and one
 * hex encoding per 256 span ids, where the SDK's default draws Math.random
 * and hex-encodes each id on its own. An all-zero id (invalid) is skipped.
 */
export class PooledIdGenerator implements IdGenerator {
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
      if (this.at + chars > this.pool.length) {
        this.pool = randomBytes(POOL_BYTES).toString("hex");
        this.at = 0;
      }
      const id = this.pool.slice(this.at, this.at + chars);
      this.at += chars;
      if (id.charCodeAt(0) !== 48 || !ALL_ZERO.test(id)) return id;
    }
  }
}

const ALL_ZERO = /^0+$/;
