import {
  combineObservers,
  createDispatcher,
  DispatchError,
  systemClock,
  type Clock,
  type DispatchObserver,
  type Handler,
  type JobView,
} from "../../src/core/index.js";
import { jitterClock, type JitterClock } from "../helpers/jitter-clock.js";
import { flush, seededRandom } from "../helpers/manual-clock.js";
import { LifecycleRecorder, type HandlerEnd } from "./lifecycle-recorder.js";

/**
 * One run of the lifecycle property test (issue: "One job lifecycle"): seeded
 * random interleavings of submit, client cancel, deadlines, handlers that
 * resolve, reject, throw, return synchronously, hang (heeding their signal
 * or not), retries, ejection and close(). Most runs use a manual clock whose
 * timers fire up to 2 ms early and 3 ms late; some run on the real clock,
 * whose timers fire early by themselves. After each run: every admitted job
 * settled exactly once and every caller got exactly one answer; per-worker
 * counters add up to the attempts; queues, in-flight counts and the gauges
 * built from the events are zero; no timer is left armed; each outcome
 * matches its cause (LifecycleRecorder).
 */

const SLACK_MS = 2;
const EJECT_AFTER = 2;

type Behaviour = "ok" | "ok-sync" | "fail-retryable" | "fail-final" | "throw-sync" | "hang" | "hang-deaf" | "ok-late" | "stream" | "stream-stall";
const behaviours: Behaviour[] = [
  "ok", "ok", "ok-sync", "fail-retryable", "fail-retryable", "fail-final", "throw-sync", "hang", "hang-deaf", "ok-late", "stream", "stream",
  "stream-stall",
];

export interface RunResult {
  violations: string[];
  submits: number;
  early: number;
}

