import { describe, expect, it } from "vitest";
import type { BackendLog } from "../../src/backends/log.js";
import { guardHandler } from "../../src/backends/module.js";
import type { HandlerContext, HandlerResult } from "../../src/core/index.js";

const ctx = { workerId: "m/0", attempt: 1, signal: new AbortController().signal } as HandlerContext;

function logged() {
  const lines: { level: string; obj: Record<string, unknown>; msg?: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  const log: BackendLog = { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
  return { lines, log };
}

/** What a user's handler returning `r` (synchronously) comes out as, or the error it fails with. */
function outcome(r: () => unknown, log = logged().log): HandlerResult | { code: string; message: string; retryable: boolean } {
  try {
    return guardHandler(r, log)({ json: null }, ctx) as HandlerResult;
  } catch (e) {
    const d = e as { code: string; message: string; retryable: boolean };
    return { code: d.code, message: d.message, retryable: d.retryable };
  }
}

describe("module handler results", () => {
  it("are normalised as JSON.stringify reads them", () => {
    const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
    const money = { toJSON: (key: string) => `EUR 12.50 (${key})` };
    const r = outcome(() => ({
      json: { a: 1, b: undefined, f: () => 1, at, price: money, list: [1, undefined, () => 2], boxed: new String("s"), nested: { x: null } },
    }));
    expect(r).toEqual({
      json: { a: 1, at: "2026-01-02T03:04:05.000Z", price: "EUR 12.50 (price)", list: [1, null, null], boxed: "s", nested: { x: null } },
    });
    expect(outcome(() => ({ json: undefined }))).toEqual({ json: null });
    expect(outcome(() => undefined)).toEqual({ json: null });
    expect(outcome(() => ({ json: at }))).toEqual({ json: "2026-01-02T03:04:05.000Z" });
    // The same object twice is no cycle.
    const shared = { k: 1 };
    expect(outcome(() => ({ json: [shared, shared] }))).toEqual({ json: [{ k: 1 }, { k: 1 }] });
  });

  it("refuses values JSON cannot hold with INVALID_ARGUMENT naming their path", () => {
    const cases: [unknown, string][] = [
      [{ items: [{ n: 1 }, { n: 2 }, { n: 3n }] }, "result.json.items[2].n: a BigInt"],
      [{ score: NaN }, "result.json.score: NaN"],
      [[1, -Infinity], "result.json[1]: -Infinity"],
      [{ "a b": { c: Infinity } }, 'result.json["a b"].c: Infinity'],
    ];
    for (const [json, message] of cases) {
      expect(outcome(() => ({ json }))).toMatchObject({ code: "invalid_argument", message: expect.stringContaining(message) });
    }
    const loop: Record<string, unknown> = { name: "loop" };
    loop["self"] = { back: loop };
    expect(outcome(() => ({ json: loop }))).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("result.json.self.back: a circular reference") });
  });

  it("takes binary as a Uint8Array (or ArrayBuffer), metadata as strings", () => {
    expect(outcome(() => ({ binary: Buffer.from([1, 2]), metadata: { n: 2, ok: true, gone: undefined, s: "x" } }))).toEqual({
      binary: Buffer.from([1, 2]),
      metadata: { n: "2", ok: "true", s: "x" },
    });
    expect(outcome(() => ({ binary: new Uint8Array([7]).buffer }))).toEqual({ binary: new Uint8Array([7]) });
    expect(outcome(() => ({ binary: [1, 2] }))).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("result.binary: expected a Uint8Array") });
    expect(outcome(() => ({ json: 1, metadata: { o: {} } }))).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("result.metadata.o") });
  });

  it("says what was wrong with a result that is no payload", () => {
    expect(outcome(() => ({ answer: 42 }))).toMatchObject({ code: "internal", message: expect.stringContaining("an object with keys answer") });
    expect(outcome(() => "text")).toMatchObject({ code: "internal", message: expect.stringContaining("returned a string") });
  });

  it("stays synchronous for a synchronous handler, and settles a promise for an async one", async () => {
    const h = guardHandler(() => ({ json: 1 }), logged().log);
    expect(h({ json: null }, ctx)).toEqual({ json: 1 });
    const a = guardHandler(async () => ({ json: { d: new Date(0) } }), logged().log);
    await expect(a({ json: null }, ctx)).resolves.toEqual({ json: { d: "1970-01-01T00:00:00.000Z" } });
  });
});

describe("module handler errors", () => {
  it("keep a status named by `code` in any spelling, with its message and retryable", async () => {
    const spellings: unknown[] = ["unavailable", "UNAVAILABLE", "Unavailable", 14, "14"];
    for (const code of spellings) {
      const thrown = Object.assign(new Error("replica warming up"), { code, retryable: true });
      expect(outcome(() => {
        throw thrown;
      })).toEqual({ code: "unavailable", message: "replica warming up", retryable: true });
      // Rejected as well as thrown.
      await expect(guardHandler(() => Promise.reject(thrown), logged().log)({ json: null }, ctx)).rejects.toMatchObject({ code: "unavailable", retryable: true });
    }
    expect(outcome(() => {
      throw Object.assign(new Error("too big"), { code: "RESOURCE_EXHAUSTED" });
    })).toEqual({ code: "resource_exhausted", message: "too big", retryable: false });
    expect(outcome(() => {
      throw { code: "deadline-exceeded", message: "slow" };
    })).toMatchObject({ code: "deadline_exceeded", message: "slow" });
  });

  it("replace any other error's message with 'handler failed' and log the original", async () => {
    const { lines, log } = logged();
    const secret = new Error("ENOENT: no such file or directory, open '/srv/app/secrets/key.pem'");
    expect(outcome(() => {
      throw secret;
    }, log)).toEqual({ code: "internal", message: "handler failed on m/0", retryable: false });
    expect(lines).toEqual([{ level: "error", obj: { err: secret, worker: "m/0", attempt: 1 }, msg: "module handler failed on m/0" }]);
    // A bug's TypeError, a Node system error's string code and a thrown string: the same.
    const bug = guardHandler(async (p: unknown) => (p as { x: { y: number } }).x.y, log);
    await expect(bug({ json: null }, ctx)).rejects.toMatchObject({ code: "internal", message: "handler failed on m/0" });
    expect(outcome(() => {
      throw Object.assign(new Error("connect ECONNREFUSED 10.0.0.5:5432"), { code: "ECONNREFUSED" });
    })).toMatchObject({ code: "internal", message: "handler failed on m/0" });
    expect(outcome(() => {
      throw "/etc/passwd";
    })).toMatchObject({ code: "internal", message: "handler failed on m/0" });
  });

  it("a handler's own AbortSignal.timeout is DEADLINE_EXCEEDED, an abort CANCELLED", async () => {
    const timedOut = guardHandler(
      (p, c) =>
        new Promise((_, reject) => {
          const s = AbortSignal.timeout(1);
          s.addEventListener("abort", () => reject(s.reason as Error));
          void c;
        }),
      logged().log,
    );
    await expect(timedOut({ json: null }, ctx)).rejects.toMatchObject({ code: "deadline_exceeded" });
    const ac = new AbortController();
    ac.abort();
    expect(outcome(() => {
      throw ac.signal.reason;
    })).toMatchObject({ code: "cancelled" });
  });
});
