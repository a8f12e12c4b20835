// The fake OpenAI-compatible streaming upstream (examples/fake-llm.mjs) as a bench target in its own process.
//   --ttft-ms N   wait before the first token (default 20)
//   --token-ms N  wait between tokens (default 2)
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { reportReady } from "./ipc.js";

const { values } = parseArgs({ options: { "ttft-ms": { type: "string" }, "token-ms": { type: "string" } } });

async function main(): Promise<void> {
  // The example script from the working tree (benchmarks run from the repository's root).
  const { startFakeLlm } = (await import(pathToFileURL(resolve("examples/fake-llm.mjs")).href)) as {
    startFakeLlm(o: object): Promise<{ url: string; close(): Promise<void> }>;
  };
  const fake = await startFakeLlm({ ttftMs: Number(values["ttft-ms"] ?? 20), tokenMs: Number(values["token-ms"] ?? 2) });
  reportReady(Number(new URL(fake.url).port), () => fake.close());
}

void main();
