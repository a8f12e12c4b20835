import { Code, ConnectError } from "@connectrpc/connect";
import type { JobResult } from "../core/index.js";
import { toConnectError } from "./errors.js";

/** One line per Submit / SubmitStream / WorkerMetrics call (`log.access: true`). */
export interface AccessEntry {
  method: string;
  backend?: string;
  worker?: string;
  /** gRPC status name, lower case: "ok", "deadline_exceeded", … */
  code: string;
  queue_wait_ms?: number;
  run_ms?: number;
  attempts?: number;
  duration_ms: number;
}

export type AccessLog = (entry: AccessEntry) => void;

const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** snake_case names of gRPC codes, as logs and metrics spell them. */
function codeName(code: Code): string {
  return Code[code]!.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** The entry of a call that ended with `r` or with `error`. */
export function accessEntry(method: string, backend: string | undefined, started: number, r: JobResult | undefined, error: unknown): AccessEntry {
  const e: AccessEntry = { method, code: "ok", duration_ms: round(performance.now() - started) };
  if (backend !== undefined) e.backend = backend;
  if (r !== undefined) {
    e.worker = r.workerId;
    e.queue_wait_ms = round(r.queueWaitMs);
    e.run_ms = round(r.executionMs);
    e.attempts = r.attempts;
  }
  if (error !== undefined) e.code = codeName((error instanceof ConnectError ? error : toConnectError(error)).code);
  return e;
}
