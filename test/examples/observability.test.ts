import { readFile } from "node:fs/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { startTelemetry, type Telemetry } from "../../src/telemetry/index.js";
import { connectClient } from "../helpers/clients.js";

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: { severity?: string };
  annotations?: { summary?: string };
}

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
}

const kit = new URL("../../examples/observability/", import.meta.url);
let telemetry: Telemetry;
let app: App;
let scrape: string;

/** Every PromQL expression of the Grafana dashboard: panel targets and template variable queries. */
async function grafanaExprs(): Promise<string[]> {
  const d = JSON.parse(await readFile(new URL("grafana-dashboard.json", kit), "utf8")) as {
    panels: Panel[];
    templating: { list: { query: unknown }[] };
  };
  const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  for (const v of d.templating.list) {
    const q = v.query as { query?: string } | string;
    if (typeof q === "object" && q.query !== undefined) exprs.push(q.query);
  }
  return exprs;
}

async function alertRules(): Promise<AlertRule[]> {
  const doc = parse(await readFile(new URL("prometheus-alerts.yaml", kit), "utf8")) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

/** Metric and label names the exposition text holds. */
function exposition(text: string): { samples: Set<string>; labels: Set<string> } {
  const samples = new Set<string>();
  const labels = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? /.exec(line);
    if (m === null) continue;
    samples.add(m[1]!);
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_]\w*)="/g)) labels.add(l[1]!);
  }
  return { samples, labels };
}

/** Our identifiers in an expression (the service's metrics and labels all start with dispatcher_ or rpc_). */
const ours = (expr: string) => [...expr.matchAll(/\b((?:dispatcher|rpc)_\w+)/g)].map((m) => m[1]!);

/** Label names an expression matches on or groups by. */
function labelsUsed(expr: string): string[] {
  const out: string[] = [];
  for (const m of expr.matchAll(/\{([^}]*)\}/g)) for (const l of m[1]!.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) out.push(l[1]!);
  for (const m of expr.matchAll(/\b(?:by|on|without|ignoring)\s*\(([^)]*)\)/g)) out.push(...m[1]!.split(",").map((s) => s.trim()).filter(Boolean));
  return out;
}

beforeAll(async () => {
  telemetry = await startTelemetry({ env: {}, prometheusPort: 0 });
  const config = validateConfig({
    server: { port: 0 },
    backends: [{ name: "echo", kind: "echo", workers: 2, retry: { max_attempts: 2, initial_backoff: "1ms", max_backoff: "2ms" } }],
  });
  app = await startApp(config, { observer: telemetry.observer, interceptors: telemetry.interceptors });
  // Traffic that makes every family appear: successes with a session (hit and miss), failures
  // (errors, retries), a deadline that passes while the job runs (cancelled), an unknown backend (rejected).
  const client = connectClient(app.server.port);
  await client.submit({ backend: "echo", sessionId: "s" });
  await client.submit({ backend: "echo", sessionId: "s" });
  await client.submit({ backend: "echo", metadata: { fail: "unavailable" } }).catch(() => undefined);
  const late = await client.submit({ backend: "echo", metadata: { delay_ms: "5000" } }, { timeoutMs: 50 }).catch((e: unknown) => ConnectError.from(e));
  expect((late as ConnectError).code).toBe(Code.DeadlineExceeded);
  await client.submit({ backend: "nope" }).catch(() => undefined);
  const res = await fetch(`http://127.0.0.1:${telemetry.prometheusPort}/metrics`);
  scrape = await res.text();
});
afterAll(async () => {
  await app?.close();
  await telemetry?.shutdown();
});

describe("the observability kit (examples/observability)", () => {
  it("alert rules cover ejections, rejections, queue-wait p99 and error rates, each with severity and summary", async () => {
    const rules = await alertRules();
    expect(rules.map((r) => r.alert).sort()).toEqual([
      "DispatcherJobErrorRateHigh",
      "DispatcherQueueWaitP99High",
      "DispatcherRejectionRateHigh",
      "DispatcherRpcErrorRateHigh",
      "DispatcherWorkerEjected",
    ]);
    for (const r of rules) {
      expect(r.expr, r.alert).toMatch(/\S/);
      expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
      expect(["warning", "critical"], r.alert).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
    }
  });

  it("names only metrics and labels that a real scrape of the service has", async () => {
    const { samples, labels } = exposition(scrape);
    const exprs = [...(await alertRules()).map((r) => r.expr), ...(await grafanaExprs())];
    const metrics = new Set<string>();
    for (const expr of exprs) {
      for (const name of ours(expr)) {
        if (labels.has(name)) continue;
        expect(samples, `"${name}" in ${expr}`).toContain(name);
        metrics.add(name);
      }
      for (const label of labelsUsed(expr)) expect(labels, `label "${label}" in ${expr}`).toContain(label);
    }
    // The kit reads every family the service exports, so this check is not vacuous.
    expect([...metrics].sort()).toEqual([
      "dispatcher_affinity_outcomes_total",
      "dispatcher_job_run_duration_bucket",
      "dispatcher_job_run_duration_count",
      "dispatcher_jobs_cancelled_total",
      "dispatcher_jobs_completed_total",
      "dispatcher_jobs_errors_total",
      "dispatcher_jobs_inflight",
      "dispatcher_jobs_rejected_total",
      "dispatcher_jobs_retries_total",
      "dispatcher_queue_depth",
      "dispatcher_queue_wait_duration_bucket",
      "rpc_server_call_duration_bucket",
      "rpc_server_call_duration_count",
    ]);
  });

  it("the Grafana dashboard is importable: unique panel ids, a Prometheus datasource input, every panel queried", async () => {
    const d = JSON.parse(await readFile(new URL("grafana-dashboard.json", kit), "utf8")) as {
      uid: string;
      __inputs: { pluginId: string }[];
      panels: (Panel & { id: number })[];
    };
    expect(d.uid).toBe("dispatcher-overview");
    expect(d.__inputs.map((i) => i.pluginId)).toEqual(["prometheus"]);
    const ids = d.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of d.panels.filter((p) => p.type !== "row")) expect(p.targets?.length, p.title).toBeGreaterThan(0);
  });
});
