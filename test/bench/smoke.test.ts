import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;
// Inside the repository so that the compiled files resolve node_modules; dist/ is ignored by git.
const outDir = join(root, "dist", `bench-smoke-${process.pid}`);
const results = mkdtempSync(join(tmpdir(), "bench-results-"));

afterAll(() => {
  rmSync(outDir, { recursive: true, force: true });
  rmSync(results, { recursive: true, force: true });
});

// A smoke test only: every suite runs end to end in its tiny mode and writes
// valid JSON. Timings on a shared CI machine mean nothing; none is asserted.
describe("npm run bench (smoke)", () => {
  it("builds, runs every suite and writes their JSON", { timeout: 300_000 }, async () => {
    await run(join(root, "node_modules", ".bin", "tsc"), ["-p", join(root, "tsconfig.bench.json"), "--outDir", outDir], { cwd: root });
    const { stdout } = await run(process.execPath, ["--expose-gc", join(outDir, "bench", "run.js"), "--smoke", "--out", results], {
      cwd: root,
      timeout: 270_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    expect(stdout).toContain("done in");
    for (const suite of ["e2e", "core", "metrics", "scheduling", "edge", "attacks", "fairness", "stream", "replicas", "limits", "jobs"]) {
      const doc = JSON.parse(readFileSync(join(results, `${suite}.json`), "utf8")) as { suite: string; mode: string; machine: { node: string } };
      expect(doc.suite).toBe(suite);
      expect(doc.mode).toBe("smoke");
      expect(doc.machine.node).toBe(process.version);
    }
    const e2e = JSON.parse(readFileSync(join(results, "e2e.json"), "utf8")) as { targets: { key: string; errors?: number; unavailable?: string }[] };
    // Errors are counted, not hidden: the bare servers and the dispatcher answer every call.
    for (const t of e2e.targets) if (t.unavailable === undefined) expect(t.errors, t.key).toBe(0);
  });
});
