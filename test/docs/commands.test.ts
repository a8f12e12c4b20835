import { execFile } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { defaultConfigFile } from "../../src/config.js";
import { startTestApp } from "../helpers/app.js";
import { DOC_ADDRESS, docFiles, isServiceCall, root, shBlocks, SKIP_MARKER } from "./doc-blocks.js";

/**
 * "Every command in the docs runs": each ```sh block of README.md and
 * docs/*.md is either run here, command by command, against the real service
 * on the built-in config (what `npm start` serves), or carries a
 * "# not run by the suite: <why>" line and is listed below as skipped.
 */

const blocks = docFiles().flatMap(shBlocks);
const runnable = blocks.filter((b) => b.skipReason === undefined);
const skipped = blocks.filter((b) => b.skipReason !== undefined);

let app: App;

beforeAll(async () => {
  app = await startTestApp({ backends: defaultConfigFile.backends });
});
afterAll(async () => {
  await app.close();
});

/** Runs a command as a reader would paste it, with the docs' port rewritten; `npx buf` is the devDependency's buf. */
function run(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const text = command.replace(DOC_ADDRESS, `127.0.0.1:${app.server.port}`).replace(/^npx buf /, "buf ");
  return new Promise((resolve) => {
    execFile("sh", ["-c", text], { cwd: root, timeout: 30_000, env: { ...process.env, PATH: `${root}node_modules/.bin:${process.env["PATH"]}` } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("shell blocks in the docs", () => {
  it("finds the blocks (the extraction itself works)", () => {
    expect(runnable.length).toBeGreaterThan(3);
    expect(runnable.some((b) => b.file === "README.md")).toBe(true);
  });

  it.each(runnable.map((b) => [`${b.file}:${b.line}`, b] as const))("%s holds only commands the suite runs", (_, block) => {
    const others = block.commands.filter((c) => !isServiceCall(c.text)).map((c) => c.text);
    // A block with anything else must say why it is not run: add a "# not run by the suite: <why>" line.
    expect(others, `${block.file}:${block.line} needs "${SKIP_MARKER} <why>"`).toEqual([]);
  });

  it.each(skipped.map((b) => [`${b.file}:${b.line}`, b] as const))("%s gives a reason for not running", (_, block) => {
    expect(block.skipReason).not.toBe("");
  });
});

// Only service calls are run: anything else in an unmarked block fails the check above instead of running here.
const calls = runnable.filter((b) => b.commands.some((c) => isServiceCall(c.text)));

describe.each(calls.map((b) => [`${b.file}:${b.line}`, b] as const))("%s", (_, block) => {
  it.each(block.commands.filter((c) => isServiceCall(c.text)).map((c) => [c.text, c] as const))("%s", async (_, command) => {
    const r = await run(command.text);
    expect(r.code, `exit status of: ${command.text}\n${r.stderr}`).toBe(command.expectedExit);
    // A successful call prints its answer; a failed one says why.
    expect(command.expectedExit === 0 ? r.stdout : r.stderr).not.toBe("");
  });
});

// Listed, with the reason each block gives, so a reader of the test output sees what is not run.
describe("shell blocks not run by the suite", () => {
  for (const b of skipped) it.skip(`${b.file}:${b.line}: ${b.skipReason}`, () => {});
});
