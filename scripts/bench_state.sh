#!/usr/bin/env bash
# bench_state.sh - window state, two builds side by side on one stack:
# the bench's "mostly exposed" topic (300,000 events, 82,810 on exposed
# cards; `cardwatch gen txns --exposed-share 1.0 --seed 9`) read by
# `cardwatch run --exit-at-end` of build A, then B, ROUNDS times, each
# with its own group and with the live window state and the delivery
# records removed before it (every run starts from nothing and sends its
# alerts), then the baseline: the same topic through Kafka alone, every
# event relayed as an alert-sized record (relay_baseline, bench_lib.sh).
# RULES: the rule file (default rules/default.rules); QUIET=1
# uses the default pack's windows with thresholds no stream reaches (the
# state and window work of every exposed event, no alert).
#
#   A=build/base B=build ROUNDS=2 [QUIET=1] scripts/bench_state.sh
set -euo pipefail
# shellcheck source=bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
REPO=$(cd "$(dirname "$0")/.." && pwd)
A=${A:-build/base}; B=${B:-build}
[[ $A == /* ]] || A="$REPO/$A"
[[ $B == /* ]] || B="$REPO/$B"
DIR=$(mktemp -d /tmp/cardwatch-bench-state.XXXXXX)
XT=cardwatch.bench.exposed
trap 'BUILD=$B "$REPO/scripts/stack.sh" down "$DIR/stack" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
umask 077
echo "bs1 $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$DIR/key"
umask 022
RULES=${RULES:-$REPO/rules/default.rules}
if [[ ${QUIET:-0} == 1 ]]; then
  RULES=$DIR/quiet.rules
  cat >"$RULES" <<'R'
rule quiet-count
  severity: low
  description: The default pack's count windows, never reached
  when: exposed and count(10m) >= 100000 and count(1h) >= 100000
rule quiet-sum
  severity: low
  description: The default pack's other windows, never reached
  when: exposed and sum_amount(24h) >= 900000000000 and count_declined(1h) >= 100000
R
fi
BUILD=$B STACK_KAFKA=apache STACK_TOPICS="$XT:16 cardwatch.alerts.acme_bank:4 cardwatch.alerts.globex_bank:4 cardwatch.alerts.unrouted:4 cardwatch.bench.relay:12" \
  "$REPO/scripts/stack.sh" up "$DIR/stack" >/dev/null
# shellcheck disable=SC1091
. "$DIR/stack/env"
bench_ini "$DIR/cw.ini" "$DIR/stack/kafka.bootstraps" "$XT" "$REDIS_PORT" "$DIR/key"
cat >>"$DIR/cw.ini" <<INI
[rules]
path = $RULES
INI
CW=$B/cardwatch
"$CW" gen cards --config "$DIR/cw.ini" --count 7455 --seed 3 --out "$DIR/exposed.csv"
"$CW" load --config "$DIR/cw.ini" --breach bench --window-start 2021-04-13 \
  --window-end 2024-07-26 --elements pan,expiry,cvv2 "$DIR/exposed.csv" >/dev/null
"$CW" gen txns --config "$DIR/cw.ini" --count "${N:-300000}" --seed 9 \
  --exposed "$DIR/exposed.csv" --exposed-share 1.0 --topic $XT 2>/dev/null
echo "bench_state: $(basename "$RULES"); A = $A, B = $B"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for who in A B; do
    bin=$A; [[ $who == B ]] && bin=$B
    for pat in 'cw:live:*' 'cw:delivered:*'; do
      redis-cli -p "$REDIS_PORT" --scan --pattern "$pat" |
        xargs -r -n 500 redis-cli -p "$REDIS_PORT" DEL >/dev/null
    done
    /usr/bin/time -f "%U %S" -o "$DIR/cpu" "$bin/cardwatch" run --config "$DIR/cw.ini" \
      --group "bs-$who-$round" --exit-at-end --no-progress \
      --summary-json "$DIR/$who$round.json" >/dev/null 2>"$DIR/$who$round.log"
    python3 - "$who" "$round" "$DIR/$who$round.json" "$DIR/cpu" <<'PY'
import json, sys
d = json.load(open(sys.argv[3]))
user, sys_ = map(float, open(sys.argv[4]).read().split()[-2:])
ex = d["alerted"] + d["exposed_no_alert"]
print(f"{sys.argv[1]} round {sys.argv[2]}: {d['rate']:>9,.0f} events/s, {ex:,} on exposed "
      f"cards ({ex / d['processing_seconds']:,.0f}/s), {d['alerts']:,} alerts; "
      f"cardwatch cpu {user + sys_:.2f} s")
PY
  done
done
relay_baseline "$B" "$KAFKA_BOOTSTRAPS" "$XT" cardwatch.alerts.acme_bank cardwatch.bench.relay
