import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { chromium, type Browser } from "playwright-core";

/**
 * Debian's `chromium` on PATH: playwright-core drives it (`npx playwright
 * install` cannot download on these machines). Undefined when absent.
 */
export function findChromium(): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    for (const name of ["chromium", "chromium-browser"]) {
      const p = join(dir, name);
      if (dir !== "" && existsSync(p)) return p;
    }
  }
  return undefined;
}

/** Why a browser test cannot run here, naming the package that fixes it; undefined when it can. */
export const missingChromium =
  findChromium() === undefined ? "no chromium on PATH: install the Debian package `chromium` (apt-get install -y chromium)" : undefined;

/** In CI a missing browser fails the run; on a workstation the test is skipped with the reason. */
export function requireChromium(): void {
  if (missingChromium !== undefined && process.env["CI"]) throw new Error(missingChromium);
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: findChromium(),
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
