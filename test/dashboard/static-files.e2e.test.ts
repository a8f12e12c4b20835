import * as http from "node:http";
import * as http2 from "node:http2";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { validateConfig, type Config } from "../../src/config.js";
import { createDashboardHandler } from "../../src/server/dashboard.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";
import { ensureDashboardBuilt } from "./built.js";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** An HTTP/1.1 request with the path sent byte for byte (fetch would resolve "..", hiding traversal attempts). */
function h1(port: number, path: string, method = "GET", headers: http.OutgoingHttpHeaders = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The same over cleartext HTTP/2 (prior knowledge), as a proxy or curl --http2-prior-knowledge would ask. */
function h2(port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const req = session.request({ ":path": path, ":method": "GET" });
    const chunks: Buffer[] = [];
    let headers: http2.IncomingHttpHeaders = {};
    req.on("response", (h) => (headers = h));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      resolve({ status: Number(headers[":status"]), headers: headers as http.IncomingHttpHeaders, body: Buffer.concat(chunks).toString() });
    });
    req.on("error", reject);
    req.end();
  });
}

let app: App;
let script: string;

beforeAll(async () => {
  await ensureDashboardBuilt();
  app = await startTestApp({ backends: [{ name: "echo", kind: "echo", workers: 1 }] });
  const index = await h1(app.server.port, "/");
  script = /src="(assets\/app-[A-Z0-9]+\.js)"/.exec(index.body)?.[1] ?? "";
});
afterAll(async () => {
  await app?.close();
});

describe("the dashboard's static files", () => {
  it("serves the page at / over HTTP/1.1, revalidated on every load", async () => {
    const res = await h1(app.server.port, "/");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["cache-control"]).toBe("no-cache");
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.body).toContain("<title>dispatcher</title>");
    expect(script).toMatch(/^assets\/app-/);
    expect(Number(res.headers["content-length"])).toBe(Buffer.byteLength(res.body));
  });

  it("serves the same page over h2c", async () => {
    const res = await h2(app.server.port, "/");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.body).toContain(script);
  });

  it("serves hashed assets as immutable JavaScript, and answers a matching ETag with 304", async () => {
    const res = await h1(app.server.port, `/${script}`);
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(res.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    expect(res.body.length).toBeGreaterThan(1000);
    const again = await h1(app.server.port, `/${script}`, "GET", { "if-none-match": res.headers.etag! });
    expect(again.status).toBe(304);
    expect(again.body).toBe("");
  });

  it("answers HEAD with the headers and no body", async () => {
    const res = await h1(app.server.port, "/", "HEAD");
    expect(res.status).toBe(200);
    expect(Number(res.headers["content-length"])).toBeGreaterThan(100);
    expect(res.body).toBe("");
  });

  it.each([
    "/assets/nope.js",
    "/assets/../package.json",
    "/assets/%2e%2e/%2e%2e/package.json",
    "/assets/..%2f..%2fpackage.json",
    "/assets//etc/passwd",
    "/assets/..\\..\\package.json",
  ])("answers 404 for %s, a file it does not hold", async (path) => {
    const res = await h1(app.server.port, path);
    expect(res.status).toBe(404);
    expect(res.body).toBe("not found\n");
  });

  it("leaves RPCs and other paths to the RPC handler", async () => {
    const post = await h1(app.server.port, "/", "POST", { "content-type": "application/json" });
    expect(post.headers["content-type"] ?? "").not.toContain("text/html");
    const other = await h1(app.server.port, "/package.json");
    expect(other.status).toBe(404);
    expect(other.body).not.toContain("dispatcher");
    const res = await connectClient(app.server.port).submit({ backend: "echo", payload: { case: "binary", value: new Uint8Array([1]) } });
    expect(res.workerId).toBe("echo/0");
  });
});

describe("dashboard options", () => {
  it("dashboard: false serves no page", async () => {
    const config = validateConfig({ server: { port: 0 }, backends: [{ name: "echo", kind: "echo", workers: 1 }] });
    const off = await startApp({ ...config, dashboard: false } as Config);
    try {
      const res = await h1(off.server.port, "/");
      expect(res.status).toBe(404);
      expect(res.body).not.toContain("<title>");
    } finally {
      await off.close();
    }
  });

  it("with bearer auth, the page loads without a token and its RPCs need one", async () => {
    const config = validateConfig({
      server: { port: 0, auth: { tokens_env: "DASHBOARD_TOKENS" } },
      backends: [{ name: "echo", kind: "echo", workers: 1 }],
    });
    const authed = await startApp(config, { env: { DASHBOARD_TOKENS: "s3cret" } });
    try {
      expect((await h1(authed.server.port, "/")).status).toBe(200);
      const err = await connectClient(authed.server.port).submit({ backend: "echo" }).catch((e: unknown) => ConnectError.from(e));
      expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    } finally {
      await authed.close();
    }
  });

  it("says how to build the page when it was not built", async () => {
    const empty = await mkdtemp(join(tmpdir(), "dashboard-"));
    const handler = await createDashboardHandler(empty);
    const server = http.createServer((req, res) => {
      if (!handler.http(req, res)) {
        res.statusCode = 418;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as AddressInfo).port;
      const res = await h1(port, "/");
      expect(res.status).toBe(404);
      expect(res.body).toContain("npm run build");
      expect((await h1(port, "/other")).status).toBe(418);
    } finally {
      server.close();
      await rm(empty, { recursive: true });
    }
  });
});
