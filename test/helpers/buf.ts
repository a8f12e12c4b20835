import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The buf CLI of devDependencies (what `npx --no-install buf` runs), without npm's own warnings on stderr. */
const buf = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));

/** Runs `buf curl` (the CLI from devDependencies) and returns its exit code and output; never throws. */
export function bufCurl(args: string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(buf, ["curl", ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}
