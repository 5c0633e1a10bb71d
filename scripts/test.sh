#!/usr/bin/env bash
# The whole test suite, with its own set-up on a fresh Debian 12 machine (run as root):
# Debian packages the tests use, npm ci (which builds dist/ and the native addon), then vitest.
# Prints a closing line "tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OCELOT_TEST_REPORT=${OCELOT_TEST_REPORT:-$(mktemp -t ocelot-vitest-XXXXXX.json)}
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json="$OCELOT_TEST_REPORT" "$@"
rc=$?
set -e
node scripts/test-summary.mjs "$OCELOT_TEST_REPORT" || rc=1
exit $rc
