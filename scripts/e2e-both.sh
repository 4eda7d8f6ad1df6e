#!/usr/bin/env bash
# make test's end-to-end step: `make e2e` (plain build) and `make e2e-asan`
# (ASan+UBSan build, already built by make unit-asan) at the same time.
# The plain run prints as it goes; the ASan run's output is kept in
# build/asan/e2e.log and printed after it. Exits non-zero if either failed.
#   scripts/e2e-both.sh [MAKE]
set -u
MAKE_CMD="${1:-make}"
cd "$(dirname "$0")/.."
mkdir -p build/asan
log=build/asan/e2e.log
"$MAKE_CMD" --no-print-directory e2e-asan >"$log" 2>&1 &
asan=$!
trap 'kill -TERM "$asan" 2>/dev/null; exit 130' INT TERM
"$MAKE_CMD" --no-print-directory e2e
plain=$?
if kill -0 "$asan" 2>/dev/null; then
  echo "== waiting for the ASan+UBSan run (log: $log) =="
fi
wait "$asan"
asan_rc=$?
cat "$log"
[ "$plain" -eq 0 ] && [ "$asan_rc" -eq 0 ]
