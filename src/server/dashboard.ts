import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { dirname, extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/**
 * Serves a request and returns true, or returns false for a request that is
 * not the dashboard's: `http` for HTTP/1.1 (and the compat HTTP/2 front end),
 * `stream` for raw HTTP/2 streams (the edge front end).
 */
export interface DashboardHandler {
  http(req: Req, res: Res): boolean;
  stream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
}

/** What to answer: status, headers, and a body unless HEAD. */
interface Answer {
  status: number;
  headers: Record<string, string | number>;
  body: string | Buffer | undefined;
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  cacheControl: string;
}

const types: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
};

/** esbuild's content hash in a name (app-HYAXPAB7.js): the bytes behind such a name never change. */
const hashed = /-[A-Z0-9]{8}\.[a-z]+$/;

/** The built page in the package: dist/web beside dist/src, found from this file whether run from src/ or dist/src/. */
export function defaultDashboardRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return join(dir, "dist", "web");
}

/**
 * The dashboard's static files, read into memory once (the folder is a few
 * files of ~120 KB): a request can only ever name one of them, so no path the
 * client sends reaches the file system and traversal has nothing to walk.
 *
 * It answers GET and HEAD of `/`, `/index.html` and anything under
 * `/assets/` (404 for a name it does not hold) and returns false for every
 * other request, which gRPC, gRPC-Web and Connect calls (POST to
 * `/<package>.<Service>/<Method>`) always are. If the page was not built, `/`
 * says how to build it instead of failing the server's start.
 */
export async function createDashboardHandler(root: string = defaultDashboardRoot()): Promise<DashboardHandler> {
  const assets = new Map<string, Asset>();
  for (const file of await listFiles(root)) {
    const rel = relative(root, file).split(sep).join("/");
    const body = await readFile(file);
    assets.set(`/${rel}`, {
      body,
      type: types[extname(file)] ?? "application/octet-stream",
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
      // Hashed assets are immutable; index.html is revalidated so a new build shows on the next load.
      cacheControl: hashed.test(rel) ? "public, max-age=31536000, immutable" : "no-cache",
    });
  }
  const index = assets.get("/index.html");
  if (index !== undefined) assets.set("/", index);

  const answer = (method: string | undefined, url: string | undefined, ifNoneMatch: unknown): Answer | undefined => {
    if (method !== "GET" && method !== "HEAD") return undefined;
    const path = (url ?? "/").split("?")[0]!;
    if (path !== "/" && path !== "/index.html" && !path.startsWith("/assets/")) return undefined;
    const asset = assets.get(path);
    const body = (b: string | Buffer) => (method === "HEAD" ? undefined : b);
    if (asset === undefined) {
      const text =
        index === undefined
          ? "dashboard not built: run `npm run build` (it bundles web/ into dist/web/)\n"
          : "not found\n";
      return { status: 404, headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-cache", "content-length": Buffer.byteLength(text) }, body: body(text) };
    }
    const headers = {
      "content-type": asset.type,
      "cache-control": asset.cacheControl,
      etag: asset.etag,
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    };
    if (ifNoneMatch === asset.etag) return { status: 304, headers, body: undefined };
    return { status: 200, headers: { ...headers, "content-length": asset.body.length }, body: body(asset.body) };
  };

  return {
    http(req, res) {
      const a = answer(req.method, req.url, req.headers["if-none-match"]);
      if (a === undefined) return false;
      res.writeHead(a.status, a.headers);
      if (a.body === undefined) res.end();
      else res.end(a.body);
      return true;
    },
    stream(stream, headers) {
      const a = answer(headers[":method"], headers[":path"], headers["if-none-match"]);
      if (a === undefined) return false;
      stream.on("error", () => undefined);
      stream.respond({ ":status": a.status, ...a.headers }, { endStream: a.body === undefined });
      if (a.body !== undefined) stream.end(a.body);
      return true;
    },
  };
}

/** Every file under `dir`, or none if it does not exist. */
async function listFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}
