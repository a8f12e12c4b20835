import {
  diag,
  isSpanContextValid,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanKind,
  type SpanStatus,
  type TimeInput,
  type Tracer,
} from "@opentelemetry/api";
import { hrTimeDuration, isAttributeValue, isTimeInputHrTime, isTracingSuppressed, sanitizeAttributes, timeInputToHrTime, type InstrumentationScope } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import { SamplingDecision, type IdGenerator, type ReadableSpan, type Sampler, type SpanLimits, type SpanProcessor, type TimedEvent } from "@opentelemetry/sdk-trace-base";
import { msToHrTime, spanMs, spanMsAt } from "./clock.js";

/** Starts the dispatcher's own spans: one per RPC, two per job attempt. */
export interface SpanStarter {
  /**
   * `attributes` must be a fresh object of valid values: the span may keep it
   * as its own. `startTime` as HrTime or wall-clock milliseconds (clock.ts).
   */
  start(name: string, kind: SpanKind, attributes: Attributes, parent: Context, startTime: SpanTime): Span;
}

/** What a span takes from the SDK's tracer: its configuration, as the environment set it. */
interface TracerParts {
  sampler: Sampler;
  spanLimits: SpanLimits;
  idGenerator: IdGenerator;
  resource: Resource;
  instrumentationScope: InstrumentationScope;
  spanProcessor: SpanProcessor;
}

/**
 * The SDK tracer's sampler, limits, id generator, resource, scope and span
 * processors, read from its fields (the SDK's version is pinned); undefined
 * when they are not all there (another SDK version), and then the SDK makes
 * every span.
 */
function tracerParts(tracer: Tracer): TracerParts | undefined {
  const t = tracer as unknown as Record<string, unknown>;
  const parts = {
    sampler: t["_sampler"],
    spanLimits: t["_spanLimits"],
    idGenerator: t["_idGenerator"],
    resource: t["_resource"],
    instrumentationScope: t["instrumentationScope"],
    spanProcessor: t["_spanProcessor"],
  };
  const has = (o: unknown, ...methods: string[]) => typeof o === "object" && o !== null && methods.every((m) => typeof (o as Record<string, unknown>)[m] === "function");
  const ok =
    has(parts.sampler, "shouldSample") &&
    has(parts.idGenerator, "generateTraceId", "generateSpanId") &&
    has(parts.spanProcessor, "onStart", "onEnd") &&
    typeof parts.spanLimits === "object" && parts.spanLimits !== null &&
    typeof parts.resource === "object" && parts.resource !== null &&
    typeof parts.instrumentationScope === "object" && parts.instrumentationScope !== null;
  return ok ? (parts as TracerParts) : undefined;
}

/**
 * Spans for the dispatcher's own hot path. The SDK's span costs a traced
 * Submit more than everything else tracing does (its constructor reads two
 * clocks, copies the attributes twice, allocates a dozen objects the call
 * never uses). LeanSpan is the same record (ReadableSpan, handed to the same
 * processors, so every exporter sees what the SDK would send) made from the
 * SDK's own sampler, id generator, limits and resource. With a tracer that is
 * not the SDK's, or another SDK version, spans come from the tracer.
 */
export function spanStarter(tracer: Tracer): SpanStarter {
  const parts = tracerParts(tracer);
  if (parts === undefined) {
    return { start: (name, kind, attributes, parent, startTime) => tracer.startSpan(name, { kind, attributes, startTime }, parent) };
  }
  const limits = parts.spanLimits;
  // Our attributes are few and valid: the span keeps the object as given unless a limit could cut it.
  const takeAsGiven = (limits.attributeCountLimit ?? 128) >= 32 && (limits.attributeValueLengthLimit ?? Infinity) === Infinity;
  return {
    start(name, kind, attributes, parent, startTime) {
      if (isTracingSuppressed(parent)) return trace.wrapSpanContext(INVALID);
      const parentSpan = trace.getSpan(parent);
      const parentContext = parentSpan?.spanContext();
      const spanId = parts.idGenerator.generateSpanId();
      // Our own spans' contexts are valid by construction; a remote one is checked.
      const validParent = parentContext !== undefined && (parentSpan instanceof LeanSpan || isSpanContextValid(parentContext)) ? parentContext : undefined;
      const traceId = validParent?.traceId ?? parts.idGenerator.generateTraceId();
      const sampling = parts.sampler.shouldSample(parent, traceId, name, kind, attributes, NO_LINKS);
      const traceFlags = sampling.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE;
      const spanContext: SpanContext = { traceId, spanId, traceFlags, traceState: sampling.traceState ?? validParent?.traceState };
      if (sampling.decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(spanContext);
      const span = new LeanSpan(parts, name, kind, spanContext, validParent, startTime, takeAsGiven ? attributes : {});
      if (!takeAsGiven) span.setAttributes(attributes);
      if (sampling.attributes !== undefined) span.setAttributes(sampling.attributes);
      parts.spanProcessor.onStart(span, parent);
      return span;
    },
  };
}

const INVALID: SpanContext = { traceId: "00000000000000000000000000000000", spanId: "0000000000000000", traceFlags: TraceFlags.NONE };
const NO_LINKS: Link[] = [];
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET };
const NO_TIME: HrTime = [0, 0];
const NOT_ENDED: HrTime = [-1, -1];

