#!/usr/bin/env bash
# Corpus replay, a regression test of `make test` (make fuzz-replay): runs
# each fuzz target built with tests/fuzz/replay_main.c once on every file
# of tests/fuzz/corpus/<target>/ and tests/fuzz/seeds/<target>/.
#   tests/fuzz/replay.sh LABEL BUILD/fuzzers/fuzz_NAME...
# Prints one line per target (files replayed, ok or FAIL with the input
# that failed and the end of its output) and a summary; exits 1 when a
# target failed or had no input.
set -u
cd "$(dirname "$0")/../.."
label=$1
shift
pass=0; fail=0; files=0
for bin in "$@"; do
  name=$(basename "$bin")
  dirs=()
  for d in "tests/fuzz/corpus/$name" "tests/fuzz/seeds/$name"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  if [ ${#dirs[@]} -eq 0 ]; then
    fail=$((fail + 1))
    printf 'FAIL  %-22s no tests/fuzz/seeds/%s or corpus\n' "$name" "$name"
    continue
  fi
  log=$(mktemp)
  if out=$("$bin" "${dirs[@]}" 2>"$log"); then
    n=${out%% *}
    files=$((files + n))
    pass=$((pass + 1))
    printf 'ok    %-22s %s files\n' "$name" "$n"
  else
    fail=$((fail + 1))
    last=$(grep '^replay: ' "$log" | tail -n 1)
    printf 'FAIL  %-22s on %s\n' "$name" "${last#replay: }"
    # the report from its first line (ASan, UBSan, a broken invariant)
    report=$(grep -v '^replay: ' "$log" |
             sed -n '/ERROR\|runtime error\|invariant broken/,$p' | head -n 30)
    if [ -n "$report" ]; then echo "$report"; else tail -n 30 "$log"; fi
  fi
  rm -f "$log"
done
echo "fuzz-replay ($label): $pass targets ok ($files files), $fail failed"
[ "$fail" -eq 0 ]
