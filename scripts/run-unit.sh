#!/usr/bin/env bash
# Runs unit test programs; each must exit 0. Prints one line per program
# ("ok", "ok (N skipped: names)" when cmocka skipped a test, or "FAIL" and
# its output) and one summary line that counts skipped tests too, so that
# a test that could not run on this machine never passes for one that did.
set -u
pass=0; fail=0; skipped=0; failed=()
for t in "$@"; do
  if out=$("$t" 2>&1); then
    pass=$((pass + 1))
    # cmocka: "[  SKIPPED ] <name>" once when it runs, once in the summary.
    names=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([A-Za-z_][A-Za-z0-9_]*\)$/\1/p' | sort -u)
    if [ -n "$names" ]; then
      n=$(printf '%s\n' "$names" | wc -l)
      skipped=$((skipped + n))
      printf 'ok    %s (%d skipped: %s)\n' "$t" "$n" "$(echo $names)"
    else
      printf 'ok    %s\n' "$t"
    fi
  else
    fail=$((fail + 1)); failed+=("$t")
    printf 'FAIL  %s\n%s\n' "$t" "$out"
  fi
done
echo "unit: $pass passed, $fail failed, $skipped tests skipped"
[ "$fail" -eq 0 ]
