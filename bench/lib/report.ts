import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";

/** Settings shared by every suite; `mode` scales rounds and durations. */
export interface BenchContext {
  mode: "full" | "quick" | "smoke";
  /** Where each suite writes its JSON. */
  outDir: string;
  log(line: string): void;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile of an unsorted sample. */
export function percentile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export function machine(): Record<string, unknown> {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
  };
}

/** Formats a number for a table: thousands separators, `digits` decimals. */
export function fmt(v: number | undefined | null, digits = 0): string {
  if (v === undefined || v === null || Number.isNaN(v)) return "n/a";
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || !(b > 0) || Number.isNaN(a)) return undefined;
  return a / b;
}

/** A plain-text table, also valid Markdown, so BENCHMARKS.md can quote it as printed. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? `${"-".repeat(w + 1)}-` : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [line(headers), sep, ...rows.map(line)].join("\n");
}

export function writeResult(ctx: BenchContext, suite: string, data: Record<string, unknown>): string {
  mkdirSync(ctx.outDir, { recursive: true });
  const file = join(ctx.outDir, `${suite}.json`);
  const doc = { suite, mode: ctx.mode, date: new Date().toISOString(), machine: machine(), ...data };
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  return file;
}

/** Rounds per configuration: medians of at least 3 in quick and full runs. */
export function rounds(ctx: BenchContext, full: number): number {
  return ctx.mode === "full" ? full : ctx.mode === "quick" ? 3 : 1;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