/** A span's time as given: HrTime, or wall-clock milliseconds (made HrTime when read). */
export type SpanTime = HrTime | number;

/** A recording span; what the SDK's SpanImpl records, read by the same processors and exporters. */
export class LeanSpan implements Span, ReadableSpan {
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  status: SpanStatus = UNSET;
  ended = false;
  /** When it ended; undefined while it runs. Times stay as given until an exporter reads them. */
  private endAt: SpanTime | undefined = undefined;
  /** Shared empty lists until the first event or link: most spans have none. */
  events: TimedEvent[] = NO_EVENTS;
  links: Link[] = NO_LINKS;
  droppedAttributesCount = 0;
  droppedEventsCount = 0;
  droppedLinksCount = 0;
  private attributeCount: number;

  constructor(
    private readonly parts: TracerParts,
    public name: string,
    readonly kind: SpanKind,
    private readonly context: SpanContext,
    readonly parentSpanContext: SpanContext | undefined,
    private readonly startAt: SpanTime,
    readonly attributes: Attributes,
  ) {
    this.resource = parts.resource;
    this.instrumentationScope = parts.instrumentationScope;
    this.attributeCount = countKeys(attributes);
  }

  spanContext(): SpanContext {
    return this.context;
  }

  get startTime(): HrTime {
    return hrTimeOf(this.startAt);
  }

  get endTime(): HrTime {
    return this.endAt === undefined ? NO_TIME : hrTimeOf(this.endAt);
  }

  get duration(): HrTime {
    return this.endAt === undefined ? NOT_ENDED : hrTimeDuration(this.startTime, this.endTime);
  }

  isRecording(): boolean {
    return !this.ended;
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    if (value == null || this.ended) return this;
    if (key.length === 0) {
      diag.warn(`Invalid attribute key: ${key}`);
      return this;
    }
    if (!isAttributeValue(value)) {
      diag.warn(`Invalid attribute value set for key: ${key}`);
      return this;
    }
    const isNew = !Object.prototype.hasOwnProperty.call(this.attributes, key);
    if (isNew && this.attributeCount >= (this.parts.spanLimits.attributeCountLimit ?? Infinity)) {
      this.droppedAttributesCount++;
      return this;
    }
    (this.attributes as Record<string, AttributeValue>)[key] = this.truncate(value);
    if (isNew) this.attributeCount++;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    const valid = sanitizeAttributes(attributes);
    for (const key of Object.keys(valid)) this.setAttribute(key, valid[key]);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this;
    let attributes: Attributes | undefined;
    // As the SDK: a time in the attributes' place is used only when no valid time follows it.
    if (isTime(attributesOrTime)) {
      if (!isTime(time)) time = attributesOrTime;
    } else attributes = attributesOrTime;
    const limit = this.parts.spanLimits.eventCountLimit ?? Infinity;
    if (limit === 0) {
      this.droppedEventsCount++;
      return this;
    }
    if (this.events === NO_EVENTS) this.events = [];
    if (this.events.length >= limit) {
      this.events.shift();
      this.droppedEventsCount++;
    }
    const [kept, dropped] = this.limited(attributes, this.parts.spanLimits.attributePerEventCountLimit);
    this.events.push({ name, attributes: kept, time: hrTimeOf(toSpanTime(time)), droppedAttributesCount: dropped });
    return this;
  }

