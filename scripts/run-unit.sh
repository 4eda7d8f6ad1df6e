#!/usr/bin/env bash
# Runs unit test programs; each must exit 0. Prints one summary line.
set -u
pass=0; fail=0; failed=()
for t in "$@"; do
  if out=$("$t" 2>&1); then
    pass=$((pass + 1))
    printf 'ok    %s\n' "$t"
  else
    fail=$((fail + 1)); failed+=("$t")
    printf 'FAIL  %s\n%s\n' "$t" "$out"
  fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
