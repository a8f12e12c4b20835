import { createContextKey } from "@connectrpc/connect";

/**
 * The connection under a call (an HTTP/2 session or an HTTP/1.1 socket), so
 * that per-connection caps (WorkerMetrics streams) can count by it.
 */
export const connectionKey = createContextKey<object | undefined>(undefined, { description: "connection" });