  addLink(link: Link): this {
    if (this.ended) return this;
    const limit = this.parts.spanLimits.linkCountLimit ?? Infinity;
    if (limit === 0) {
      this.droppedLinksCount++;
      return this;
    }
    if (this.links === NO_LINKS) this.links = [];
    if (this.links.length >= limit) {
      this.links.shift();
      this.droppedLinksCount++;
    }
    const [kept, dropped] = this.limited(link.attributes, this.parts.spanLimits.attributePerLinkCountLimit);
    const processed: Link = { context: link.context };
    if (countKeys(kept) > 0) processed.attributes = kept;
    if (dropped > 0) processed.droppedAttributesCount = dropped;
    this.links.push(processed);
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    // As the SDK: UNSET changes nothing, OK is final, and a message is kept only on ERROR.
    if (this.ended || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this;
    this.status = status.code === SpanStatusCode.ERROR && typeof status.message === "string" ? { code: status.code, message: status.message } : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name;
    return this;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === "string") {
      attributes["exception.message"] = exception;
    } else if (exception) {
      if (exception.code) attributes["exception.type"] = String(exception.code);
      else if (exception.name) attributes["exception.type"] = exception.name;
      if (exception.message) attributes["exception.message"] = exception.message;
      if (exception.stack) attributes["exception.stacktrace"] = exception.stack;
    }
    if (attributes["exception.type"] !== undefined || attributes["exception.message"] !== undefined) this.addEvent("exception", attributes, time);
  }

  end(endTime?: TimeInput): void {
    if (this.ended) {
      diag.error(`${this.name} ${this.context.traceId}-${this.context.spanId} - You can only call end() on a span once.`);
      return;
    }
    const end = toSpanTime(endTime);
    // As the SDK: an end before the start is moved to the start.
    this.endAt = msOf(end) < msOf(this.startAt) ? this.startAt : end;
    const processor = this.parts.spanProcessor;
    processor.onEnding?.(this);
    this.ended = true;
    processor.onEnd(this);
  }

  /** As the SDK: strings cut to the length limit, arrays always copied (the caller may change its own). */
  private truncate(value: AttributeValue): AttributeValue {
    const limit = this.parts.spanLimits.attributeValueLengthLimit ?? Infinity;
    if (limit <= 0) return value;
    if (typeof value === "string") return value.length <= limit ? value : value.slice(0, limit);
    if (Array.isArray(value)) return value.map((v) => (typeof v === "string" && v.length > limit ? v.slice(0, limit) : v)) as AttributeValue;
    return value;
  }

  /** An event's or link's attributes within a per-item count limit: the kept ones and how many were dropped. */
  private limited(attributes: Attributes | undefined, limit: number | undefined): [Attributes, number] {
    const valid = sanitizeAttributes(attributes);
    const kept: Attributes = {};
    let count = 0;
    let dropped = 0;
    for (const key of Object.keys(valid)) {
      if (count >= (limit ?? Infinity)) {
        dropped++;
        continue;
      }
      kept[key] = this.truncate(valid[key]!);
      count++;
    }
    return [kept, dropped];
  }
}

const NO_EVENTS: TimedEvent[] = [];

/** Object.keys(o).length without the array. */
function countKeys(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

function isTime(v: unknown): v is TimeInput {
  return typeof v === "number" || v instanceof Date || isTimeInputHrTime(v);
}

/**
 * A TimeInput as the SDK reads it: a number no later than performance.now()
 * is a performance timestamp, a larger one wall-clock milliseconds; none is now.
 */
function toSpanTime(time: TimeInput | undefined | null): SpanTime {
  if (time == null) return spanMs();
  if (typeof time === "number") return time <= performance.now() ? spanMsAt(time) : time;
  if (time instanceof Date) return time.getTime();
  return isTimeInputHrTime(time) ? time : timeInputToHrTime(time);
}

function hrTimeOf(t: SpanTime): HrTime {
  return typeof t === "number" ? msToHrTime(t) : t;
}

function msOf(t: SpanTime): number {
  return typeof t === "number" ? t : t[0] * 1000 + t[1] / 1e6;
}
