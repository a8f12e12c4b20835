#!/usr/bin/env bash
# The test command (`npm test`): API lint, generated code in step, types, then the suite.
# Prints a last line "N passed, N failed" read by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== buf lint"
npx --no-install buf lint

echo "== npm run generate leaves gen/ unchanged"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash scripts/generate.sh "$tmp"
diff -r gen "$tmp/gen"

echo "== tsc"
npx --no-install tsc --noEmit -p .

echo "== vitest ($(node --version))"
status=0
npx --no-install vitest run --reporter=default --reporter=json --outputFile="$tmp/vitest.json" "$@" || status=$?
passed=0
failed=0
if [ -f "$tmp/vitest.json" ]; then
  # Failed tests by name (with their first message line), so a log's tail says what failed.
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const file of r.testResults)
      for (const t of file.assertionResults)
        if (t.status === "failed")
          console.log(`FAILED ${file.name.replace(process.cwd() + "/", "")} > ${t.fullName}: ${String(t.failureMessages[0] ?? "").split("\n")[0].slice(0, 300)}`);
    for (const file of r.testResults)
      if (file.status === "failed" && file.assertionResults.length === 0)
        console.log(`FAILED ${file.name.replace(process.cwd() + "/", "")}: ${String(file.message ?? "").split("\n")[0].slice(0, 300)}`);
  ' "$tmp/vitest.json"
  read -r passed failed < <(node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(r.numPassedTests, r.numFailedTests);
  ' "$tmp/vitest.json")
fi
# A file that fails to load fails no test by name; it still fails the run.
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$status"
