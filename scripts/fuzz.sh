#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/fuzz_*.c) for a budget of
# executions, keeps what they find and reports per target.
#   scripts/fuzz.sh FUZZ_BUILD [COV_BUILD]   (make fuzz: build/fuzz build/fuzz-cov)
# FUZZ_BUILD/fuzzers/ holds the libFuzzer + ASan + UBSan binaries;
# COV_BUILD/fuzzers/ the same targets built with clang's source coverage
# and tests/fuzz/replay_main.c (make fuzz builds both; tests/fuzz/fuzz.mk).
# Environment:
#   FUZZ_RUNS     executions per target (default 10000000)
#   FUZZ_TARGETS  targets to run (default all), e.g. "fuzz_config fuzz_listcsv"
# Each target starts from tests/fuzz/seeds/<target>/ and the kept corpus
# tests/fuzz/corpus/<target>/. Afterwards the kept corpus and the new
# inputs are merged (libFuzzer -merge=1) into a fresh directory that holds
# the seeds first; what the seeds do not already cover becomes the new
# kept corpus (files put there by hand under another name than a SHA-1,
# such as a reproducer, stay). A crash, leak, timeout (10 s) or
# out-of-memory stops that target: the reproducer's path is printed, the
# other targets still run and the script exits 1.
# Per target it prints executions, executions/s, libFuzzer's final cov:
# and ft: (edges and features), the kept corpus, the line coverage of the
# module under test (llvm-cov over seeds + kept corpus) and crashes; the
# same lines go to FUZZ_BUILD/fuzz-work/summary.txt.
set -uo pipefail

