import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { WorkerMetricsRequestSchema, WorkerState } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";
import type { Browser } from "playwright-core";
import { launchChromium, missingChromium, requireChromium } from "./browser.js";
import { ensureDashboardBuilt } from "./built.js";

/** Where the screenshot is written (dist/ is not committed); the README's copy is web/dashboard.png. */
const SCREENSHOT = join("dist", "test-artifacts", "dashboard.png");

requireChromium();

/** One browser for the file: each launch costs a second or two of CPU on a shared machine. */
let browserStarted: Promise<Browser> | undefined;
const browser = () => (browserStarted ??= launchChromium());
afterAll(async () => {
  if (browserStarted !== undefined) await (await browserStarted).close();
});

describe.skipIf(missingChromium !== undefined)(`the dashboard in a browser${missingChromium ? ` (skipped: ${missingChromium})` : ""}`, () => {
  let app: App;
  let loading = true;
  let load: Promise<unknown>;
  let ejected: string;

  beforeAll(async () => {
    await ensureDashboardBuilt();
    app = await startTestApp({
      backends: [
        {
          name: "echo",
          kind: "echo",
          workers: 3,
          max_concurrency: 2,
          queue_capacity: 6,
          // Two failures in a row eject a worker for a minute: longer than the test.
          outlier: { consecutive_failures: 2, base_ejection: "60s", max_ejection: "60s" },
        },
        { name: "slow", kind: "echo", workers: 2, max_concurrency: 1, queue_capacity: 4, options: { delay_ms: 30 } },
      ],
    });
    const client = connectClient(app.server.port);
    // Failures pinned to one session land on one worker until it is ejected.
    for (let i = 0; i < 20 && ejected === undefined; i++) {
      await client.submit({ backend: "echo", sessionId: "eject-me", metadata: { fail: "unavailable" } }).catch(() => undefined);
      const snapshot = await firstSnapshot(app.server.port);
      ejected = snapshot.find((w) => w.state === WorkerState.EJECTED)?.workerId as string;
    }
    expect(ejected).toBeDefined();
    // Steady load on both backends while the page watches: queues fill, jobs finish, some are refused.
    load = Promise.all(
      // Six callers: enough to fill in-flight slots and queues, light enough for a shared two-core machine.
      Array.from({ length: 6 }, async (_, i) => {
        while (loading) {
          const backend = i % 3 === 0 ? "slow" : "echo";
          await client
            .submit({ backend, sessionId: i % 2 === 0 ? `s${i}` : "", metadata: { delay_ms: String(40 + ((i * 13) % 60)) } })
            .catch(() => undefined);
        }
      }),
    );
  }, 60_000);

  afterAll(async () => {
    loading = false;
    await load;
    await app?.close();
  });

  it("shows live worker rows, the ejected worker, and a Submit answer", async () => {
    const context = await (await browser()).newContext({ viewport: { width: 1360, height: 900 } });
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${app.server.port}/`);

      // One row per worker, with the state the server reports.
      await page.waitForSelector('tr[data-worker="slow/1"]', { timeout: 20_000 });
      expect(await page.locator("tbody tr").count()).toBe(5);
      await page.waitForSelector(`tr[data-worker="${ejected}"][data-state="ejected"]`, { timeout: 20_000 });
      expect(await page.locator('tr[data-state="serving"]').count()).toBe(4);
      expect(await page.locator(`tr[data-worker="${ejected}"] .state`).textContent()).toBe("ejected");

      // The table updates under load: later snapshots, and the "Done" counts move.
      const done = () => page.locator("tbody tr td:nth-child(8)").allTextContents();
      const seq = async () => Number(await page.locator("#updated").getAttribute("data-seq"));
      const first = { seq: await seq(), done: (await done()).join("|") };
      await expect.poll(seq, { timeout: 20_000, interval: 100 }).toBeGreaterThanOrEqual(first.seq + 2);
      expect((await done()).join("|")).not.toBe(first.done);
      expect(await page.locator("#conn").getAttribute("data-state")).toBe("live");

      // The Submit form sends a job and shows the answer.
      await page.fill("#submit-backend", "echo");
      await page.fill("#submit-session", "from-the-page");
      await page.fill("#submit-payload", '{"from": "playwright", "n": [1, 2]}');
      await page.fill("#submit-metadata", "delay_ms=5");
      await page.click("#submit-send");
      await page.waitForSelector('#submit-result[data-status="ok"]', { timeout: 20_000 });
      const answer = JSON.parse((await page.locator("#submit-result").textContent()) ?? "{}") as Record<string, unknown>;
      expect(answer["payload"]).toEqual({ from: "playwright", n: [1, 2] });
      expect(answer["workerId"]).toMatch(/^echo\/[0-2]$/);
      expect(answer["workerId"]).not.toBe(ejected);
      expect(answer["affinity"]).toBe("miss");

      // The artifact shows the page under load with an answer in the form.
      await mkdir(join("dist", "test-artifacts"), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });

      // A refused job shows its gRPC code.
      await page.fill("#submit-backend", "nope");
      await page.click("#submit-send");
      await page.waitForSelector('#submit-result[data-status="error"]', { timeout: 20_000 });
      expect(await page.locator("#submit-result").textContent()).toMatch(/^NOT_FOUND: /);

      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  }, 90_000);
});

describe.skipIf(missingChromium !== undefined)("the dashboard with bearer auth", () => {
  let app: App;
  beforeAll(async () => {
    await ensureDashboardBuilt();
    const config = validateConfig({ server: { port: 0, auth: { tokens_env: "TOKENS" } }, backends: [{ name: "echo", kind: "echo", workers: 1 }] });
    app = await startApp(config, { env: { TOKENS: "page-token" } });
  });
  afterAll(async () => {
    await app?.close();
  });

  it("loads without a token, asks for one, and goes live with the token the user types", async () => {
    const context = await (await browser()).newContext();
    try {
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${app.server.port}/`);
      await page.waitForSelector('#conn[data-state="unauthenticated"]', { timeout: 20_000 });
      expect(await page.locator("#conn").textContent()).toContain("UNAUTHENTICATED");
      await page.fill("#token", "wrong");
      await page.click("#token-form button");
      await page.waitForSelector('#conn[data-state="unauthenticated"]', { timeout: 20_000 });
      expect(await page.locator("tbody tr").count()).toBe(0);
      await page.fill("#token", "page-token");
      await page.click("#token-form button");
      await page.waitForSelector('tr[data-worker="echo/0"][data-state="serving"]', { timeout: 20_000 });
      expect(await page.locator("#conn").getAttribute("data-state")).toBe("live");
      // The Submit form carries the token too.
      await page.fill("#submit-backend", "echo");
      await page.click("#submit-send");
      await page.waitForSelector('#submit-result[data-status="ok"]', { timeout: 20_000 });
    } finally {
      await context.close();
    }
  }, 60_000);
});

async function firstSnapshot(port: number) {
  const ctl = new AbortController();
  try {
    for await (const m of connectClient(port).workerMetrics(create(WorkerMetricsRequestSchema, {}), { signal: ctl.signal })) return m.workers;
  } finally {
    ctl.abort();
  }
  return [];
}
