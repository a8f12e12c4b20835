// `npm run bench [-- --quick] [-- --suite e2e,core,metrics,scheduling,edge,attacks,replicas,limits,jobs]`: runs
// the suites in order, prints each table, writes JSON to bench/results/.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { machine, type BenchContext } from "./lib/report.js";
import { coreSuite } from "./suites/core.js";
import { e2eSuite } from "./suites/e2e.js";
import { fairnessSuite } from "./suites/fairness.js";
import { edgeSuite } from "./suites/edge.js";
import { attacksSuite } from "./suites/attacks.js";
import { metricsSuite } from "./suites/metrics.js";
import { schedulingSuite } from "./suites/scheduling.js";
import { streamSuite } from "./suites/stream.js";
import { replicasSuite } from "./suites/replicas.js";
import { limitsSuite } from "./suites/limits.js";
import { jobsSuite } from "./suites/jobs.js";

const suites: Record<string, (ctx: BenchContext) => Promise<unknown>> = {
  e2e: e2eSuite,
  core: coreSuite,
  metrics: metricsSuite,
  scheduling: schedulingSuite,
  fairness: fairnessSuite,
  stream: streamSuite,
  edge: edgeSuite,
  attacks: attacksSuite,
  replicas: replicasSuite,
  limits: limitsSuite,
  jobs: jobsSuite,
};

const usage = `usage: node --expose-gc dist/bench/run.js [--quick | --smoke] [--suite NAMES] [--out DIR]
  --quick   every suite, fewer and shorter rounds (under a minute)
  --smoke   one tiny round of each suite: checks that it runs and writes JSON (the test suite uses it)
  --suite   comma-separated: ${Object.keys(suites).join(",")} (default: all)
  --out     results directory (default: bench/results)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean" },
      smoke: { type: "boolean" },
      suite: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const names = values.suite ? values.suite.split(",") : Object.keys(suites);
  for (const n of names) {
    if (!suites[n]) {
      process.stderr.write(`unknown suite "${n}"\n${usage}\n`);
      return 2;
    }
  }
  const ctx: BenchContext = {
    mode: values.smoke ? "smoke" : values.quick ? "quick" : "full",
    outDir: values.out ?? fileURLToPath(new URL("../../bench/results/", import.meta.url)),
    log: (line) => process.stdout.write(`${line}\n`),
  };
  const m = machine();
  ctx.log(`bench (${ctx.mode}): ${m["cores"]} cores, ${m["cpu"]}, Node ${m["node"]}${typeof gc === "function" ? "" : " (no --expose-gc: heap figures skipped)"}`);
  const started = performance.now();
  for (const n of names) {
    const t = performance.now();
    await suites[n]!(ctx);
    ctx.log(`${n}: ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }
  ctx.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
