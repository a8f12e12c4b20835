import { describe, expect, it } from "vitest";
import { ConfigError, validateConfig } from "../../src/config.js";
import { createCors } from "../../src/server/cors.js";

const backends = [{ name: "a", kind: "echo" }];

/** The lines a config is refused with, or [] when it is accepted. */
function errorsOf(raw: unknown): string[] {
  try {
    validateConfig(raw);
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return [...e.errors];
  }
}

describe("server.cors.allowed_origins", () => {
  it("defaults to no origins: no CORS headers, same-origin pages only", () => {
    expect(validateConfig({ backends }).server.corsAllowedOrigins).toEqual([]);
    expect(validateConfig({ backends, server: { cors: {} } }).server.corsAllowedOrigins).toEqual([]);
    expect(createCors({ allowedOrigins: [] })).toBeUndefined();
  });

  it('takes exact origins and "*"', () => {
    const origins = ["https://app.example.com", "http://127.0.0.1:5173", "*"];
    expect(validateConfig({ backends, server: { cors: { allowed_origins: origins } } }).server.corsAllowedOrigins).toEqual(origins);
  });

  it("refuses what a browser never sends as Origin, naming the key and the value", () => {
    expect(errorsOf({ backends, server: { cors: { allowed_origins: ["https://app.example.com/page", "app.example.com", 3] } } })).toEqual([
      'server.cors.allowed_origins[0]: expected "*" or an origin such as "https://app.example.com" (scheme://host[:port], no path) (got "https://app.example.com/page")',
      'server.cors.allowed_origins[1]: expected "*" or an origin such as "https://app.example.com" (scheme://host[:port], no path) (got "app.example.com")',
      'server.cors.allowed_origins[2]: expected "*" or an origin such as "https://app.example.com" (got 3)',
    ]);
    expect(errorsOf({ backends, server: { cors: { allowed_origins: "*" } } })).toEqual(['server.cors.allowed_origins: expected a list of origins (got "*")']);
    expect(errorsOf({ backends, server: { cors: { origins: ["*"] } } })).toEqual(["server.cors.origins: unknown key; known: allowed_origins (got [\"*\"])"]);
  });
});

describe("the CORS rules", () => {
  const cors = createCors({ allowedOrigins: ["https://App.example.com/"] })!;
  const pre = (origin: string | undefined, method = "OPTIONS", requestMethod: string | undefined = "POST") =>
    cors.preflight(method, { origin, "access-control-request-method": requestMethod });

  it("compares origins exactly, ignoring case and a configured trailing slash", () => {
    expect(pre("https://app.example.com")?.status).toBe(204);
    expect(pre("https://app.example.com:8443")?.status).toBe(403);
    expect(pre("http://app.example.com")?.status).toBe(403);
    expect(cors.actual("https://app.example.com")?.["access-control-allow-origin"]).toBe("https://app.example.com");
    expect(cors.actual("https://app.example.com.evil.test")).toBeUndefined();
    expect(cors.actual(undefined)).toBeUndefined();
  });

  it("treats only OPTIONS with Origin and Access-Control-Request-Method as a preflight", () => {
    expect(pre(undefined)).toBeUndefined();
    expect(pre("https://app.example.com", "POST")).toBeUndefined();
    expect(cors.preflight("OPTIONS", { origin: "https://app.example.com" })).toBeUndefined();
  });
});
