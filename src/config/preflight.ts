import { readFile } from "node:fs/promises";
import { createBackend } from "../backends/registry.js";
import { parseTokens } from "../server/auth.js";
import type { Config } from "./types.js";

/**
 * Checks that need more than the file itself, run by `--check-config` and
 * before a start, so that what the service would refuse at start is a config
 * error (exit 2) found without listening. Each returns one line per problem.
 */

/**
 * Builds each backend's kind as the service would, so that a kind's own
 * checks of its `options` (and an unknown kind) are found, then releases what
 * was built. A kind reports its first problem.
 */
export async function checkBackendKinds(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const errors: string[] = [];
  for (const [i, b] of config.backends.entries()) {
    const endpoints = typeof b.workers === "number" ? [] : b.workers.map((w) => w.endpoint).filter((e) => e !== undefined);
    try {
      const built = await createBackend(b.kind, b.options, `backends[${i}]`, { endpoints, env });
      await Promise.resolve(built.close?.()).catch(() => undefined);
    } catch (e) {
      // Kinds throw TypeErrors naming the key; anything else is still this backend's problem, so it is reported too.
      errors.push(e instanceof TypeError ? e.message : `backends[${i}]: ${(e as Error).message}`);
    }
  }
  return errors;
}

/**
 * The files and variables the config names for auth and TLS: readable, and
 * holding tokens. Never prints what they hold.
 */
export async function checkSecrets(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const errors: string[] = [];
  const readable = async (key: string, file: string): Promise<string | undefined> => {
    try {
      return await readFile(file, "utf8");
    } catch (e) {
      errors.push(`${key}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      return undefined;
    }
  };
  const tokens = (key: string, text: string) => {
    try {
      parseTokens(text, key);
    } catch (e) {
      errors.push((e as Error).message);
    }
  };
  const { auth, tls } = config.server;
  if (auth?.tokensFile !== undefined) {
    const text = await readable("server.auth.tokens_file", auth.tokensFile);
    if (text !== undefined) tokens("server.auth.tokens_file", text);
  }
  if (auth?.tokensEnv !== undefined) {
    const text = env[auth.tokensEnv];
    if (text === undefined) errors.push(`server.auth.tokens_env: environment variable ${auth.tokensEnv} is not set`);
    else tokens("server.auth.tokens_env", text);
  }
  if (tls !== undefined) {
    await readable("server.tls.cert_file", tls.certFile);
    await readable("server.tls.key_file", tls.keyFile);
  }
  return errors;
}
