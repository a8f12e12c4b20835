import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { create, fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SubmitRequestSchema, type SubmitResponse } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import type { DispatchObserver, JobView } from "../../src/core/index.js";
import { startTelemetry, type Telemetry } from "../../src/telemetry/index.js";
import { deferred } from "../helpers/app.js";
import { connectClient, grpcJsClient, grpcUnary } from "../helpers/clients.js";
import { endMs, inTrace, isChildOf, SpanRecorder, startMs } from "../helpers/spans.js";

const SUBMIT = "dispatcher.v1.DispatcherService/Submit";
const METRICS = "dispatcher.v1.DispatcherService/WorkerMetrics";
const WAIT = "dispatcher.queue.wait";
const RUN = "dispatcher.job.run";

/** Resolves waiters once a count reaches their target: test control without sleeps. */
function counter() {
  let n = 0;
  let waiters: { at: number; resolve: () => void }[] = [];
  return {
    get value() {
      return n;
    },
    bump() {
      n++;
      waiters = waiters.filter((w) => (n >= w.at ? (w.resolve(), false) : true));
    },
    reach(at: number): Promise<void> {
      return n >= at ? Promise.resolve() : new Promise((resolve) => waiters.push({ at, resolve }));
    },
  };
}

const recorder = new SpanRecorder();
let telemetry: Telemetry;
let app: App;
let upstream: http.Server;
let activeInHandler: string | undefined;
let explicitHeaders: Record<string, string> | undefined;
let upstreamHeaders: http.IncomingHttpHeaders[] = [];
const admitted = counter();
/** performance.now() when the last job was admitted. */
let lastAdmittedAt = 0;
/** Jobs of backend "held" wait on these until the test releases them. */
let holds: ReturnType<typeof deferred<void>>[] = [];
const heldStarted = counter();