export async function runScenario(seed: number, real: boolean, extra?: DispatchObserver): Promise<RunResult> {
  const random = seededRandom(seed);
  const scale = real ? 0.5 : 1; // real runs are shorter: they sleep
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const ms = (v: number) => Math.round(v * scale);
  const clock: Clock & Partial<JitterClock> = real ? systemClock : jitterClock(seededRandom(seed ^ 0x5eed));
  const handlerEnds = new Map<string, HandlerEnd>();
  const cancelledIds = new Set<string>();
  let closing = false;
  const idOf = (job: JobView) => (job as unknown as { metadata: Record<string, string> }).metadata["id"]!;
  // Real timers fire early by up to ~2 ms, more when the loop is busy (PLATFORM.md): a wider margin there.
  const recorder = new LifecycleRecorder(clock, idOf, handlerEnds, cancelledIds, () => closing, real ? 5 : SLACK_MS, EJECT_AFTER);
  const observerErrors: string[] = [];
  // One in ten runs adds an observer that throws now and then: no job may be stranded by it.
  const throwing = random() < 0.1;
  const checked: DispatchObserver = extra === undefined ? recorder : combineObservers(recorder, extra);
  const observer: DispatchObserver = throwing
    ? new Proxy(checked, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (typeof v !== "function" || !String(prop).startsWith("job")) return v;
          return (...args: unknown[]) => {
            (v as (...a: unknown[]) => void).apply(target, args);
            if (random() < 0.2) throw new Error(`observer ${String(prop)} failed`);
          };
        },
      })
    : checked;

  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimer(() => r(), ms, undefined));
  const handler: Handler = (payload, ctx) => {
    const id = ctx.metadata["id"]!;
    const key = `${id}#${ctx.attempt}`;
    const b = behaviours[int(0, behaviours.length - 1)]!;
    const d = ms(int(0, 30));
    const end = (how: HandlerEnd) => handlerEnds.set(key, how);
    switch (b) {
      case "ok":
        return sleep(d).then(() => (end("ok"), payload));
      case "ok-sync":
        end("ok");
        return payload;
      case "fail-retryable":
        return sleep(d).then(() => {
          end("failed");
          throw new DispatchError("unavailable", "upstream reset", { retryable: true });
        });
      case "fail-final":
        return sleep(d).then(() => {
          end("failed");
          throw new DispatchError(random() < 0.5 ? "invalid_argument" : "internal", "upstream said no");
        });
      case "throw-sync":
        end("failed");
        throw new Error("handler bug");
      case "hang":
        return new Promise((_, reject) => {
          ctx.signal.addEventListener("abort", () => {
            end("failed");
            reject(ctx.signal.reason);
          });
        });
      case "hang-deaf":
        return new Promise(() => undefined);
      case "ok-late":
        // Ignores its signal and answers anyway: the answer must be dropped if the job has settled.
        return sleep(d + ms(20)).then(() => (end("ok"), payload));
      case "stream":
      case "stream-stall":
        return (async function* () {
          try {
            for (let i = 0; i < 3; i++) {
              await sleep(ms(int(0, 10)));
              if (b === "stream-stall" && i === 1) {
                // Stalls until aborted (the stall timeout, the deadline, a cancel or shutdown).
                await new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
              }
              yield { text: `${id}.${ctx.attempt}.${i}` };
            }
          } catch (e) {
            end("failed");
            throw e;
          }
          end("ok");
          return { chunks: "3" };
        })();
    }
  };

  const retry = random() < 0.6;
  const d = createDispatcher({
    clock,
    random,
    observer,
    onError: (e) => observerErrors.push(String(e)),
    backends: [
      {
        name: "b",
        handler,
        workers: int(1, 3),
        maxConcurrency: int(1, 2),
        queueCapacity: int(0, 3),
        timeoutMs: random() < 0.5 ? 0 : ms(int(15, 60)),
        firstChunkTimeoutMs: random() < 0.5 ? 0 : ms(int(5, 20)),
        stallTimeoutMs: random() < 0.5 ? 0 : ms(int(5, 20)),
        affinity: { ttlMs: 1_000 },
        retry: retry ? { maxAttempts: 3, initialBackoffMs: 4, maxBackoffMs: 10, budgetPercent: 100, minRetryConcurrency: 100 } : undefined,
        scheduling: {
          agingMs: random() < 0.5 ? 0 : ms(int(5, 30)),
          tenantQueueShare: random() < 0.5 ? 1 : 0.5,
          tenantWeights: { t0: 2 },
          deadlineAware: random() < 0.7,
          displace: random() < 0.7,
        },
        outlier: { consecutiveFailures: EJECT_AFTER, baseEjectionMs: ms(40), maxEjectionMs: ms(80), maxEjectionPercent: 50 },
      },
    ],
  });

  // The timeline: submits, cancels and one close, at random times.
  const n = int(3, 20);
  const ops: { at: number; run: () => void }[] = [];
  /** What each streaming caller read, chunk by chunk. */
  const streamed = new Map<string, string[]>();
  const answers: Promise<[string, string]>[] = [];
  let answered = 0;
  for (let i = 0; i < n; i++) {
    const id = `j${i}`;
    const ac = new AbortController();
    const at = ms(int(0, 100));
    const timeoutMs = random() < 0.4 ? undefined : ms(int(1, 60));
    const session = random() < 0.5 ? "" : `s${int(0, 2)}`;
    const priority = random() < 0.3 ? undefined : int(0, 4);
    const tenant = random() < 0.3 ? "" : `t${int(0, 2)}`;
    const streaming = random() < 0.3;
    ops.push({
      at,
      run: () => {
        const request = { backend: "b", sessionId: session, metadata: { id }, signal: ac.signal, timeoutMs, priority, tenant };
        let p;
        if (streaming) {
          // A streaming caller reads every event, as a client does; its answer is the job's result.
          const job = d.submitStream(request);
          const texts: string[] = [];
          streamed.set(id, texts);
          void (async () => {
            for await (const e of job.events) {
              if (e.type !== "chunk") continue;
              if (e.chunk.text !== undefined) texts.push(e.chunk.text);
              if (random() < 0.3) await sleep(ms(int(0, 5)));
            }
          })().catch(() => undefined);
          p = job.result;
        } else {
          p = d.submit(request);
        }
        answers.push(
          p.then(
            (): [string, string] => (answered++, [id, "ok"]),
            (e: DispatchError): [string, string] => (answered++, [id, e.code]),
          ),
        );
      },
    });
    if (random() < 0.25) {
      ops.push({
        at: at + ms(int(0, 40)),
        run: () => {
          cancelledIds.add(id);
          ac.abort();
        },
      });
    }
  }
  let closed: Promise<void> | undefined;
  const closeAt = ms(int(40, 160));
  ops.push({
    at: closeAt,
    run: () => {
      closing = true;
      closed = d.close({ graceMs: ms(int(0, 50)) });
    },
  });
  ops.sort((a, b) => a.at - b.at);

  const start = clock.now();
  for (const op of ops) {
    const wait = start + op.at - clock.now();
    if (wait > 0) {
      if (real) await new Promise((r) => setTimeout(r, wait));
      else clock.advance!(wait);
    }
    await flush();
    op.run();
    await flush();
  }
  // Let every timer run out: grace, backoffs, ejections, handler delays.
  for (let i = 0; i < (real ? 400 : 40) && (answered < answers.length || closed === undefined); i++) {
    if (real) await new Promise((r) => setTimeout(r, 10));
    else clock.advance!(10);
    await flush();
  }
  await closed;
  for (let i = 0; i < 10; i++) {
    if (real) await new Promise((r) => setTimeout(r, 10));
    else clock.advance!(10);
    await flush();
  }
  const byId = new Map(await Promise.all(answers));
  const codes = [...byId.values()];

  const v = [...recorder.violations];
  const snapshot = d.snapshot();
  // Every admitted job ended exactly once; every caller heard once.
  const admitted = recorder.jobs.size;
  if (admitted + recorder.rejected !== answers.length) v.push(`admitted ${admitted} + rejected ${recorder.rejected} ≠ submits ${answers.length}`);
  for (const [job, t] of recorder.jobs) if (t.ended !== 1) v.push(`${idOf(job)} ended ${t.ended} times`);
  if (answered !== answers.length) v.push(`${answered} answers for ${answers.length} submits`);
  // Per-worker counters add up to the attempts; the answers agree with them.
  const sum = (f: (w: (typeof snapshot)[number]) => number) => snapshot.reduce((s, w) => s + f(w), 0);
  if (sum((w) => w.completed + w.errors + w.cancelled + w.displaced) !== recorder.attemptsQueued) {
    v.push(`worker counters ${sum((w) => w.completed + w.errors + w.cancelled + w.displaced)} ≠ attempts ${recorder.attemptsQueued}`);
  }
  const ok = codes.filter((c) => c === "ok").length;
  if (sum((w) => w.completed) !== ok || recorder.okAnswers !== ok) v.push(`completed ${sum((w) => w.completed)} / ok events ${recorder.okAnswers} ≠ ok answers ${ok}`);
  if (sum((w) => w.inflight + w.queued) !== 0) v.push("a worker still has jobs");
  if (!recorder.gaugesAtZero()) v.push(`gauges from events not zero: ${JSON.stringify([...recorder.queued, ...recorder.inflight])}`);
  if (!real && clock.pending !== 0) v.push(`${clock.pending} timers still armed`);
  // Each caller's answer is its job's outcome.
  for (const [job, t] of recorder.jobs) {
    const expected = t.outcome === "ok" ? "ok" : t.code;
    if (byId.get(idOf(job)) !== expected) v.push(`${idOf(job)} answered ${byId.get(idOf(job))}, ended ${t.outcome} (${t.code})`);
  }
  // A streaming caller read one attempt's chunks, in order, none twice, none from another attempt.
  for (const [id, texts] of streamed) {
    if (texts.length === 0 || texts[0] === undefined || !texts[0].startsWith(`${id}.`)) {
      if (texts.length > 0) v.push(`${id} read ${JSON.stringify(texts)}`);
      continue;
    }
    const attempt = texts[0].split(".")[1];
    const expected = texts.map((_, i) => `${id}.${attempt}.${i}`);
    if (JSON.stringify(texts) !== JSON.stringify(expected)) v.push(`${id} read ${JSON.stringify(texts)}: mixed, repeated or out of order`);
    if (byId.get(id) === "ok" && texts.length !== 3) v.push(`${id} answered ok after ${texts.length} of 3 chunks`);
  }
  // A throwing observer is reported, never silent.
  if (!throwing && observerErrors.length > 0) v.push(`observer errors reported without a throwing observer: ${observerErrors[0]}`);
  return { violations: v.map((s) => `seed ${seed}${real ? " (real clock)" : ""}: ${s}`), submits: answers.length, early: clock.early ?? 0 };
}

