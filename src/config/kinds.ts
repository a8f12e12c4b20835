import { createBackend } from "../backends/registry.js";
import type { Config } from "./types.js";

/**
 * Builds each backend's kind as the service would, so that a kind's own
 * checks of its `options` (and an unknown kind) are found without starting
 * the service, then releases what was built. Returns one line per backend
 * that failed; a kind reports its first problem.
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
