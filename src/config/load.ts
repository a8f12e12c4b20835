import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import * as z from "zod";
import { ConfigError, formatIssues } from "./errors.js";
import { bool, logLevel, nonEmptyString, port, duration } from "./fields.js";
import { name } from "./schema.js";
import type { Config } from "./types.js";
import { validateConfig } from "./validate.js";

/** What `npm start` serves with no config file: an echo backend with 4 workers. */
export const defaultConfigFile = {
  backends: [{ name: "echo", kind: "echo", workers: 4, max_concurrency: 16, queue_capacity: 128 }],
};

/** Command-line flags, which override the environment and the file. */
export interface Overrides {
  host?: string;
  /** A number, or the flag's text. */
  port?: number | string;
}

/** An environment variable (a string) read with a file key's schema; errors show the string as set. */
function fromText<T>(schema: z.ZodType<T, unknown>, convert: (s: string) => unknown = (s) => s) {
  return z.string().transform((s, ctx) => {
    const r = schema.safeParse(convert(s));
    if (r.success) return r.data;
    ctx.addIssue({ code: "custom", message: r.error.issues[0]?.message ?? "invalid", input: s });
    return z.NEVER;
  });
}

const toNumber = (s: string) => (s.trim() === "" ? Number.NaN : Number(s));

/** Environment variables that override the file, each with the rule of the key it overrides. */
const environment = z.object({
  HOST: fromText(nonEmptyString).optional(),
  PORT: fromText(port, toNumber).optional(),
  LOG_LEVEL: fromText(logLevel).optional(),
  PROMETHEUS_PORT: fromText(port, toNumber).optional(),
  SHUTDOWN_GRACE: fromText(duration).optional(),
  REFLECTION: fromText(bool, (s) => ({ true: true, "1": true, false: false, "0": false })[s] ?? s).optional(),
  AUTH_TOKENS_FILE: fromText(nonEmptyString).optional(),
  TLS_CERT_FILE: fromText(nonEmptyString).optional(),
  TLS_KEY_FILE: fromText(nonEmptyString).optional(),
  REDIS_URL: fromText(nonEmptyString.regex(/^rediss?:\/\/\S+$/, { error: "expected a redis:// or rediss:// URL" })).optional(),
  REPLICA_ID: fromText(name).optional(),
});

const flags = z.object({
  "--host": nonEmptyString.optional(),
  "--port": z.union([port, fromText(port, toNumber)], { error: "expected a port number 0-65535" }).optional(),
});

/**
 * Reads the file (YAML, or JSON by its extension; none = the built-in
 * config), applies environment variables, then flags. Throws a ConfigError
 * listing every problem of the file, the environment and the flags at once.
 */
export async function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv, overrides: Overrides): Promise<Config> {
  const raw = file === undefined ? defaultConfigFile : await readConfigFile(file);
  const errors: string[] = [];
  let config: Config | undefined;
  try {
    config = validateConfig(raw);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    errors.push(...e.errors);
  }
  // Unset and empty variables are ignored alike, as shells make both easily.
  const set = Object.fromEntries(Object.keys(environment.shape).filter((k) => env[k]).map((k) => [k, env[k]]));
  const e = environment.safeParse(set, { reportInput: true });
  if (!e.success) errors.push(...formatIssues(e.error.issues));
  // TLS needs both files; one alone is a mistake, not a partial override.
  if ((set["TLS_CERT_FILE"] === undefined) !== (set["TLS_KEY_FILE"] === undefined)) {
    const [missing, given] = set["TLS_CERT_FILE"] === undefined ? ["TLS_CERT_FILE", "TLS_KEY_FILE"] : ["TLS_KEY_FILE", "TLS_CERT_FILE"];
    errors.push(`${missing}: required with ${given}`);
  }
  const f = flags.safeParse({ "--host": overrides.host, "--port": overrides.port }, { reportInput: true });
  if (!f.success) errors.push(...formatIssues(f.error.issues));
  if (errors.length > 0 || config === undefined || !e.success || !f.success) throw new ConfigError(errors);

  const v = e.data;
  const s = config.server;
  if (v.HOST !== undefined) s.host = v.HOST;
  if (v.PORT !== undefined) s.port = v.PORT;
  if (v.LOG_LEVEL !== undefined) config.log.level = v.LOG_LEVEL;
  if (v.PROMETHEUS_PORT !== undefined) config.telemetry.prometheusPort = v.PROMETHEUS_PORT;
  if (v.SHUTDOWN_GRACE !== undefined) s.shutdownGraceMs = v.SHUTDOWN_GRACE;
  if (v.REFLECTION !== undefined) s.reflection = v.REFLECTION;
  if (v.AUTH_TOKENS_FILE !== undefined) s.auth = { tokensFile: v.AUTH_TOKENS_FILE, tokensEnv: s.auth?.tokensEnv };
  if (v.TLS_CERT_FILE !== undefined && v.TLS_KEY_FILE !== undefined) s.tls = { certFile: v.TLS_CERT_FILE, keyFile: v.TLS_KEY_FILE };
  if (v.REDIS_URL !== undefined) config.cluster.redisUrl = v.REDIS_URL;
  if (v.REPLICA_ID !== undefined) config.cluster.replicaId = v.REPLICA_ID;
  if (f.data["--host"] !== undefined) s.host = f.data["--host"];
  if (f.data["--port"] !== undefined) s.port = f.data["--port"];
  return config;
}

async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new ConfigError([`config file ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`]);
  }
  const json = extname(file) === ".json";
  try {
    return json ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError([`config file ${file}: not valid ${json ? "JSON" : "YAML"}: ${(e as Error).message}`]);
  }
}
