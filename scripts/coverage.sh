#!/usr/bin/env bash
# Line and branch coverage of processor/ under the unit tests, the fuzz
# corpus replay and the end-to-end suite (on Apache Kafka), from a gcc
# --coverage build in $1 (default build/cov). Prints one line per file and
# the totals (gcovr), then the lines no test ran sorted by why
# (scripts/coverage_gaps.py); writes $1/coverage.txt, $1/coverage.json
# and $1/coverage-detail.json.
#   COV_E2E=0        unit tests and corpus replay only (a quick look)
#   COV_ONLY="a b"   only these end-to-end tests (run.py --only)
# A cardwatch process ended by SIGKILL cannot write its counters (the
# kill -9 scenarios); every other way out (return from main, exit(), the
# SIGTERM/SIGINT drain) writes them, merged under gcov's file lock.
set -uo pipefail
BUILD="${1:-build/cov}"
cd "$(dirname "$0")/.."

mk() { make --no-print-directory BUILD="$BUILD" OPT=-O0 SAN=--coverage "$@"; }
mk all || exit 1
# Counters of an earlier run would add to this one.
find "$BUILD" -name '*.gcda' -delete

status=0
mk unit || status=1
mk fuzz-replay || status=1
if [ "${COV_E2E:-1}" != 0 ]; then
  only=()
  for t in ${COV_ONLY:-}; do only+=(--only "$t"); done
  python3 tests/e2e/run.py --build "$BUILD" "${only[@]}" || status=1
fi

echo "== coverage of processor/ (gcovr: lines, branches) =="
# (only this build's counters: other build directories may hold some)
gcovr --root . --object-directory "$BUILD/obj" --filter 'processor/' \
  --exclude-unreachable-branches --sort-percentage \
  --txt "$BUILD/coverage-lines.txt" --json-summary "$BUILD/coverage.json" \
  --json-summary-pretty --json "$BUILD/coverage-detail.json" \
  "$BUILD/obj" >/dev/null || status=1
{ python3 scripts/coverage_table.py "$BUILD/coverage.json"
  echo
  echo "== the lines no test ran, by why (scripts/coverage_gaps.py; --list for each) =="
  python3 scripts/coverage_gaps.py "$BUILD/coverage-detail.json"
} | tee "$BUILD/coverage.txt"
[ "$status" -eq 0 ] || echo "coverage: some tests failed (figures above still count what ran)"
exit "$status"
