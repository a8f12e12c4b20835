import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { propagation, ROOT_CONTEXT, SpanKind, trace, type Context } from "@opentelemetry/api";
import { ChunkSchema, SubmitRequestSchema, SubmitResponseSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import type { BackendLog } from "../backends/log.js";
import { ChunkCollector, DispatchError, type AsyncJobOutcome, type ClaimedJob, type Dispatcher, type JobStore, type Payload } from "../core/index.js";
import { payloadFromProto, streamEventToProto, submitResponseToProto } from "../server/convert.js";

export interface RunnerOptions {
  store: JobStore;
  dispatcher: Dispatcher;
  /** Jobs this replica runs at once. */
  maxRunning: number;
  /** Largest encoded result kept; a larger one fails RESOURCE_EXHAUSTED. */
  maxResultBytes: number;
  /** How often held claims are renewed and cancels looked for, ms. */
  keepAliveMs: number;
  log?: BackendLog;
}

/** A job refused at admission (queues full, limits) waits this long and is submitted again, until its deadline. */
const READMIT_MS = 200;

/**
 * Takes background jobs from the store and runs them through the
 * dispatcher, like any SubmitStream (so they share backends, queues, limits,
 * priorities and affinity), recording their chunks and writing their
 * terminal state once. A job is run at least once: a replica that dies
 * running it stops renewing its claim, and another replica runs it again.
 */
export class JobRunner {
  private readonly running = new Map<string, { claim: ClaimedJob; abort: AbortController }>();
  private readonly runs = new Set<Promise<void>>();
  private stopped = false;
  private slotFreed: (() => void) | undefined;
  private readonly loopDone: Promise<void>;
  private readonly keepAliveTimer: NodeJS.Timeout;

  constructor(private readonly o: RunnerOptions) {
    this.keepAliveTimer = setInterval(() => void this.keepAlive(), o.keepAliveMs);
    this.keepAliveTimer.unref();
    this.loopDone = this.loop();
    o.store.onCancel?.((id) => this.cancel(id));
  }

  /** Takes no more jobs; those running go on (the dispatcher's drain ends them). */
  stop(): void {
    this.stopped = true;
    this.slotFreed?.();
  }

  /** Resolves once every running job has ended and been recorded (or left to another replica). */
  async closed(): Promise<void> {
    this.stop();
    await this.loopDone;
    await Promise.all([...this.runs]);
    clearInterval(this.keepAliveTimer);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const free = this.o.maxRunning - this.running.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        continue;
      }
      let claims: ClaimedJob[];
      try {
        claims = await this.o.store.claim(free, 1_000);
      } catch (e) {
        this.o.log?.warn({ err: (e as Error).name }, "background jobs: the store did not answer; trying again");
        await sleep(500);
        continue;
      }
      if (this.stopped) break;
      for (const c of claims) {
        // Claimed again while this replica still runs it (its renewals were late): the run in progress goes on.
        if (this.running.has(c.job.id)) continue;
        const abort = new AbortController();
        this.running.set(c.job.id, { claim: c, abort });
        const run = this.run(c, abort).finally(() => {
          this.running.delete(c.job.id);
          this.runs.delete(run);
          this.slotFreed?.();
          this.slotFreed = undefined;
        });
        this.runs.add(run);
      }
    }
  }

  private async keepAlive(): Promise<void> {
    if (this.running.size === 0) return;
    try {
      const cancel = await this.o.store.keepAlive([...this.running.values()].map((r) => r.claim));
      for (const id of cancel) this.cancel(id);
    } catch (e) {
      this.o.log?.warn({ err: (e as Error).name }, "background jobs: could not renew claims");
    }
  }

  private cancel(id: string): void {
    this.running.get(id)?.abort.abort(new DispatchError("cancelled", "cancelled by CancelJob while running", { abortReason: "cancel" }));
  }

  private async run(c: ClaimedJob, abort: AbortController): Promise<void> {
    // The run is its own trace: a span linked to the Enqueue call's, under which the job's queue and run spans go.
    const linked = c.job.traceparent === "" ? undefined : trace.getSpanContext(propagation.extract(ROOT_CONTEXT, { traceparent: c.job.traceparent }));
    const span = tracer().startSpan("dispatcher.background_job", {
      kind: SpanKind.INTERNAL,
      links: linked === undefined ? [] : [{ context: linked }],
      attributes: { "dispatcher.backend": c.job.backend, "dispatcher.job.id": c.job.id },
    }, ROOT_CONTEXT);
    try {
      const outcome = await this.outcome(c, abort, trace.setSpan(ROOT_CONTEXT, span));
      if (outcome !== undefined) span.setAttribute("dispatcher.job.state", outcome.state);
      if (outcome !== undefined) await this.o.store.finish(c, outcome);
    } catch (e) {
      // The store failed to record: the claim lapses and another run writes the outcome (at least once).
      this.o.log?.warn({ err: (e as Error).name, job: c.job.id }, "background jobs: could not record a job's outcome");
    } finally {
      span.end();
    }
  }

  /** Runs the job to its outcome; undefined when it must not be recorded here (shutting down, or not ours to start). */
  private async outcome(c: ClaimedJob, abort: AbortController, traceParent: Context): Promise<AsyncJobOutcome | undefined> {
    const job = c.job;
    const req = fromBinary(SubmitRequestSchema, job.request);
    let payload: Payload;
    try {
      payload = payloadFromProto(req.payload);
    } catch (e) {
      return { state: "failed", errorCode: "invalid_argument", errorMessage: `json: not a valid JSON value: ${(e as Error).message}` };
    }
    for (;;) {
      const left = job.deadline - Date.now();
      if (left <= 0) return { state: "expired", errorCode: "deadline_exceeded", errorMessage: "the job's timeout passed before it finished" };
      let started = false;
      const collector = new ChunkCollector();
      let first: Payload | undefined;
      const s = this.o.dispatcher.submitStream({
        backend: req.backend, sessionId: req.sessionId, payload, metadata: req.metadata,
        signal: abort.signal, timeoutMs: left, priority: req.priority, tenant: req.tenant, traceParent,
      });
      try {
        for await (const e of s.events) {
          if (e.type === "started") {
            started = true;
            if (!(await this.o.store.started(c, e.workerId))) {
              abort.abort(new DispatchError("cancelled", "the job was cancelled or ended elsewhere", { abortReason: "cancel" }));
              return undefined;
            }
            continue;
          }
          collector.add(e.chunk);
          if (collector.count === 1 && e.chunk.text === undefined) first = e.chunk.json !== undefined ? { json: e.chunk.json } : e.chunk.binary !== undefined ? { binary: e.chunk.binary } : undefined;
          const msg = streamEventToProto(e);
          if (msg.event.case === "chunk") await this.o.store.chunk(c, toBinary(ChunkSchema, msg.event.value));
        }
        const r = await s.result;
        // One payload chunk is a handler's one answer: the result Submit gives. A stream is collected as Submit collects it.
        const out = collector.count === 1 && first !== undefined ? { ...first, metadata: r.metadata } : collector.result(r.metadata ?? undefined);
        const bytes = toBinary(SubmitResponseSchema, submitResponseToProto({ ...r, payload: out }, payload, undefined));
        if (bytes.byteLength > this.o.maxResultBytes) {
          return { state: "failed", errorCode: "resource_exhausted", errorMessage: `the result is ${bytes.byteLength} bytes, over jobs.max_result_bytes (${this.o.maxResultBytes})` };
        }
        return { state: "succeeded", result: bytes };
      } catch (e) {
        const err = DispatchError.from(e);
        // This replica is shutting down: not the job's outcome. Its claim lapses and another replica runs it.
        if (err.code === "unavailable" && this.o.dispatcher.closing) return undefined;
        if (abort.signal.aborted) return { state: "cancelled", errorCode: "cancelled", errorMessage: "cancelled by CancelJob while running" };
        // Refused at admission (queues full, limits): it is still queued as far as its client knows; try again.
        if (!started && err.code === "resource_exhausted" && Date.now() + READMIT_MS < job.deadline) {
          await sleep(READMIT_MS);
          continue;
        }
        if (err.code === "deadline_exceeded" && Date.now() >= job.deadline - 5) {
          return { state: "expired", errorCode: "deadline_exceeded", errorMessage: "the job's timeout passed before it finished" };
        }
        return { state: "failed", errorCode: err.code, errorMessage: err.message };
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The global tracer: a no-op until the service's telemetry starts an SDK. */
function tracer() {
  return trace.getTracer("dispatcher");
}
