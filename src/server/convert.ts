import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs, ValueSchema, type Duration, type Value } from "@bufbuild/protobuf/wkt";
import {
  JobState,
  SubmitResponseSchema,
  SubmitStreamResponseSchema,
  type Chunk,
  type SubmitStreamResponse,
  WorkerMetricSchema,
  WorkerState as ProtoWorkerState,
  type SubmitRequest,
  type SubmitResponse,
  type WorkerMetric,
} from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { AsyncJobState, JobResult, Payload, StreamEvent, WorkerSnapshot, WorkerState } from "../core/index.js";

/** Proto payload → core payload. An absent payload is JSON null. */
export function payloadFromProto(p: SubmitRequest["payload"]): Payload {
  switch (p.case) {
    case "json":
      return { json: toJson(ValueSchema, p.value) };
    case "binary":
      // A view of the whole request's bytes: a small payload copied out does not keep a large message alive.
      return { binary: p.value.byteLength * 2 < p.value.buffer.byteLength ? new Uint8Array(p.value) : p.value };
    default:
      return { json: null };
  }
}

/**
 * Core result → proto. `requestValue` lets a handler that returns its input
 * unchanged (echo) skip a JSON round trip.
 */
export function submitResponseToProto(r: JobResult, request: Payload, requestValue: Value | undefined): SubmitResponse {
  const out = r.payload;
  let payload: SubmitResponse["payload"];
  if (out.binary !== undefined) payload = { case: "binary", value: out.binary };
  else if (out === request && requestValue !== undefined) payload = { case: "json", value: requestValue };
  else payload = { case: "json", value: fromJson(ValueSchema, (out.json ?? null) as JsonValue) };
  return create(SubmitResponseSchema, {
    payload,
    workerId: r.workerId,
    affinityHit: r.affinity === "hit",
    affinity: r.affinity,
    queueWait: durationOf(r.queueWaitMs),
    execution: durationOf(r.executionMs),
    metadata: r.metadata ?? {},
    attempts: r.attempts,
  });
}

const states: Record<WorkerState, ProtoWorkerState> = {
  serving: ProtoWorkerState.SERVING,
  ejected: ProtoWorkerState.EJECTED,
  draining: ProtoWorkerState.DRAINING,
};

export function workerMetricToProto(s: WorkerSnapshot): WorkerMetric {
  return create(WorkerMetricSchema, {
    workerId: s.workerId,
    backend: s.backend,
    endpoint: s.endpoint ?? "",
    inflight: s.inflight,
    queueLen: s.queued,
    queueCapacity: s.queueCapacity,
    maxConcurrency: s.maxConcurrency,
    load: s.load,
    completed: BigInt(s.completed),
    errors: BigInt(s.errors),
    rejected: BigInt(s.rejected),
    cancelled: BigInt(s.cancelled),
    ejections: BigInt(s.ejections),
    sessions: BigInt(s.sessions),
    state: states[s.state],
    queueWaitP50: durationOf(s.queueWaitP50Ms),
    queueWaitP99: durationOf(s.queueWaitP99Ms),
    executionP50: durationOf(s.executionP50Ms),
    executionP99: durationOf(s.executionP99Ms),
    displaced: BigInt(s.displaced),
    openStreams: s.openStreams,
    ttftP50: durationOf(s.ttftP50Ms),
    ttftP99: durationOf(s.ttftP99Ms),
    tiers: s.tiers.map((t) => ({
      $typeName: "dispatcher.v1.TierMetric" as const,
      priority: t.priority,
      queued: t.queued,
      rejected: BigInt(t.rejected),
      displaced: BigInt(t.displaced),
      queueWaitP99: durationOf(t.queueWaitP99Ms),
    })),
    tenants: s.tenants.map((t) => ({ $typeName: "dispatcher.v1.TenantMetric" as const, tenant: t.tenant, queued: t.queued })),
    limits: s.limits.map((l) => ({
      $typeName: "dispatcher.v1.LimitMetric" as const,
      key: l.key,
      requestsLeft: l.requestsLeft === undefined ? undefined : BigInt(l.requestsLeft),
      tokensLeft: l.tokensLeft === undefined ? undefined : BigInt(l.tokensLeft),
      concurrencyLeft: l.concurrencyLeft === undefined ? undefined : BigInt(l.concurrencyLeft),
      pausedUntil: l.pausedUntil > 0 ? timestampFromMs(l.pausedUntil) : undefined,
    })),
  });
}

/** A core stream event → a SubmitStream message. */
export function streamEventToProto(e: StreamEvent): SubmitStreamResponse {
  if (e.type === "started") {
    return create(SubmitStreamResponseSchema, {
      event: {
        case: "started",
        value: { $typeName: "dispatcher.v1.Started", workerId: e.workerId, affinity: e.affinity, queueWait: durationOf(e.queueWaitMs), attempt: e.attempt },
      },
    });
  }
  const c = e.chunk;
  let payload: Chunk["payload"] = { case: undefined };
  if (c.binary !== undefined) payload = { case: "binary", value: c.binary };
  else if (c.json !== undefined) payload = { case: "json", value: fromJson(ValueSchema, c.json as JsonValue) };
  return create(SubmitStreamResponseSchema, {
    event: { case: "chunk", value: { $typeName: "dispatcher.v1.Chunk", payload, text: c.text ?? "", metadata: c.metadata ?? {} } },
  });
}

/** The end of a SubmitStream call. */
export function streamDoneToProto(r: JobResult): SubmitStreamResponse {
  return create(SubmitStreamResponseSchema, {
    event: {
      case: "done",
      value: {
        $typeName: "dispatcher.v1.Done",
        execution: durationOf(r.executionMs),
        timeToFirstChunk: r.timeToFirstChunkMs === undefined ? undefined : durationOf(r.timeToFirstChunkMs),
        attempts: r.attempts,
        metadata: r.metadata ?? {},
        chunks: r.chunks,
      },
    },
  });
}

/** Milliseconds (fractional, from performance.now()) → Duration; protobuf-es's durationFromMs wants whole ms. */
export function durationOf(ms: number): Duration {
  const whole = Math.max(0, ms);
  const seconds = Math.floor(whole / 1000);
  const nanos = Math.min(999_999_999, Math.round((whole - seconds * 1000) * 1e6));
  // A literal, not create(DurationSchema, …): the same message without create()'s generic field walk,
  // which showed in the Submit profile (two per response).
  return { $typeName: "google.protobuf.Duration", seconds: BigInt(seconds), nanos };
}

const jobStates: Record<AsyncJobState, JobState> = {
  queued: JobState.QUEUED,
  running: JobState.RUNNING,
  succeeded: JobState.SUCCEEDED,
  failed: JobState.FAILED,
  cancelled: JobState.CANCELLED,
  expired: JobState.EXPIRED,
};

/** A background job's state as the proto spells it. */
export function jobStateToProto(s: AsyncJobState): JobState {
  return jobStates[s];
}
