import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { fastHook, type WithFastHook } from "./edge/fast-hooks.js";

/**
 * Bearer-token auth: `authorization: Bearer <token>` must match one of the
 * configured tokens, else UNAUTHENTICATED. Health is exempt: Kubernetes'
 * gRPC probes and load balancers send no credentials.
 *
 * Tokens are compared as SHA-256 digests with timingSafeEqual, against every
 * token without an early exit, so the time taken says nothing about how close
 * a guess came, nor which token matched.
 */
export function bearerAuth(tokens: readonly string[]): Interceptor {
  if (tokens.length === 0) throw new TypeError("auth: no tokens configured; an empty token list would refuse every call");
  const digests = tokens.map(digest);
  const exempt = Health.typeName;
  const check = (service: string, header: string): void => {
    if (service === exempt) return;
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (m === null || !matches(digests, digest(m[1]!))) {
      throw new ConnectError(
        header === "" ? "missing bearer token (authorization: Bearer <token>)" : "invalid bearer token",
        Code.Unauthenticated,
        { "www-authenticate": "Bearer" },
      );
    }
  };
  const interceptor: Interceptor & WithFastHook = (next) => async (req) => {
    check(req.service.typeName, req.header.get("authorization") ?? "");
    return next(req);
  };
  // On the fast path: the same check on the raw headers, before the body is decoded.
  interceptor[fastHook] = {
    start(call) {
      check(call.service, call.header("authorization") ?? "");
      return undefined;
    },
  };
  return interceptor;
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

function matches(digests: readonly Buffer[], candidate: Buffer): boolean {
  let ok = false;
  for (const d of digests) ok = timingSafeEqual(d, candidate) || ok;
  return ok;
}

/**
 * Tokens from a file (one per line; blank lines and lines starting with # are
 * skipped) or an environment variable (separated by commas or whitespace).
 */
export function parseTokens(text: string, from: string): string[] {
  const tokens = text
    .split("\n")
    .filter((line) => !line.trim().startsWith("#"))
    .flatMap((line) => line.split(/[,\s]+/))
    .filter((t) => t !== "");
  if (tokens.length === 0) throw new TypeError(`${from}: no tokens found`);
  return tokens;
}
