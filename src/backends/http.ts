import { DispatchError, type Chunk, type ChunkStream, type HandlerContext, type HandlerResult } from "../core/index.js";
import { checkStreamed, EventReader, LineReader, streamKind } from "./event-stream.js";
import type { BackendInstance, KindContext } from "./kind.js";
import { checkKeys, COMMON_KEYS, createUpstreams, discard, open, parseCommonOptions, readAll, type CommonOptions, type OpenResponse } from "./upstream.js";

const METHODS = ["POST", "PUT", "PATCH"];

/**
 * kind "http": forwards each job to its worker's endpoint URL. A JSON payload
 * is sent as an application/json body, a binary one as
 * application/octet-stream; a 2xx answer comes back as JSON when the upstream
 * says so, else as binary. A text/event-stream or NDJSON answer streams: each
 * event's data as a text chunk (its name in the chunk's metadata), each NDJSON
 * line as a JSON chunk. Options: path, method, headers,
 * max_response_bytes, deadline_header (docs/backends.md).
 */
export function httpBackend(o: Record<string, unknown>, at: string, kind: KindContext): BackendInstance {
  const oat = `${at}.options`;
  checkKeys(o, ["path", "method", ...COMMON_KEYS], oat, "http");
  const path = o["path"] ?? "";
  if (typeof path !== "string" || (path !== "" && !path.startsWith("/"))) {
    throw new TypeError(`${oat}.path: expected a path starting with "/", got ${JSON.stringify(path)}`);
  }
  const method = o["method"] ?? "POST";
  if (typeof method !== "string" || !METHODS.includes(method.toUpperCase())) {
    throw new TypeError(`${oat}.method: expected one of ${METHODS.join(", ")}, got ${JSON.stringify(method)}`);
  }
  const common = parseCommonOptions(o, oat, kind);
  const upstreams = createUpstreams(kind.endpoints, path, at, "http");
  const verb = method.toUpperCase();
  return {
    handler: async (request, ctx): Promise<HandlerResult | ChunkStream> => {
      const target = upstreams.target(ctx);
      const opened =
        request.binary !== undefined
          ? await open(target, ctx, common, verb, request.binary, "application/octet-stream")
          : await open(target, ctx, common, verb, JSON.stringify(request.json ?? null), "application/json");
      const kind = streamKind(opened.contentType);
      if (kind !== undefined) return passThrough(opened, kind, ctx, common);
      const res = await readAll(opened, ctx, common);
      const metadata = { http_status: String(res.status) };
      if (res.body.length === 0) return { json: null, metadata };
      if (/^application\/(?:[\w.+-]+\+)?json\b/i.test(res.contentType)) {
        try {
          return { json: JSON.parse(res.body.toString("utf8")), metadata };
        } catch {
          // Labelled JSON but not JSON: hand the bytes over rather than failing a call the upstream served.
        }
      }
      return { binary: new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.length), metadata };
    },
    close: () => upstreams.close(),
    ambientTrace: false,
  };
}

/** A streamed upstream answer, passed through as chunks; closed however the stream ends. */
async function* passThrough(res: OpenResponse, kind: "sse" | "ndjson", ctx: HandlerContext, common: CommonOptions): AsyncGenerator<Chunk, Record<string, string>> {
  const metadata = { http_status: String(res.status) };
  try {
    checkStreamed(res, ctx, common, kind);
    if (kind === "sse") {
      const events = new EventReader(res, ctx, common);
      for (let e = await events.next(); e !== undefined; e = await events.next()) {
        yield e.event === undefined ? { text: e.data } : { text: e.data, metadata: { event: e.event } };
      }
      return metadata;
    }
    const lines = new LineReader(res, ctx, common);
    for (let line = await lines.next(); line !== undefined; line = await lines.next()) {
      if (line.trim() === "") continue;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        throw new DispatchError("unavailable", `upstream ${ctx.workerId} sent an NDJSON line that is not JSON`);
      }
      yield { json };
    }
    return metadata;
  } finally {
    discard(res.body);
  }
}
