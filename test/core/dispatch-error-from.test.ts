import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { DispatchError } from "../../src/core/index.js";

const from = (e: unknown) => {
  const d = DispatchError.from(e);
  return { code: d.code, message: d.message, retryable: d.retryable, retryAfterMs: d.retryAfterMs };
};

describe("DispatchError.from", () => {
  it("reads a status `code` in any spelling", () => {
    for (const code of ["unavailable", "UNAVAILABLE", "Unavailable", " unavailable ", 14, "14"]) {
      expect(from(Object.assign(new Error("busy"), { code }))).toMatchObject({ code: "unavailable", message: "busy" });
    }
    expect(from(Object.assign(new Error("x"), { code: "DeadlineExceeded" })).code).toBe("deadline_exceeded");
    expect(from(Object.assign(new Error("x"), { code: "deadline-exceeded" })).code).toBe("deadline_exceeded");
    expect(from(Object.assign(new Error("x"), { code: "canceled" })).code).toBe("cancelled");
    // gRPC names without a core code of their own take the numeric table's choice.
    expect(from(Object.assign(new Error("x"), { code: "OUT_OF_RANGE" })).code).toBe("invalid_argument");
    expect(from(Object.assign(new Error("x"), { code: "data_loss" })).code).toBe("internal");
  });

  it("is retryable only when the error says so, and keeps its Retry-After", () => {
    expect(from(Object.assign(new Error("x"), { code: "unavailable" })).retryable).toBe(false);
    expect(from(Object.assign(new Error("x"), { code: 14 })).retryable).toBe(false);
    expect(from(Object.assign(new Error("x"), { code: "unavailable", retryable: true, retryAfterMs: 250 }))).toMatchObject({ retryable: true, retryAfterMs: 250 });
    expect(from(Object.assign(new Error("x"), { code: "unavailable", retryable: "yes", retryAfterMs: -1 }))).toMatchObject({ retryable: false, retryAfterMs: undefined });
  });

  it("takes a gRPC client's status and its peer's words, not connect's prefixed message", () => {
    expect(from(new ConnectError("replica gone", Code.Unavailable))).toMatchObject({ code: "unavailable", message: "replica gone" });
  });

  it("leaves codes that name no status (a Node system error's) to the fallback", () => {
    const sys = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
    expect(from(sys)).toMatchObject({ code: "internal", message: "read ECONNRESET" });
    expect(DispatchError.from(sys, "unavailable").code).toBe("unavailable");
    expect(from(Object.assign(new Error("x"), { code: 0 })).code).toBe("internal"); // 0 is OK, never an error
    expect(from(Object.assign(new Error("x"), { code: "ok" })).code).toBe("internal");
  });

  it("a TimeoutError is DEADLINE_EXCEEDED, an AbortError CANCELLED", async () => {
    const s = AbortSignal.timeout(1);
    await new Promise((resolve) => s.addEventListener("abort", resolve));
    expect(from(s.reason).code).toBe("deadline_exceeded");
    const ac = new AbortController();
    ac.abort();
    expect(from(ac.signal.reason).code).toBe("cancelled");
  });

  it("keeps a DispatchError from another copy of the module: code, message, retryable", () => {
    class DispatchError2 extends Error {
      override name = "DispatchError";
      code = "resource_exhausted";
      retryable = true;
      metadata = { limit: "10" };
    }
    const d = DispatchError.from(new DispatchError2("slow down"));
    expect([d.code, d.message, d.retryable, d.metadata]).toEqual(["resource_exhausted", "slow down", true, { limit: "10" }]);
  });
});
