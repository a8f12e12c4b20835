import type * as z from "zod";
import { UNKNOWN } from "./fields.js";

/**
 * Every problem found in a config at once, one line each:
 * `backends[0].max_concurrency: expected an integer ≥ 1 (got 0)`. The
 * message is the lines joined, so a caller that only prints `message` still
 * shows them all. A TypeError, as the checks it replaces threw.
 */
export class ConfigError extends TypeError {
  override readonly name = "ConfigError";
  constructor(readonly errors: readonly string[]) {
    super(errors.join("\n"));
  }
}

/** `backends[0].endpoints[1].url`: the key path as the user wrote it. */
export function keyPath(path: readonly PropertyKey[], root = "config"): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else if (typeof p === "string" && /^[A-Za-z_-][\w-]*$/.test(p)) out += out === "" ? p : `.${p}`;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out === "" ? root : out;
}

/** A value as it appears in an error: JSON, cut short. */
export function shown(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** One line per problem, in the order of the file; an unknown-key issue becomes one line per key. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    const input = (issue as { input?: unknown }).input;
    if (issue.code === "unrecognized_keys" && issue.message.startsWith(UNKNOWN)) {
      for (const key of issue.keys) {
        const value = typeof input === "object" && input !== null ? (input as Record<string, unknown>)[key] : undefined;
        lines.push(`${keyPath([...path, key])}: ${issue.message} (got ${shown(value)})`);
      }
    } else if (issue.code === "custom" && (issue.params as { bare?: boolean } | undefined)?.bare) {
      lines.push(`${keyPath(path)}: ${issue.message}`);
    } else if (input === undefined && issue.code === "invalid_type") {
      lines.push(`${keyPath(path)}: required; ${issue.message}`);
    } else {
      lines.push(`${keyPath(path)}: ${issue.message} (got ${shown(input)})`);
    }
  }
  // One line per key and message: a value can fail several checks that share a message.
  return [...new Set(lines)];
}
