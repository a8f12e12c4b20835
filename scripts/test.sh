#!/usr/bin/env bash
# The test command (`npm test`): API lint, generated code in step, types, then the suite.
# Prints a last line "N passed, N failed" read by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== buf lint"
npx --no-install buf lint

echo "== buf generate leaves gen/ unchanged"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx --no-install buf generate --output "$tmp"
diff -r gen "$tmp/gen"

echo "== tsc"
npx --no-install tsc --noEmit -p .

echo "== vitest ($(node --version))"
status=0
npx --no-install vitest run --reporter=default --reporter=json --outputFile="$tmp/vitest.json" "$@" || status=$?
if [ -f "$tmp/vitest.json" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests + (r.numFailedTestSuites ?? 0) - (r.numFailedTestSuites && r.numFailedTests ? 0 : 0)} failed`);
  ' "$tmp/vitest.json"
else
  echo "0 passed, 1 failed"
fi
exit "$status"
