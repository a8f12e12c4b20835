import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { createDispatcher, LocalJobStore } from "../../src/core/index.js";
import { jobMethods } from "../../src/jobs/service.js";
import { defaultLimits } from "../../src/server/limits.js";

describe("WatchJob streams per replica", () => {
  it("are capped: past the cap a watch is RESOURCE_EXHAUSTED, and a closed watch frees its place", async () => {
    const store = new LocalJobStore({ resultTtlMs: 60_000, maxJobs: 10 });
    const dispatcher = createDispatcher({ backends: [{ name: "b", handler: () => ({ json: null }) }] });
    const m = jobMethods(dispatcher, store, { maxQueued: 10, defaultTimeoutMs: 60_000, maxTimeoutMs: 60_000 }, defaultLimits, 2);
    // No runner: the job stays queued and its watches stay open.
    const { jobId } = await m.enqueue({ $typeName: "dispatcher.v1.EnqueueRequest", request: { $typeName: "dispatcher.v1.SubmitRequest", backend: "b", sessionId: "", payload: { case: undefined }, metadata: {}, tenant: "" }, idempotencyKey: "" }, { values: createContextValues() } as HandlerContext);
    const ac = new AbortController();
    const ctx = { signal: ac.signal } as HandlerContext;
    const watch = () => m.watchJob({ $typeName: "dispatcher.v1.WatchJobRequest", jobId, afterEventId: "" }, ctx);
    const a = watch();
    const b = watch();
    expect((await a.next()).value?.eventId).toBe("1");
    expect((await b.next()).value?.eventId).toBe("1");
    const c = watch();
    const refused = await c.next().then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(refused?.code).toBe(Code.ResourceExhausted);
    await a.return(undefined);
    const d = watch();
    expect((await d.next()).value?.eventId).toBe("1");
    ac.abort();
    await b.return(undefined);
    await d.return(undefined);
    await dispatcher.close();
    await store.close();
  });
});
