import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { dirname, extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Serves a request and returns true, or returns false for a request that is not the dashboard's. */
export type DashboardHandler = (req: Req, res: Res) => boolean;

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

  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const path = (req.url ?? "/").split("?")[0]!;
    if (path !== "/" && path !== "/index.html" && !path.startsWith("/assets/")) return false;
    const asset = assets.get(path);
    if (asset === undefined) {
      const text =
        index === undefined
          ? "dashboard not built: run `npm run build` (it bundles web/ into dist/web/)\n"
          : "not found\n";
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-cache", "content-length": Buffer.byteLength(text) });
      end(req, res, text);
      return true;
    }
    const headers = {
      "content-type": asset.type,
      "cache-control": asset.cacheControl,
      etag: asset.etag,
      "x-content-type-options": "nosniff",
      // The page runs only its own script and calls only its own origin.
      "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    };
    if (req.headers["if-none-match"] === asset.etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    res.writeHead(200, { ...headers, "content-length": asset.body.length });
    end(req, res, asset.body);
    return true;
  };
}

function end(req: Req, res: Res, body: string | Buffer): void {
  if (req.method === "HEAD") res.end();
  else res.end(body);
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
