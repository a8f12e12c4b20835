import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import { build } from "esbuild";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SubmitResponseSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { launchChromium, missingChromium, requireChromium } from "./browser.js";

requireChromium();

const TOKEN = "page-token";

/**
 * The page's script: connect-web's gRPC-Web transport (what a browser app
 * would bundle) and a plain fetch() in gRPC-Web text mode, as Google's
 * grpc-web client sends it. Each returns what the page could read.
 */
const pageScript = `
import { createClient, ConnectError } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { DispatcherService } from "./gen/dispatcher/v1/dispatcher_pb.js";

window.submitGrpcWeb = async (baseUrl, backend, token) => {
  const client = createClient(DispatcherService, createGrpcWebTransport({ baseUrl }));
  try {
    const r = await client.submit({ backend, sessionId: "page" }, { headers: { authorization: "Bearer " + token, "dispatcher-session": "page" } });
    return { ok: true, workerId: r.workerId };
  } catch (e) {
    const c = ConnectError.from(e);
    return { ok: false, code: c.code, message: c.rawMessage };
  }
};

/** base64 of a gRPC-Web frame holding SubmitRequest{backend}, built by hand: field 1, length-delimited. */
window.submitText = async (baseUrl, backend, token) => {
  const name = new TextEncoder().encode(backend);
  const msg = new Uint8Array([0x0a, name.length, ...name]);
  const frame = new Uint8Array([0, 0, 0, 0, msg.length, ...msg]);
  const res = await fetch(baseUrl + "/dispatcher.v1.DispatcherService/Submit", {
    method: "POST",
    headers: { "content-type": "application/grpc-web-text", "x-grpc-web": "1", accept: "application/grpc-web-text", authorization: "Bearer " + token },
    body: btoa(String.fromCharCode(...frame)),
  });
  return { status: res.status, contentType: res.headers.get("content-type"), body: await res.text() };
};
`;

/** Serves the page from its own origin: a tiny node:http server on 127.0.0.1, another port than the service's. */
async function startPageServer(): Promise<{ server: http.Server; origin: string }> {
  const bundle = await build({
    stdin: { contents: pageScript, resolveDir: process.cwd(), loader: "js" },
    bundle: true,
    format: "esm",
    platform: "browser",
    write: false,
    logLevel: "silent",
  });
  const js = bundle.outputFiles[0]!.text;
  const server = http.createServer((req, res) => {
    if (req.url === "/app.js") res.writeHead(200, { "content-type": "text/javascript" }).end(js);
    else res.writeHead(200, { "content-type": "text/html" }).end('<!doctype html><title>another origin</title><script type="module" src="/app.js"></script>');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Decodes a grpc-web-text body 4 characters at a time (each write is padded) into its message and trailers. */
function decodeText(body: string): { message: Buffer | undefined; trailers: string } {
  const parts: Buffer[] = [];
  for (let i = 0; i + 4 <= body.length; i += 4) parts.push(Buffer.from(body.slice(i, i + 4), "base64"));
  const bytes = Buffer.concat(parts);
  let message: Buffer | undefined;
  let trailers = "";
  for (let i = 0; i + 5 <= bytes.length; ) {
    const len = bytes.readUInt32BE(i + 1);
    const payload = bytes.subarray(i + 5, i + 5 + len);
    if ((bytes[i]! & 0x80) !== 0) trailers += payload.toString("latin1");
    else message = payload;
    i += 5 + len;
  }
  return { message, trailers };
}

describe.skipIf(missingChromium !== undefined)(`a page on another origin${missingChromium ? ` (skipped: ${missingChromium})` : ""}`, () => {
  let app: App;
  let pages: http.Server;
  let origin: string;
  let browser: Browser;
  let page: Page;
  let base: string;

  beforeAll(async () => {
    ({ server: pages, origin } = await startPageServer());
    const config = validateConfig({
      backends: [{ name: "echo", kind: "echo", workers: 1 }],
      server: { port: 0, shutdown_grace: "2s", auth: { tokens_env: "PAGE_TOKENS" }, cors: { allowed_origins: [origin] } },
    });
    app = await startApp(config, { env: { PAGE_TOKENS: TOKEN } });
    base = `http://127.0.0.1:${app.server.port}`;
    browser = await launchChromium();
    page = await browser.newPage();
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => "submitText" in globalThis, undefined, { timeout: 20_000 });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await app?.close();
    pages?.close();
  });

  type Result = { ok: boolean; workerId?: string; code?: number; message?: string };
  const grpcWeb = (backend: string, token = TOKEN) =>
    page.evaluate(([b, be, t]) => (globalThis as unknown as { submitGrpcWeb: (...a: string[]) => Promise<Result> }).submitGrpcWeb(b!, be!, t!), [base, backend, token]);

  it("calls Submit through CORS with connect-web's gRPC-Web transport, its Authorization header allowed", async () => {
    expect(await grpcWeb("echo")).toEqual({ ok: true, workerId: "echo/0" });
  }, 30_000);

  it("reads the call's error: the gRPC status headers are exposed to the page", async () => {
    const r = await grpcWeb("nope");
    expect(r.ok).toBe(false);
    expect(r.code).toBe(5); // NOT_FOUND
    expect(r.message).toContain("nope");
    const denied = await grpcWeb("echo", "wrong-token");
    expect(denied.code).toBe(16); // UNAUTHENTICATED
  }, 30_000);

  it("calls Submit in gRPC-Web text mode with fetch()", async () => {
    const r = await page.evaluate(
      ([b, t]) => (globalThis as unknown as { submitText: (...a: string[]) => Promise<{ status: number; contentType: string; body: string }> }).submitText(b!, "echo", t!),
      [base, TOKEN],
    );
    expect(r.status).toBe(200);
    expect(r.contentType).toBe("application/grpc-web-text+proto");
    const { message, trailers } = decodeText(r.body);
    expect(trailers).toMatch(/^grpc-status: ?0\r\n/m);
    expect(fromBinary(SubmitResponseSchema, message!).workerId).toBe("echo/0");
  }, 30_000);

  it("is refused by the browser from an origin that is not allowed", async () => {
    const other = await browser.newPage();
    try {
      // Same page server, another origin: "localhost" is not "127.0.0.1" to a browser.
      await other.goto(`${origin.replace("127.0.0.1", "localhost")}/`);
      await other.waitForFunction(() => "submitGrpcWeb" in globalThis, undefined, { timeout: 20_000 });
      const r = await other.evaluate(
        ([b, t]) => (globalThis as unknown as { submitGrpcWeb: (...a: string[]) => Promise<Result> }).submitGrpcWeb(b!, "echo", t!),
        [base, TOKEN],
      );
      expect(r.ok).toBe(false);
      // The preflight got 403: the browser fails the fetch, and connect-web reports that as UNKNOWN.
      expect(r.code).toBe(2);
      expect(r.message).toMatch(/fetch/i);
    } finally {
      await other.close();
    }
  }, 30_000);
});