beforeAll(async () => {
  telemetry = await startTelemetry({ env: {}, spanProcessors: [recorder] });
  const inner = telemetry.observer;
  const observer: DispatchObserver = {
    ...inner,
    jobQueued(job: JobView) {
      inner.jobQueued!(job);
      lastAdmittedAt = performance.now();
      admitted.bump();
    },
  };
  const config = validateConfig({ server: { port: 0, shutdown_grace: "2s" }, backends: [{ name: "echo", kind: "echo", workers: 1 }] });
  app = await startApp(config, { observer, interceptors: telemetry.interceptors });
  app.dispatcher.register({
    name: "held",
    maxConcurrency: 1,
    queueCapacity: 1,
    handler: async (payload) => {
      const hold = deferred<void>();
      holds.push(hold);
      heldStarted.bump();
      await hold.promise;
      return payload;
    },
  });
  upstream = http.createServer((req, res) => {
    upstreamHeaders.push(req.headers);
    res.end("{}");
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`;
  // A registered handler runs with its run span active (ambientTrace, the default): its own spans are children.
  app.dispatcher.register({
    name: "own-span",
    handler: (payload) =>
      trace.getTracer("test").startActiveSpan("handler.work", (span) => {
        activeInHandler = trace.getActiveSpan()?.spanContext().spanId;
        span.end();
        return payload;
      }),
  });
  // One that carries trace context in its requests' headers only (as the built-in kinds do) runs with none active.
  app.dispatcher.register({
    name: "explicit",
    ambientTrace: false,
    handler: (payload, ctx) => {
      activeInHandler = trace.getActiveSpan()?.spanContext().spanId;
      explicitHeaders = ctx.traceHeaders();
      return payload;
    },
  });
  app.dispatcher.register({
    name: "upstream",
    handler: async (payload, ctx) => {
      const res = await fetch(upstreamUrl, { headers: ctx.traceHeaders(), signal: ctx.signal });
      await res.text();
      return payload;
    },
  });
});

afterAll(async () => {
  await app?.close();
  await telemetry?.shutdown();
  await new Promise((resolve) => upstream?.close(resolve));
});

beforeEach(async () => {
  await recorder.reset();
});

const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });

/** The spans of the one Submit trace in the recorder, once its server span ended. */
async function submitTrace() {
  await recorder.ended(SUBMIT);
  const servers = recorder.named(SUBMIT);
  expect(servers).toHaveLength(1);
  const server = servers[0]!;
  const traceId = server.spanContext().traceId;
  return { server, waits: inTrace(recorder.spans(), traceId, WAIT), runs: inTrace(recorder.spans(), traceId, RUN) };
}

describe("tracing through a real server", () => {
  it("makes a SERVER span per Submit with queue-wait and run children", async () => {
    const res = await connectClient(app.server.port).submit({ backend: "echo", sessionId: "s1", payload: json({ a: 1 }) });
    expect(res.workerId).toBe("echo/0");
    const { server, waits, runs } = await submitTrace();
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(server.parentSpanContext).toBeUndefined();
    expect(server.attributes).toMatchObject({
      "rpc.system": "grpc",
      "rpc.service": "dispatcher.v1.DispatcherService",
      "rpc.method": "Submit",
      "rpc.grpc.status_code": 0,
    });
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
    expect(waits).toHaveLength(1);
    expect(runs).toHaveLength(1);
    const [wait, run] = [waits[0]!, runs[0]!];
    expect(isChildOf(wait, server)).toBe(true);
    expect(isChildOf(run, server)).toBe(true);
    expect(wait.attributes).toMatchObject({ "dispatcher.backend": "echo", "dispatcher.worker.id": "echo/0", "dispatcher.affinity": "miss" });
    expect(run.attributes).toMatchObject({
      "dispatcher.backend": "echo",
      "dispatcher.worker.id": "echo/0",
      "dispatcher.affinity": "miss",
      "dispatcher.attempt": 1,
      "dispatcher.outcome": "ok",
    });
    expect(endMs(wait)).toBeLessThanOrEqual(startMs(run));
    expect(startMs(server)).toBeLessThanOrEqual(startMs(wait));
    expect(endMs(run)).toBeLessThanOrEqual(endMs(server));
  });

  it("shows a job held in the queue: its wait lasts until the job ahead of it ends", async () => {
    holds = [];
    const client = connectClient(app.server.port);
    const first = client.submit({ backend: "held", payload: json("first") });
    await heldStarted.reach(heldStarted.value + 1);
    const second = client.submit({ backend: "held", payload: json("second") });
    await admitted.reach(admitted.value + 1); // the second job is in the queue
    const queuedAt = lastAdmittedAt;
    // Hold it there for a real round trip through the server, not a sleep.
    await client.submit({ backend: "echo", payload: json("meanwhile") });
    const heldForMs = performance.now() - queuedAt;
    holds[0]!.resolve();
    await heldStarted.reach(heldStarted.value + 1);
    holds[1]!.resolve();
    const [, r2] = await Promise.all([first, second]);
    expect(r2.workerId).toBe("held/0");

    // The first Submit's server span started first.
    await recorder.ended(SUBMIT, 3);
    const servers = recorder
      .named(SUBMIT)
      .filter((s) => inTrace(recorder.spans(), s.spanContext().traceId, RUN)[0]?.attributes["dispatcher.backend"] === "held")
      .sort((x, y) => startMs(x) - startMs(y));
    expect(servers).toHaveLength(2);
    const [a, b] = servers.map((server) => ({
      server,
      wait: inTrace(recorder.spans(), server.spanContext().traceId, WAIT),
      run: inTrace(recorder.spans(), server.spanContext().traceId, RUN),
    }));
    for (const t of [a!, b!]) {
      expect(t.wait).toHaveLength(1);
      expect(t.run).toHaveLength(1);
      expect(isChildOf(t.wait[0]!, t.server)).toBe(true);
      expect(isChildOf(t.run[0]!, t.server)).toBe(true);
    }
    const [aWait, aRun, bWait, bRun] = [a!.wait[0]!, a!.run[0]!, b!.wait[0]!, b!.run[0]!];
    // Each trace has its own anchored clock: compare durations across traces, instants only within one.
    const ms = (s: typeof aWait) => endMs(s) - startMs(s);
    expect(ms(bWait)).toBeGreaterThanOrEqual(heldForMs);
    expect(ms(aRun)).toBeGreaterThanOrEqual(heldForMs);
    expect(ms(bWait)).toBeGreaterThan(ms(aWait));
    expect(startMs(bRun)).toBeGreaterThanOrEqual(endMs(bWait));
    // The queue wait reported to the client is the span's (to the clock's rounding).
    const reportedMs = Number(r2.queueWait!.seconds) * 1000 + r2.queueWait!.nanos / 1e6;
    expect(Math.abs(endMs(bWait) - startMs(bWait) - reportedMs)).toBeLessThan(1);
  });

  it("takes the parent from a traceparent sent by a grpc-js client", async () => {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const parentId = "b7ad6b7169203331";
    const metadata = new grpc.Metadata();
    metadata.set("traceparent", `00-${traceId}-${parentId}-01`);
    const client = grpcJsClient(app.server.port);
    try {
      await grpcUnary<SubmitResponse>(client, "submit", create(SubmitRequestSchema, { backend: "echo", payload: json(1) }), { metadata });
    } finally {
      client.close();
    }
    const { server, waits, runs } = await submitTrace();
    expect(server.spanContext().traceId).toBe(traceId);
    expect(server.parentSpanContext?.spanId).toBe(parentId);
    expect(server.parentSpanContext?.isRemote).toBe(true);
    expect(waits).toHaveLength(1);
    expect(runs).toHaveLength(1);
    expect(isChildOf(runs[0]!, server)).toBe(true);
  });

  it("makes the run span active for a handler that may make spans, and for one that says it needs none, only hands its traceparent", async () => {
    await connectClient(app.server.port, "grpc").submit({ backend: "own-span", payload: json(null) });
    const own = await submitTrace();
    const [work] = inTrace(recorder.spans(), own.server.spanContext().traceId, "handler.work");
    expect(work).toBeDefined();
    expect(isChildOf(work!, own.runs[0]!)).toBe(true);
    expect(activeInHandler).toBe(work!.spanContext().spanId);

    await recorder.reset();
    activeInHandler = "unset";
    await connectClient(app.server.port, "grpc").submit({ backend: "explicit", payload: json(null) });
    const explicit = await submitTrace();
    expect(activeInHandler).toBeUndefined();
    expect(explicitHeaders?.["traceparent"]?.split("-")[2]).toBe(explicit.runs[0]!.spanContext().spanId);
  });

  it("parents a job's spans when an interceptor without a fast hook makes the fast path run the interceptor chain", async () => {
    const plain: Interceptor = (next) => (req) => next(req);
    const config = validateConfig({ server: { port: 0, shutdown_grace: "2s" }, backends: [{ name: "echo", kind: "echo", workers: 1 }] });
    const other = await startApp(config, { observer: telemetry.observer, interceptors: [plain, ...telemetry.interceptors] });
    try {
      await connectClient(other.server.port, "grpc").submit({ backend: "echo", payload: json(1) });
      const { server, waits, runs } = await submitTrace();
      expect(waits).toHaveLength(1);
      expect(runs).toHaveLength(1);
      expect(isChildOf(waits[0]!, server)).toBe(true);
      expect(isChildOf(runs[0]!, server)).toBe(true);
    } finally {
      await other.close();
    }
  });

  it("sends the run span's traceparent with the backend's outgoing request", async () => {
    upstreamHeaders = [];
    await connectClient(app.server.port, "grpc").submit({ backend: "upstream", payload: json(null) });
    expect(upstreamHeaders).toHaveLength(1);
    const traceparent = upstreamHeaders[0]!["traceparent"];
    expect(typeof traceparent).toBe("string");
    const [, traceId, spanId] = (traceparent as string).split("-");
    const { server, runs } = await submitTrace();
    expect(runs).toHaveLength(1);
    expect(traceId).toBe(server.spanContext().traceId);
    expect(spanId).toBe(runs[0]!.spanContext().spanId);
  });

  it("marks a failed job's run span and the server span as errors, with the real status code", async () => {
    const err = await connectClient(app.server.port)
      .submit({ backend: "echo", payload: json(1), metadata: { fail: "internal", fail_message: "boom" } })
      .catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Internal);
    const { server, runs } = await submitTrace();
    expect(server.attributes["rpc.grpc.status_code"]).toBe(Code.Internal);
    expect(server.status.code).toBe(SpanStatusCode.ERROR);
    const run = runs[0]!;
    expect(run.status).toEqual({ code: SpanStatusCode.ERROR, message: "boom" });
    expect(run.attributes).toMatchObject({ "dispatcher.outcome": "error", "error.type": "internal", "dispatcher.worker.id": "echo/0" });
  });

  it("leaves the server span's status unset for a client error, and still records the code", async () => {
    const client = grpcJsClient(app.server.port);
    try {
      const err = await grpcUnary(client, "submit", create(SubmitRequestSchema, { backend: "nope" })).catch((e: grpc.ServiceError) => e);
      expect((err as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
      const empty = await grpcUnary(client, "submit", create(SubmitRequestSchema, {})).catch((e: grpc.ServiceError) => e);
      expect((empty as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      client.close();
    }
    await recorder.ended(SUBMIT, 2);
    const codes = recorder.named(SUBMIT).map((s) => [s.attributes["rpc.grpc.status_code"], s.status.code]);
    expect(codes.sort()).toEqual([
      [grpc.status.INVALID_ARGUMENT, SpanStatusCode.UNSET],
      [grpc.status.NOT_FOUND, SpanStatusCode.UNSET],
    ]);
  });

  it("records a rejected job: RESOURCE_EXHAUSTED on the server span, an error span naming the worker", async () => {
    holds = [];
    const client = connectClient(app.server.port);
    const running = client.submit({ backend: "held", payload: json("running") });
    await heldStarted.reach(heldStarted.value + 1);
    const queued = client.submit({ backend: "held", payload: json("queued") });
    await admitted.reach(admitted.value + 1);
    const err = await client.submit({ backend: "held", payload: json("rejected") }).catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
    holds[0]!.resolve();
    await heldStarted.reach(heldStarted.value + 1);
    holds[1]!.resolve();
    await Promise.all([running, queued]);

    await recorder.ended(SUBMIT, 3);
    const rejected = recorder.named(SUBMIT).filter((s) => s.attributes["rpc.grpc.status_code"] === Code.ResourceExhausted);
    expect(rejected).toHaveLength(1);
    const server = rejected[0]!;
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
    const waits = inTrace(recorder.spans(), server.spanContext().traceId, WAIT);
    expect(waits).toHaveLength(1);
    expect(isChildOf(waits[0]!, server)).toBe(true);
    expect(waits[0]!.status.code).toBe(SpanStatusCode.ERROR);
    expect(waits[0]!.attributes).toMatchObject({
      "dispatcher.backend": "held",
      "dispatcher.worker.id": "held/0",
      "dispatcher.outcome": "rejected",
      "error.type": "resource_exhausted",
    });
    expect(inTrace(recorder.spans(), server.spanContext().traceId, RUN)).toHaveLength(0);
  });

  it("makes one span for a whole WorkerMetrics stream", async () => {
    const abort = new AbortController();
    const stream = connectClient(app.server.port).workerMetrics({}, { signal: abort.signal });
    let messages = 0;
    try {
      for await (const m of stream) {
        expect(m.workers.length).toBeGreaterThan(0);
        messages++;
        abort.abort();
      }
    } catch (e) {
      expect(ConnectError.from(e).code).toBe(Code.Canceled);
    }
    await recorder.ended(METRICS);
    const spans = recorder.named(METRICS);
    expect(spans).toHaveLength(1);
    expect(spans[0]!.kind).toBe(SpanKind.SERVER);
    expect(spans[0]!.attributes).toMatchObject({ "rpc.method": "WorkerMetrics", "rpc.grpc.status_code": Code.Canceled });
    expect(recorder.spans().filter((s) => s.spanContext().traceId === spans[0]!.spanContext().traceId)).toHaveLength(1);
  });
});

