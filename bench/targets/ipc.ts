/**
 * The child side of bench/lib/child.ts: report readiness (or why the target
 * cannot run), answer CPU queries, stop on SIGTERM.
 */
export function reportReady(port: number, stop: () => Promise<unknown>, info: Record<string, unknown> = {}): void {
  process.on("message", (m: { type?: string }) => {
    if (m.type === "cpu") {
      const u = process.cpuUsage();
      process.send!({ type: "cpu", ms: (u.user + u.system) / 1000 });
    }
  });
  process.once("SIGTERM", () => {
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  process.send!({ type: "ready", port, info });
}

export function reportFailed(reason: string): void {
  process.send!({ type: "failed", reason }, () => process.exit(0));
}
