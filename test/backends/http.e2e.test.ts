import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { WorkerState } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { startTestApp } from "../helpers/app.js";
import { connectClient } from "../helpers/clients.js";
import { json, startUpstream, type TestUpstream } from "../helpers/upstream.js";

const value = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });
const noEjection = { outlier: { consecutive_failures: 0 } };

let apps: App[] = [];
let ups: TestUpstream[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await Promise.all(ups.map((u) => u.close()));
  apps = [];
  ups = [];
});

async function upstream(respond: Parameters<typeof startUpstream>[0]) {
  const u = await startUpstream(respond);
  ups.push(u);
  return u;
}

async function app(backend: Record<string, unknown>) {
  const a = await startTestApp({ backends: [{ name: "up", kind: "http", ...noEjection, ...backend }] });
  apps.push(a);
  return { app: a, client: connectClient(a.server.port) };
}

/** A logger that keeps what it is given, as pino would write it. */
function memoryLog() {
  const lines: { level: string; msg: string | undefined; obj: Record<string, unknown> }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push({ level, msg, obj: obj as Record<string, unknown> });
  return { lines, log: { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") }, text: () => JSON.stringify(lines, (k, v: unknown) => (v instanceof Error ? `${v.message}` : v)) };
}

/** The service with backend-level keys set on the validated config (exposeUpstreamErrors, idempotent) and a logger. */
async function appWith(backend: Record<string, unknown>, keys: { exposeUpstreamErrors?: boolean; idempotent?: boolean }) {
  const config = validateConfig({ server: { port: 0, shutdown_grace: "2s" }, backends: [{ name: "up", kind: "http", ...noEjection, ...backend }] });
  Object.assign(config.backends[0]!, keys);
  const mem = memoryLog();
  const a = await startApp(config, { log: mem.log });
  apps.push(a);
  return { app: a, client: connectClient(a.server.port), ...mem };
}

const failure = (p: Promise<unknown>) => p.then(() => undefined, (x: unknown) => ConnectError.from(x));

describe("http backend", () => {
  it("forwards a JSON payload to the endpoint's URL and returns the JSON answer", async () => {
    const u = await upstream((req, res) => json(res, 200, { got: JSON.parse(req.body.toString()), path: req.url }));
    const { client } = await app({ endpoints: [`${u.url}/api/v1`], options: { path: "/echo" } });
    const r = await client.submit({ backend: "up", payload: value({ a: [1, 2] }) });
    expect(toJson(ValueSchema, r.payload.value as never)).toEqual({ got: { a: [1, 2] }, path: "/api/v1/echo" });
    expect(r.metadata["http_status"]).toBe("200");
    expect(r.attempts).toBe(1);
    expect(u.requests[0]!.method).toBe("POST");
    expect(u.requests[0]!.headers["content-type"]).toBe("application/json");
  });

  it("sends binary as application/octet-stream and returns a non-JSON answer as binary", async () => {
    const u = await upstream((req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(Buffer.concat([req.body, Buffer.from([0xff])]));
    });
    const { client } = await app({ endpoints: [u.url] });
    const r = await client.submit({ backend: "up", payload: { case: "binary", value: new Uint8Array([1, 2]) } });
    expect(r.payload).toEqual({ case: "binary", value: new Uint8Array([1, 2, 0xff]) });
    expect(u.requests[0]!.headers["content-type"]).toBe("application/octet-stream");
  });

  const table: [number, Code][] = [
    [400, Code.InvalidArgument], [422, Code.InvalidArgument], [401, Code.PermissionDenied], [403, Code.PermissionDenied],
    [404, Code.NotFound], [408, Code.DeadlineExceeded], [504, Code.DeadlineExceeded], [429, Code.ResourceExhausted],
    [500, Code.Unavailable], [502, Code.Unavailable], [503, Code.Unavailable],
  ];
  for (const [status, code] of table) {
    it(`maps upstream HTTP ${status} to ${Code[code]}, telling the client the status line only`, async () => {
      const u = await upstream((req, res) => {
        res.writeHead(status, "Custom Reason sk-secret", { "content-type": "text/plain" });
        res.end(`reason for ${status} ${"x".repeat(2000)}`);
      });
      const { client, text } = await appWith({ endpoints: [u.url] }, {});
      const err = await failure(client.submit({ backend: "up", payload: value(null) }));
      expect(err?.code).toBe(code);
      expect(err!.rawMessage).toMatch(new RegExp(`^upstream up/0 answered HTTP ${status} [A-Z][A-Za-z -]+$`));
      expect(err!.rawMessage).not.toContain("sk-secret");
      // The body went to the log instead, truncated.
      expect(text()).toContain(`reason for ${status} xxx`);
      expect(text().length).toBeLessThan(2000);
    });
  }

  it("quotes the upstream's error body (truncated) with expose_upstream_errors", async () => {
    const u = await upstream((req, res) => {
      res.writeHead(422, { "content-type": "text/plain" });
      res.end(`field "q" is required ${"x".repeat(2000)}`);
    });
    const { client } = await appWith({ endpoints: [u.url] }, { exposeUpstreamErrors: true });
    const err = await failure(client.submit({ backend: "up", payload: value(null) }));
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err!.rawMessage).toContain('HTTP 422 Unprocessable Entity: field "q" is required xxx');
    expect(err!.rawMessage.length).toBeLessThan(700);
  });

  it("names the worker, never the upstream's address, when the connection fails", async () => {
    const closed = await startUpstream(() => undefined);
    await closed.close();
    const port = new URL(closed.url).port;
    const { client, text } = await appWith({ endpoints: [{ url: closed.url, name: "db" }] }, {});
    const err = await failure(client.submit({ backend: "up" }));
    expect(err?.code).toBe(Code.Unavailable);
    expect(err!.rawMessage).toBe("upstream up/db refused the connection");
    expect(err!.rawMessage).not.toContain(port);
    expect(text()).toContain(`127.0.0.1:${port}`); // operators still see where
  });

  it("maps a refused connection and a reset to UNAVAILABLE", async () => {
    const closed = await startUpstream(() => undefined);
    await closed.close();
    const a = await app({ endpoints: [closed.url] });
    await expect(a.client.submit({ backend: "up" })).rejects.toMatchObject({ code: Code.Unavailable });
    const reset = await upstream((req, res) => res.socket!.destroy());
    const b = await app({ endpoints: [reset.url] });
    await expect(b.client.submit({ backend: "up" })).rejects.toMatchObject({ code: Code.Unavailable });
  });

  it("a hanging upstream ends in DEADLINE_EXCEEDED and sees its request aborted", async () => {
    const u = await upstream(() => undefined);
    const { client } = await app({ endpoints: [u.url] });
    await expect(client.submit({ backend: "up" }, { timeoutMs: 300 })).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect(await u.requests[0]!.aborted).toBe(true);
    // The backend's own timeout, with no call deadline.
    const t = await app({ endpoints: [u.url], timeout: "200ms" });
    await expect(t.client.submit({ backend: "up" })).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect(await (await u.request(2)).aborted).toBe(true);
  });

  it("a client cancel aborts the upstream request", async () => {
    const u = await upstream(() => undefined);
    const { client } = await app({ endpoints: [u.url] });
    const ac = new AbortController();
    const call = client.submit({ backend: "up" }, { signal: ac.signal });
    await u.request(1);
    ac.abort();
    await expect(call).rejects.toMatchObject({ code: Code.Canceled });
    expect(await u.requests[0]!.aborted).toBe(true);
  });

  it("announces the remaining deadline when deadline_header is set", async () => {
    const u = await upstream((req, res) => json(res, 200, { ms: req.headers["x-request-timeout-ms"] }));
    const { client } = await app({ endpoints: [u.url], options: { deadline_header: "X-Request-Timeout-Ms" } });
    const r = await client.submit({ backend: "up" }, { timeoutMs: 5_000 });
    const ms = Number((toJson(ValueSchema, r.payload.value as never) as { ms: string }).ms);
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThanOrEqual(5_000);
  });

  it("takes a secret header from the environment, never from the file", async () => {
    const u = await upstream((req, res) => json(res, 200, { auth: req.headers["authorization"], team: req.headers["x-team"] }));
    process.env["TEST_UPSTREAM_TOKEN"] = "s3cr3t";
    try {
      const { client } = await app({
        endpoints: [u.url],
        options: { headers: { Authorization: { env: "TEST_UPSTREAM_TOKEN", prefix: "Bearer " }, "X-Team": "search" } },
      });
      const r = await client.submit({ backend: "up" });
      expect(toJson(ValueSchema, r.payload.value as never)).toEqual({ auth: "Bearer s3cr3t", team: "search" });
    } finally {
      delete process.env["TEST_UPSTREAM_TOKEN"];
    }
  });

  it("names the bad key in configuration errors", async () => {
    const cases: [Record<string, unknown>, string | RegExp][] = [
      [{ endpoints: ["http://127.0.0.1:1"], options: { headers: { Authorization: { env: "TEST_UNSET_TOKEN" } } } },
        "backends[0].options.headers.Authorization.env: environment variable TEST_UNSET_TOKEN is not set"],
      [{ endpoints: ["http://127.0.0.1:1"], options: { headers: { Authorization: "Bearer inline" } } },
        /backends\[0\]\.options\.headers\.Authorization: looks like a credential/],
      [{ endpoints: ["http://127.0.0.1:1"], options: { header: {} } }, /backends\[0\]\.options\.header: unknown option/],
      [{ workers: 2 }, /backends\[0\]\.endpoints: required/],
      [{ endpoints: ["http://user:pw@127.0.0.1:1"] }, /backends\[0\]\.endpoints\[0\]: credentials in the URL/],
      [{ endpoints: ["ftp://127.0.0.1:1"] }, /backends\[0\]\.endpoints\[0\]: expected an http/],
    ];
    for (const [backend, message] of cases) await expect(app(backend)).rejects.toThrow(message);
  });

  it("keeps a session on one endpoint across calls", async () => {
    const names = ["a", "b", "c"];
    const servers = await Promise.all(names.map((n) => upstream((req, res) => json(res, 200, n))));
    const { client } = await app({ endpoints: servers.map((s, i) => ({ url: s.url, name: names[i] })) });
    for (const session of ["s1", "s2", "s3", "s4"]) {
      const seen = new Set<unknown>();
      for (let i = 0; i < 5; i++) {
        const r = await client.submit({ backend: "up", sessionId: session });
        const served = toJson(ValueSchema, r.payload.value as never);
        seen.add(served);
        expect(r.workerId).toBe(`up/${served}`);
      }
      expect(seen.size).toBe(1);
    }
  });

  it("shows an ejected endpoint in WorkerMetrics while the others serve", async () => {
    const bad = await upstream((req, res) => json(res, 503, { error: "down" }));
    const good = await upstream((req, res) => json(res, 200, "ok"));
    const { app: a, client } = await app({
      endpoints: [{ url: bad.url, name: "bad" }, { url: good.url, name: "good" }],
      outlier: { consecutive_failures: 1, base_ejection: "1h", max_ejection: "1h" },
    });
    for (let i = 0; i < 50 && bad.requests.length === 0; i++) await client.submit({ backend: "up" }).catch(() => undefined);
    expect(bad.requests.length).toBe(1);
    for (let i = 0; i < 5; i++) expect((await client.submit({ backend: "up" })).workerId).toBe("up/good");
    expect(bad.requests.length).toBe(1);
    // The message a WorkerMetrics stream opens with.
    const w = a.server.hub.current(undefined).workers.find((x) => x.workerId === "up/bad")!;
    expect(w.state).toBe(WorkerState.EJECTED);
    expect(w.ejections).toBe(1n);
    expect(w.endpoint).toBe(bad.url);
  });
});
