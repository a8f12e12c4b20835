import { createContextKey, trace, type Context, type Span } from "@opentelemetry/api";

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
