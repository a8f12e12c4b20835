// Builds the dashboard (web/) into dist/web/: one bundled, minified script and
// stylesheet with content hashes in their names (cached for good by browsers),
// and index.html pointing at them (revalidated on every load). Run by
// `npm run build`, `npm start` and `npm test`; the server serves the folder.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));

/** Bundles web/ into `outdir` (default dist/web) and returns the files written. */
export async function buildDashboard(outdir = join(here, "..", "dist", "web")) {
  await rm(outdir, { recursive: true, force: true });
  await mkdir(join(outdir, "assets"), { recursive: true });
  const result = await esbuild.build({
    entryPoints: { app: join(here, "src", "main.ts"), style: join(here, "style.css") },
    bundle: true,
    minify: true,
    sourcemap: false,
    format: "esm",
    target: ["es2022"],
    outdir: join(outdir, "assets"),
    entryNames: "[name]-[hash]",
    metafile: true,
    logLevel: "warning",
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
  const js = outputs.find((f) => f.startsWith("app-") && f.endsWith(".js"));
  const css = outputs.find((f) => f.startsWith("style-") && f.endsWith(".css"));
  if (js === undefined || css === undefined) throw new Error(`dashboard build: missing outputs in ${outputs.join(", ")}`);
  const html = (await readFile(join(here, "index.html"), "utf8"))
    .replace("{{app.js}}", `assets/${js}`)
    .replace("{{style.css}}", `assets/${css}`);
  await writeFile(join(outdir, "index.html"), html);
  return ["index.html", `assets/${js}`, `assets/${css}`];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = await buildDashboard(process.argv[2]);
  console.log(`dashboard built: ${files.join(", ")}`);
}
