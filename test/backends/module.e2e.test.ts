import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type App } from "../../src/app.js";
import { validateConfig } from "../../src/config.js";
import { connectClient } from "../helpers/clients.js";

let app: App;
const logged: { obj: unknown; msg?: string }[] = [];

beforeAll(async () => {
  const keep = (obj: object, msg?: string) => void logged.push({ obj, msg });
  const config = validateConfig({
    server: { port: 0, shutdown_grace: "2s" },
    backends: [{ name: "m", kind: "module", options: { path: "test/backends/fixtures/cases.mjs" } }],
  });
  app = await startApp(config, { log: { error: keep, warn: keep, info: keep, debug: keep } });
});
afterAll(async () => {
  await app.close();
});

const call = (kase: string) =>
  connectClient(app.server.port)
    .submit({ backend: "m", metadata: { case: kase }, payload: { case: "json", value: fromJson(ValueSchema, { q: 1 }) } })
    .then((r) => ({ json: toJson(ValueSchema, r.payload.value as never), metadata: r.metadata }), (e: unknown) => ConnectError.from(e));

describe("module backend, through the service", () => {
  it("sends what JSON.stringify would: undefined left out, a Date as its ISO string", async () => {
    expect(await call("loose")).toEqual({ json: { a: 1, at: "1970-01-01T00:00:00.000Z", items: [1, null] }, metadata: { n: "3" } });
  });

  it("maps errors: a BigInt → INVALID_ARGUMENT naming its path, a status code → that status, a bug → INTERNAL without its message", async () => {
    const big = (await call("bigint")) as ConnectError;
    expect([big.code, big.rawMessage]).toEqual([Code.InvalidArgument, expect.stringMatching(/^result\.json\.items\[2\]\.n: a BigInt/)]);
    const coded = (await call("coded")) as ConnectError;
    expect([coded.code, coded.rawMessage]).toEqual([Code.Unavailable, "replica warming up"]);
    const crash = (await call("crash")) as ConnectError;
    expect([crash.code, crash.rawMessage]).toEqual([Code.Internal, "handler failed on m/0"]);
    expect(JSON.stringify(logged, (k, v: unknown) => (v instanceof Error ? v.message : v))).toContain("cannot open /srv/handlers/secrets.json for m/0");
    const timeout = (await call("timeout")) as ConnectError;
    expect(timeout.code).toBe(Code.DeadlineExceeded);
  });
});
