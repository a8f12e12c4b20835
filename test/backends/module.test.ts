import { describe, expect, it } from "vitest";
import { createBackend } from "../../src/backends/registry.js";

const dir = "test/backends/fixtures";

describe("module backend", () => {
  it("loads a user's handler", async () => {
    const b = await createBackend("module", { path: `${dir}/upper.mjs` }, "backends[0]");
    const r = await b.handler({ json: "hi" }, { workerId: "m/0" } as never);
    expect(r).toEqual({ json: { upper: "HI", worker: "m/0" } });
  });

  it("says clearly when the module is missing or exports no handler", async () => {
    await expect(createBackend("module", { path: `${dir}/missing.mjs` }, "backends[0]")).rejects.toThrow(
      /^backends\[0\]\.options\.path: cannot load module "test\/backends\/fixtures\/missing\.mjs"/,
    );
    await expect(createBackend("module", { path: `${dir}/upper.mjs`, export: "nope" }, "backends[0]")).rejects.toThrow(
      'backends[0].options.export: module "test/backends/fixtures/upper.mjs" exports no function "nope"; its function exports: handler',
    );
    await expect(createBackend("module", { path: `${dir}/upper.mjs`, export: "notAFunction" }, "backends[1]")).rejects.toThrow(
      /backends\[1\]\.options\.export: .* exports no function "notAFunction"/,
    );
    await expect(createBackend("module", {}, "backends[0]")).rejects.toThrow(/backends\[0\]\.options\.path: expected the path/);
    await expect(createBackend("module", { path: "x.mjs", extra: 1 }, "backends[0]")).rejects.toThrow(/backends\[0\]\.options\.extra: unknown option/);
  });
});