cd "$(dirname "$0")/.."
build=${1:?usage: scripts/fuzz.sh FUZZ_BUILD [COV_BUILD]}
cov=${2:-}
runs=${FUZZ_RUNS:-10000000}
targets=${FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')}
work=$build/fuzz-work
summary=$work/summary.txt

# The module each target is about (its line coverage is reported).
declare -A module=(
  [fuzz_alert_protobuf]=alert.c
  [fuzz_config]=config.c
  [fuzz_cpp]=cpp.c
  [fuzz_feed_request]=feed_query.c
  [fuzz_listcsv]=listcsv.c
  [fuzz_reader]=reader.c
  [fuzz_rules_parse]=rules.c
  [fuzz_txn_json]=txn.c
  [fuzz_txn_protobuf]=txn.c
)

# stat NAME LOG: libFuzzer's final stat::NAME.
stat() {
  sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

# kbytes DIR: the size of the files under DIR, in KB (rounded up).
kbytes() {
  find "$1" -type f -printf '%s\n' | awk '{ n += $1 } END { printf "%d", (n + 1023) / 1024 }'
}

# Line coverage of processor/MODULE when the coverage build of the target
# runs every seed and kept input once: "covered/lines (pct%)" or "-".
line_cov() {
  local name=$1 mod=$2 bin=$cov/fuzzers/$1
  if [ -z "$cov" ] || [ ! -x "$bin" ] || [ -z "$mod" ] ||
     ! command -v llvm-cov >/dev/null || ! command -v llvm-profdata >/dev/null; then
    echo "-"
    return
  fi
  rm -f "$work/$name.profraw"
  LLVM_PROFILE_FILE="$work/$name.profraw" "$bin" "tests/fuzz/seeds/$name" \
    "tests/fuzz/corpus/$name" >/dev/null 2>&1 || { echo "-"; return; }
  llvm-profdata merge -sparse "$work/$name.profraw" -o "$work/$name.profdata" &&
  llvm-cov export -summary-only -instr-profile="$work/$name.profdata" "$bin" \
    "processor/$mod" | python3 -c '
import json, sys
t = json.load(sys.stdin)["data"][0]["totals"]["lines"]
print("%d/%d (%.1f%%)" % (t["covered"], t["count"], t["percent"]))' ||
  echo "-"
}

mkdir -p "$work"
: >"$summary"
status=0
for name in $targets; do
  bin=$build/fuzzers/$name
  seeds=tests/fuzz/seeds/$name
  kept=tests/fuzz/corpus/$name
  new=$work/$name.new
  merged=$work/$name.merged
  log=$work/$name.log
  if [ ! -x "$bin" ]; then
    echo "fuzz: $name: no $bin (make fuzz builds it)"
    status=1
    continue
  fi
  rm -rf "$new" "$merged"
  mkdir -p "$new" "$merged" "$kept" "$seeds"
  before=$(find "$kept" -type f | wc -l)
  echo "fuzz: $name: $runs executions (log $log)"
  # New inputs go to the first directory; the others are only read.
  TIMEFORMAT='%0R %U %S'
  { time "$bin" -runs="$runs" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$work/$name-" "$new" "$kept" "$seeds" \
      >"$log" 2>&1; } 2>"$work/$name.time"
  rc=$?
  read -r secs usr sys <"$work/$name.time"
  execs=$(stat number_of_executed_units "$log")
  eps=$(stat average_exec_per_sec "$log")
  # per second of CPU time too: the machine may be shared
  cpu_eps=$(awk -v n="${execs:-0}" -v u="$usr" -v s="$sys" \
    'BEGIN { printf "%d", (u + s > 0) ? n / (u + s) : 0 }')
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  edges=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  if [ "$rc" -ne 0 ]; then
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    status=1
    line="$name: CRASHED after ${execs:-?} executions (${secs} s), rc $rc; reproducer ${repro:-none (see $log)}"
    echo "fuzz: $line"
    echo "fuzz: rerun it with: $bin ${repro:-INPUT}"
    # the report from its first line (ASan, UBSan, a broken invariant)
    grep -v '^#[0-9]' "$log" |
      sed -n '/ERROR\|runtime error\|invariant broken/,$p' | head -n 40
    echo "$line" >>"$summary"
    continue
  fi
  # Keep what the seeds do not cover, minimised, in place of the corpus.
  # Reproducers put in the corpus by hand (any name that is not
  # libFuzzer's SHA-1) stay too.
  cp -rp "$seeds"/. "$merged"/
  find "$kept" -maxdepth 1 -type f ! -regex '.*/[0-9a-f]\{40\}' \
    -exec cp -p {} "$merged"/ \;
  # -use_counters=0: an input stays for the edges it adds, not for how
  # often it runs them (half the files; the line coverage is the same).
  if ! "$bin" -merge=1 -use_counters=0 -timeout=10 "$merged" "$kept" "$new" \
      >"$work/$name.merge.log" 2>&1; then
    echo "fuzz: $name: merge FAILED (see $work/$name.merge.log)"
    tail -n 20 "$work/$name.merge.log"
    status=1
    continue
  fi
  for s in "$seeds"/*; do
    [ -e "$s" ] && rm -f "$merged/$(basename "$s")"
  done
  find "$kept" -type f -delete
  cp -p "$merged"/* "$kept"/ 2>/dev/null
  files=$(find "$kept" -type f | wc -l)
  kb=$(kbytes "$kept")
  mod=${module[$name]:-}
  lines=$(line_cov "$name" "$mod")
  fmt='%-20s %9s execs in %5s s, %6s/s (%s/s of CPU); cov %s ft %s;'
  fmt+=' corpus %s files %s KB (was %s); %s lines %s; crashes 0'
  # shellcheck disable=SC2059
  line=$(printf "$fmt" "$name" "$execs" "$secs" "$eps" "$cpu_eps" "$edges" \
    "$ft" "$files" "$kb" "$before" "${mod:-?}" "$lines")
  echo "fuzz: $line"
  echo "$line" >>"$summary"
done
echo "fuzz: summary ($runs executions per target; $summary):"
sed 's/^/  /' "$summary"
echo "fuzz: kept corpus tests/fuzz/corpus/: $(find tests/fuzz/corpus -type f | wc -l) files, $(kbytes tests/fuzz/corpus) KB"
exit "$status"
