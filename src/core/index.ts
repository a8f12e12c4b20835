// The core: transport-free and telemetry-free. Node built-ins only.
export { createDispatcher } from "./dispatcher.js";
export type { Dispatcher, SubmitOptions, JobResult, JobStream, WorkerSnapshot } from "./dispatcher.js";
export type { StreamEvent } from "./stream.js";
export { DispatchError } from "./errors.js";
export type { AbortReason, ErrorCode, DispatchErrorOptions } from "./errors.js";
export type { Chunk, ChunkStream, Handler, HandlerContext, HandlerResult, Payload } from "./handler.js";
export { isChunkStream } from "./handler.js";
export { combineObservers } from "./observer.js";
export type { AffinityOutcome, DispatchObserver, JobOutcome, JobState, JobView } from "./observer.js";
export type { AffinityOptions, BackendOptions, DispatcherOptions, OutlierOptions, RetryOptions, SchedulingOptions, WorkerOptions } from "./options.js";
export { registerPolicy, policyNames } from "./policy.js";
export type { SelectionPolicy, PolicyFactory } from "./policy.js";
export type { WorkerState, WorkerView } from "./worker.js";
export { systemClock } from "./clock.js";
export type { Clock, TimerHandle } from "./clock.js";
export type { CapacityAnswer, CapacityLease, CapacityRequest, LimitKind, LimitSpec, LimitStatus, LimitStore } from "./limits.js";
export type { PinStore } from "./pins.js";
