import { cors as connectCors } from "@connectrpc/connect";

export interface CorsOptions {
  /** Exact origins ("https://app.example.com") or "*" for any. Empty: no CORS at all (same-origin pages only). */
  allowedOrigins: readonly string[];
}

/** What to answer a preflight with, before connect sees the request. */
export interface PreflightAnswer {
  status: number;
  headers: Record<string, string>;
}

export interface Cors {
  /**
   * For a preflight (OPTIONS with Origin and Access-Control-Request-Method):
   * the answer; undefined for any other request, which goes on as usual.
   */
  preflight(method: string | undefined, headers: Record<string, string | string[] | undefined>): PreflightAnswer | undefined;
  /** For an actual request: the headers to add to its answer, or undefined (no Origin, or not allowed). */
  actual(origin: string | string[] | undefined): Record<string, string> | undefined;
}

/** Cached by browsers for this long: preflights of a page's every call would double its round trips. */
const MAX_AGE_S = 7200;

/** Headers the Connect and gRPC-Web clients send, connect's list plus this service's own (auth, session). */
const allowHeaders = unique([
  ...connectCors.allowedHeaders,
  "Authorization",
  "Dispatcher-Session",
]).join(", ");

/** Headers the browser must let page scripts read: a gRPC-Web status lives in headers when the answer is trailers-only. */
const exposeHeaders = unique([...connectCors.exposedHeaders, "Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"]).join(", ");

const allowMethods = connectCors.allowedMethods.join(", ");

/**
 * CORS for browser pages on other origins. The request's own origin is
 * echoed (with Vary: Origin) even when "*" is configured, and no
 * Access-Control-Allow-Credentials is sent: calls authenticate with an
 * explicit Authorization header, never with cookies, so a wildcard never
 * meets credentials. A disallowed origin's preflight gets 403 without CORS
 * headers: the browser refuses the call either way, and the status tells a
 * developer looking at the network tab why.
 */
export function createCors(o: CorsOptions): Cors | undefined {
  if (o.allowedOrigins.length === 0) return undefined;
  const any = o.allowedOrigins.includes("*");
  const exact = new Set(o.allowedOrigins.filter((x) => x !== "*").map(normalize));
  const allowed = (origin: string) => any || exact.has(normalize(origin));

  return {
    preflight(method, headers): PreflightAnswer | undefined {
      if (method !== "OPTIONS") return undefined;
      const origin = one(headers["origin"]);
      if (origin === undefined || one(headers["access-control-request-method"]) === undefined) return undefined;
      if (!allowed(origin)) return { status: 403, headers: { vary: "Origin" } };
      return {
        status: 204,
        headers: {
          "access-control-allow-origin": origin,
          "access-control-allow-methods": allowMethods,
          "access-control-allow-headers": allowHeaders,
          "access-control-max-age": String(MAX_AGE_S),
          vary: "Origin",
        },
      };
    },
    actual(value) {
      const origin = one(value);
      if (origin === undefined || !allowed(origin)) return undefined;
      return { "access-control-allow-origin": origin, "access-control-expose-headers": exposeHeaders, vary: "Origin" };
    },
  };
}

/** Origins compare as scheme://host[:port], case-insensitively, without a trailing slash someone may have configured. */
function normalize(origin: string): string {
  return origin.trim().replace(/\/+$/, "").toLowerCase();
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function unique(names: string[]): string[] {
  const seen = new Set<string>();
  return names.filter((n) => {
    const k = n.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
