#!/usr/bin/env bash
# The test command (npm test): build what the tests load, run every suite, and close
# with one plain summary line. Privileged suites need root; under CI=true a suite that
# cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

npm run --silent build >/dev/null || { npm run build; exit 1; }
npm run --silent typecheck

report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" || true
exit "$status"
