import type { Duration } from "@bufbuild/protobuf/wkt";
import { WorkerState, type WorkerMetric, type WorkerMetricsResponse } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { push, sparkline } from "./sparkline.js";

/** What the page remembers of a worker between snapshots: latency history and the counts of the last one. */
interface History {
  waitP50: number[];
  waitP99: number[];
  runP50: number[];
  runP99: number[];
  completed: bigint;
  errors: bigint;
  rejected: bigint;
  at: number;
  /** Per second since the previous snapshot. */
  rates: { completed: number; errors: number; rejected: number };
}

const stateNames: Record<WorkerState, string> = {
  [WorkerState.UNSPECIFIED]: "unknown",
  [WorkerState.SERVING]: "serving",
  [WorkerState.EJECTED]: "ejected",
  [WorkerState.DRAINING]: "draining",
};

export function ms(d: Duration | undefined): number {
  return d === undefined ? 0 : Number(d.seconds) * 1000 + d.nanos / 1e6;
}

export function formatMs(v: number): string {
  if (v < 1) return `${(v * 1000).toFixed(0)} µs`;
  if (v < 1000) return `${v.toFixed(v < 10 ? 1 : 0)} ms`;
  return `${(v / 1000).toFixed(2)} s`;
}

export function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function bar(value: number, max: number, kind: string): string {
  const pct = max <= 0 ? 0 : Math.min(100, (value / max) * 100);
  return `<span class="bar ${kind}"><i style="width:${pct.toFixed(0)}%"></i></span>${value}/${max}`;
}

const rate = (v: number) => (v === 0 ? "" : ` <span class="muted">${v.toFixed(1)}/s</span>`);

