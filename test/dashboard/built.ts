import { existsSync } from "node:fs";
import { join } from "node:path";
import { defaultDashboardRoot } from "../../src/server/dashboard.js";

/**
 * Builds the page into dist/web unless it is there: `npm test` builds it
 * first (pretest), this covers running one test file on its own.
 */
export async function ensureDashboardBuilt(): Promise<string> {
  const root = defaultDashboardRoot();
  if (!existsSync(join(root, "index.html"))) {
    const { buildDashboard } = await import("../../web/build.mjs");
    await buildDashboard(root);
  }
  return root;
}
