#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of the pure decoders and of the
# rule parser.
#   scripts/fuzz.sh [BUILD_DIR]      (default build/fuzz)
# The module sources are compiled straight into each fuzzer; BUILD_DIR
# holds the generated protobuf code (built here if missing) and the fuzzer
# binaries and corpora; tests/fuzz/seeds/<target>/ seed each run (valid
# messages made with the encoders). FUZZ_SECONDS (default 20) bounds each run.
set -euo pipefail

cd "$(dirname "$0")/.."
build=${1:-build/fuzz}
secs=${FUZZ_SECONDS:-20}
CC=${FUZZ_CC:-clang}
gen="$build/gen"
out="$build/fuzzers"

mkdir -p "$gen" "$out"
if [ ! -f "$gen/cardwatch.pb-c.c" ] || \
   [ proto/cardwatch.proto -nt "$gen/cardwatch.pb-c.c" ]; then
  protoc-c --proto_path=proto --c_out="$gen" proto/cardwatch.proto
fi

# shellcheck disable=SC2054 # commas belong to -fsanitize=
cflags=(-std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined -fno-omit-frame-pointer
        -Iprocessor -I"$gen")
libs=(-lcrypto -lprotobuf-c -ljansson -lz)

declare -A srcs=(
  [fuzz_txn_protobuf]="processor/txn.c processor/card.c processor/text.c"
  [fuzz_txn_json]="processor/txn.c processor/card.c processor/text.c"
  [fuzz_alert_protobuf]="processor/alert.c processor/txn.c processor/card.c processor/text.c
                         processor/breach.c processor/timeparse.c"
  [fuzz_rules_parse]="processor/rules.c processor/windows.c processor/text.c
                      processor/alert.c processor/txn.c processor/card.c
                      processor/breach.c processor/timeparse.c"
  # a tiny buffer, so records straddle refills
  [fuzz_reader]="-DREADER_BUF_SIZE=64 -DREADER_IN_SIZE=16 processor/reader.c
                 processor/text.c"
  [fuzz_feed_request]="processor/feed_auth.c processor/text.c processor/breach.c
                       processor/timeparse.c processor/card.c"
)

status=0
for name in fuzz_txn_protobuf fuzz_txn_json fuzz_alert_protobuf \
  fuzz_rules_parse fuzz_reader fuzz_feed_request; do
  # shellcheck disable=SC2086
  "$CC" "${cflags[@]}" "tests/fuzz/$name.c" ${srcs[$name]} \
    "$gen/cardwatch.pb-c.c" "${libs[@]}" -o "$out/$name"
  corpus="$out/$name.corpus"
  mkdir -p "$corpus"
  echo "fuzz: $name for ${secs}s"
  # New units go to the first corpus dir; the seeds are only read.
  if ! "$out/$name" -max_total_time="$secs" -print_final_stats=1 \
      -artifact_prefix="$out/$name-" "$corpus" "tests/fuzz/seeds/$name" \
      >"$out/$name.log" 2>&1; then
    echo "fuzz: $name FAILED (see $out/$name.log)"
    tail -n 40 "$out/$name.log"
    status=1
  else
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)' \
      "$out/$name.log" | sed "s/^/fuzz: $name /"
  fi
done
exit "$status"