/** Renders snapshots into the summary tiles and one table per backend; keeps each worker's history. */
export function createWorkersView(summary: HTMLElement, backends: HTMLElement, updated: HTMLElement) {
  const history = new Map<string, History>();
  let seq = 0;

  const track = (w: WorkerMetric, now: number): History => {
    let h = history.get(w.workerId);
    if (h === undefined) {
      h = { waitP50: [], waitP99: [], runP50: [], runP99: [], completed: w.completed, errors: w.errors, rejected: w.rejected, at: now, rates: { completed: 0, errors: 0, rejected: 0 } };
      history.set(w.workerId, h);
    }
    const dt = (now - h.at) / 1000;
    if (dt > 0) {
      h.rates = {
        completed: Number(w.completed - h.completed) / dt,
        errors: Number(w.errors - h.errors) / dt,
        rejected: Number(w.rejected - h.rejected) / dt,
      };
    }
    Object.assign(h, { completed: w.completed, errors: w.errors, rejected: w.rejected, at: now });
    push(h.waitP50, ms(w.queueWaitP50));
    push(h.waitP99, ms(w.queueWaitP99));
    push(h.runP50, ms(w.executionP50));
    push(h.runP99, ms(w.executionP99));
    return h;
  };

  const row = (w: WorkerMetric, h: History): string => {
    const state = stateNames[w.state] ?? "unknown";
    return (
      `<tr data-worker="${escape(w.workerId)}" data-state="${state}">` +
      `<td>${escape(w.workerId)}${w.endpoint ? `<br><span class="muted">${escape(w.endpoint)}</span>` : ""}</td>` +
      `<td><span class="state state-${state}">${state}</span></td>` +
      `<td class="num">${w.load.toFixed(2)}</td>` +
      `<td>${bar(w.inflight, w.maxConcurrency, "inflight")}</td>` +
      `<td>${bar(w.queueLen, w.queueCapacity, "queue")}</td>` +
      `<td>${sparkline(h.waitP50, h.waitP99)}${formatMs(ms(w.queueWaitP50))} / ${formatMs(ms(w.queueWaitP99))}</td>` +
      `<td>${sparkline(h.runP50, h.runP99)}${formatMs(ms(w.executionP50))} / ${formatMs(ms(w.executionP99))}</td>` +
      `<td class="num">${w.completed}${rate(h.rates.completed)}</td>` +
      `<td class="num">${w.errors}${rate(h.rates.errors)}</td>` +
      `<td class="num">${w.rejected}${rate(h.rates.rejected)}</td>` +
      `<td class="num">${w.cancelled}</td>` +
      `<td class="num">${w.ejections}</td>` +
      `<td class="num">${w.sessions}</td>` +
      `<td class="num">${w.openStreams}${w.openStreams > 0 || ms(w.ttftP99) > 0 ? ` <span class="muted">ttft p99 ${formatMs(ms(w.ttftP99))}</span>` : ""}</td>` +
      `<td class="num">${w.displaced}</td>` +
      `<td>${queues(w)}</td></tr>`
    );
  };

  const head =
    "<tr><th>Worker</th><th>State</th><th>Load</th><th>In flight</th><th>Queue</th>" +
    "<th>Queue wait p50 / p99</th><th>Run p50 / p99</th><th>Done</th><th>Errors</th><th>Rejected</th>" +
    "<th>Cancelled</th><th>Ejections</th><th>Sessions</th><th>Streams</th><th>Displaced</th><th>Queued by tier / tenant</th></tr>";

  /** Queued jobs per priority tier (non-empty ones) and the tenants holding most of them. */
  const queues = (w: WorkerMetric): string => {
    const tiers = w.tiers.filter((t) => t.queued > 0).map((t) => `p${t.priority}: ${t.queued}`);
    const tenants = w.tenants.filter((t) => t.queued > 0).map((t) => `${escape(t.tenant || "(none)")}: ${t.queued}`);
    if (tiers.length === 0 && tenants.length === 0) return "";
    return `${tiers.join(" · ")}${tenants.length > 0 ? `<br><span class="muted">${tenants.join(" · ")}</span>` : ""}`;
  };

  const tile = (label: string, value: string, id: string) => `<div class="stat" data-stat="${id}"><b>${value}</b><span>${label}</span></div>`;

  return {
    /** Backend names seen in the last snapshot, for the Submit form. */
    backends: [] as string[],
    render(m: WorkerMetricsResponse): void {
      const now = m.time === undefined ? Date.now() : Number(m.time.seconds) * 1000 + m.time.nanos / 1e6;
      const byBackend = new Map<string, string[]>();
      let inflight = 0, queued = 0, sessions = 0n, done = 0, rejected = 0, errors = 0, streams = 0;
      const states = { serving: 0, ejected: 0, draining: 0 };
      const seen = new Set<string>();
      for (const w of m.workers) {
        seen.add(w.workerId);
        const h = track(w, now);
        const rows = byBackend.get(w.backend) ?? [];
        rows.push(row(w, h));
        byBackend.set(w.backend, rows);
        inflight += w.inflight;
        queued += w.queueLen;
        streams += w.openStreams;
        sessions += w.sessions;
        done += h.rates.completed;
        rejected += h.rates.rejected;
        errors += h.rates.errors;
        if (w.state === WorkerState.SERVING) states.serving++;
        else if (w.state === WorkerState.EJECTED) states.ejected++;
        else if (w.state === WorkerState.DRAINING) states.draining++;
      }
      for (const id of history.keys()) if (!seen.has(id)) history.delete(id);
      this.backends = [...byBackend.keys()];
      summary.innerHTML = [
        tile("workers serving", `${states.serving}/${m.workers.length}`, "serving"),
        tile("ejected", String(states.ejected), "ejected"),
        tile("draining", String(states.draining), "draining"),
        tile("in flight", String(inflight), "inflight"),
        tile("queued", String(queued), "queued"),
        tile("done / s", done.toFixed(1), "throughput"),
        tile("errors / s", errors.toFixed(1), "errors"),
        tile("rejected / s", rejected.toFixed(1), "rejected"),
        tile("session pins", String(sessions), "sessions"),
        tile("open streams", String(streams), "streams"),
      ].join("");
      backends.innerHTML = [...byBackend]
        .map(([name, rows]) => `<section class="backend" data-backend="${escape(name)}"><h2>${escape(name)}</h2><table><thead>${head}</thead><tbody>${rows.join("")}</tbody></table></section>`)
        .join("");
      seq++;
      updated.dataset["seq"] = String(seq);
      updated.textContent = `updated ${new Date(now).toLocaleTimeString()} (#${seq})`;
    },
  };
}
