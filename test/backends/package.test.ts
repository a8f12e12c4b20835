import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startChild } from "../helpers/child.js";
import { connectClient } from "../helpers/clients.js";

/**
 * The package as users meet it: built as `npm run build` builds it (into a
 * copy beside the real package.json, so this suite never rewrites dist/),
 * imported by name from another directory, and the example module run by
 * the service.
 */
const repo = join(import.meta.dirname, "../..");
const run = promisify(execFile);
let dir: string;
let pkg: string;
let consumer: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dispatcher-package-"));
  pkg = join(dir, "dispatcher");
  mkdirSync(pkg);
  cpSync(join(repo, "package.json"), join(pkg, "package.json"));
  cpSync(join(repo, "examples"), join(pkg, "examples"), { recursive: true });
  symlinkSync(join(repo, "node_modules"), join(pkg, "node_modules"), "dir");
  await run(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", join(repo, "tsconfig.build.json"), "--outDir", join(pkg, "dist")], { cwd: repo });
  // Another project that depends on it.
  consumer = join(dir, "app");
  mkdirSync(join(consumer, "node_modules"), { recursive: true });
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "app", type: "module", private: true }));
  symlinkSync(pkg, join(consumer, "node_modules/dispatcher"), "dir");
  symlinkSync(join(repo, "node_modules/@types"), join(consumer, "node_modules/@types"), "dir");
}, 120_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("the dispatcher package", () => {
  it("imports by name: DispatchError and the core factory work across the package boundary", async () => {
    // No retry here: the core's timers are unref'd, so a script whose only pending work is a backoff would exit.
    const script = `
      import { DispatchError, createDispatcher, startApp, validateConfig } from "dispatcher";
      const d = createDispatcher({ backends: [{ name: "b", handler: (p, ctx) => {
        if (ctx.metadata.fail) throw new DispatchError("unavailable", "warming up", { retryable: true });
        return { json: { worker: ctx.workerId } };
      } }] });
      const r = await d.submit({ backend: "b" });
      const failed = await d.submit({ backend: "b", metadata: { fail: "1" } }).catch((e) => e);
      const unknown = await d.submit({ backend: "nope" }).catch((e) => e);
      await d.close();
      console.log(JSON.stringify({ result: r.payload.json, failed: [failed instanceof DispatchError, failed.code, failed.retryable],
        unknown: [unknown instanceof DispatchError, unknown.code], startApp: typeof startApp, validateConfig: typeof validateConfig }));`;
    const out = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: consumer }).catch(
      (e: { code: unknown; stdout: string; stderr: string }) => ({ stdout: `exit ${String(e.code)}\n${e.stdout}\n${e.stderr}` }),
    );
    expect(JSON.parse(out.stdout), out.stdout).toEqual({
      result: { worker: "b/0" },
      failed: [true, "unavailable", true],
      unknown: [true, "not_found"],
      startApp: "function",
      validateConfig: "function",
    });
  });

  it("ships its types: a handler module type-checks against them", async () => {
    writeFileSync(
      join(consumer, "handler.ts"),
      `import { DispatchError, type Handler } from "dispatcher";
       export const handler: Handler = async (payload, ctx) => {
         if (ctx.signal.aborted) throw new DispatchError("cancelled", "gone", { retryable: false });
         return { json: payload.json ?? null, metadata: { worker: ctx.workerId } };
       };
       // @ts-expect-error: not a status code (and proof that the types are read, not "any")
       new DispatchError("sort_of_broken", "x");
       // @ts-expect-error: a result is { json } or { binary }
       export const bad: Handler = () => ({ text: "x" });
      `,
    );
    const tsc = join(repo, "node_modules/typescript/bin/tsc");
    const args = ["--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--types", "node", "handler.ts"];
    const out = await run(process.execPath, [tsc, ...args], { cwd: consumer }).then(() => "", (e: { stdout: string }) => e.stdout);
    expect(out).toBe("");
  });

  it("runs the example module in the service, as examples/module.yaml configures it", async () => {
    const child = await startChild(["node", "dist/src/main.js", "--config", "examples/module.yaml", "--port", "0"], { cwd: pkg });
    try {
      const client = connectClient(child.port);
      const submit = (metadata: Record<string, string>, json: unknown = { text: "to be or not to be" }) =>
        client.submit({ backend: "text", metadata, payload: { case: "json", value: fromJson(ValueSchema, json as never) } });
      const r = await submit({});
      const answer = toJson(ValueSchema, r.payload.value as never) as Record<string, unknown>;
      expect(answer).toMatchObject({ words: 6, longest: "not" });
      expect(answer["servingSince"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(r.metadata).toEqual({ attempt: "1" });
      const flaky = await submit({ flaky: "true" });
      expect([flaky.attempts, flaky.metadata["attempt"]]).toEqual([2, "2"]);
      const codeOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));
      const invalid = await codeOf(submit({}, { txt: 1 }));
      expect([invalid?.code, invalid?.rawMessage]).toEqual([Code.InvalidArgument, "json.text: expected a string"]);
      const crash = await codeOf(submit({ crash: "true" }));
      expect([crash?.code, crash?.rawMessage]).toEqual([Code.Internal, expect.stringMatching(/^handler failed on text\/\d$/)]);
      // The log line may reach us after the answer: the pipe is read asynchronously.
      await expect.poll(() => child.logs.join("\n"), { timeout: 10_000 }).toContain("cannot read /srv/text/dictionary.txt");
    } finally {
      child.proc.kill("SIGTERM");
    }
    expect(await child.exited).toBe(0);
  });
});
