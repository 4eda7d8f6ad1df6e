#!/usr/bin/env bash
# `make bench`: cardwatch run against a plain librdkafka consumer on the
# same pre-filled topic, side by side, in one run - on Apache Kafka (the
# broker production runs) and then on the embedded mock, for comparison.
#
#   - Kafka + redis-server on free loopback ports (scripts/stack.sh)
#   - 7,455 exposed cards loaded; BENCH_EVENTS transactions (default
#     2,000,000, ~1% on exposed cards) on a 64-partition topic
#   - BENCH_ROUNDS rounds (default 3), each: build/plain_consumer (batch API,
#     direct assignment) reads the topic to its end, then `cardwatch run
#     --exit-at-end` (new consumer group) processes it to its end, then
#     tools/peer.py - a straightforward Python peer (confluent-kafka,
#     HMAC-SHA256, pipelined redis-py MGET per batch, JSON alerts) - does
#     the same work on the same topic (BENCH_PEER=0 leaves it out)
#   - prints each round and the medians; cardwatch's and the peer's rates
#     are processing rates (first event taken to end of input: the group
#     join is left out, as the plain consumer has none); the peer's alerts
#     must equal cardwatch's
#   - then, on Apache Kafka: the default rule pack, replay from files and
#     from the topic, and the issuer feed (scripts/bench_feed.sh)
# BENCH_KAFKA=apache (or embedded) runs the throughput rounds on one only;
# BENCH_PEER=0 leaves the Python peer out;
# BENCH_KEEP=1 keeps the working directory (configs, logs, summaries).
# The machine is noisy: compare the ratio within one run, not across runs.
set -euo pipefail
# shellcheck source=bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD:-build}}
[[ $BUILD == /* ]] || BUILD="$REPO/$BUILD"
EVENTS=${BENCH_EVENTS:-2000000}
ROUNDS=${BENCH_ROUNDS:-3}
PARTS=${BENCH_PARTITIONS:-64}
KINDS=${BENCH_KAFKA:-apache embedded}
CW="$BUILD/cardwatch"
DIR=$(mktemp -d /tmp/cardwatch-bench.XXXXXX)
TOPIC=cardwatch.bench

cleanup() {
  for k in apache embedded; do
    BUILD="$BUILD" "$REPO/scripts/stack.sh" down "$DIR/stack-$k" >/dev/null 2>&1 || true
  done
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    echo "bench: kept $DIR" >&2
  else
    rm -rf "$DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RULE_EVENTS=${BENCH_RULE_EVENTS:-300000}
# The peer runs on Debian's python3 (python3-confluent-kafka, python3-redis:
# scripts/install-deps.sh), not on a python3 earlier on PATH.
PEER=${BENCH_PEER:-1}
PEER_PY=${BENCH_PEER_PYTHON:-/usr/bin/python3}
XTOPIC=cardwatch.bench.exposed
umask 077
echo "bench1 $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$DIR/key"
umask 022

# stack_up KIND: Redis + Kafka of that kind, every topic the bench writes,
# and $DIR/cardwatch.ini pointing at them.
stack_up() {
  local kind=$1 topics="$TOPIC:$PARTS $XTOPIC:16 cardwatch.deadletter.replay:4"
  topics+=" cardwatch.alerts.acme_bank:4 cardwatch.alerts.globex_bank:4"
  topics+=" cardwatch.alerts.unrouted:4 cardwatch.alerts.peer:4 cardwatch.bench.relay:12"
  BUILD="$BUILD" STACK_KAFKA=$kind STACK_TOPICS="$topics" \
    "$REPO/scripts/stack.sh" up "$DIR/stack-$kind" >/dev/null
  # shellcheck disable=SC1090
  . "$DIR/stack-$kind/env"
  bench_ini "$DIR/cardwatch.ini" "$DIR/stack-$kind/kafka.bootstraps" "$TOPIC" "$REDIS_PORT" "$DIR/key"
  "$CW" gen cards --config "$DIR/cardwatch.ini" --count 7455 --seed 3 --out "$DIR/exposed.csv"
  "$CW" load --config "$DIR/cardwatch.ini" --breach bench --window-start 2021-04-13 \
    --window-end 2024-07-26 --elements pan,expiry,cvv2 "$DIR/exposed.csv" >/dev/null
  "$CW" gen txns --config "$DIR/cardwatch.ini" --count "$EVENTS" --seed 5 \
    --exposed "$DIR/exposed.csv" --exposed-share 0.01 --topic "$TOPIC" 2>/dev/null
}

# peer KIND ROUND: tools/peer.py on the topic (new group); prints
# "rate alerts", or "0 0" when BENCH_PEER=0.
peer() {
  if [[ $PEER == 0 ]]; then echo "0 0"; return; fi
  local out
  out=$("$PEER_PY" "$REPO/tools/peer.py" --brokers "$KAFKA_BOOTSTRAPS" --topic "$TOPIC" \
    --redis "127.0.0.1:$REDIS_PORT" --key-file "$DIR/key" --alert-topic cardwatch.alerts.peer \
    --expect "$EVENTS" --group "peer-$1-$2" 2>"$DIR/peer-$1-$2.log") || {
    echo "bench: $1 round $2: the peer failed: $(tail -n 1 "$DIR/peer-$1-$2.log")" >&2; exit 1; }
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(int(d["rate"]), d["alerts"])' "$out"
}

# rounds KIND: plain consumer vs cardwatch run vs the peer; medians into
# $DIR/median-KIND
rounds() {
  local kind=$1 r p pr prate crate alerts events peer_rate peer_alerts
  printf '\n%-9s %-6s %16s %16s %8s %10s %12s %8s\n' broker round "plain msg/s" \
    "cardwatch ev/s" ratio alerts "peer ev/s" "cw/peer"
  local plain_rates=() cw_rates=() peer_rates=()
  for r in $(seq 1 "$ROUNDS"); do
    p=$("$BUILD/plain_consumer" --brokers "$KAFKA_BOOTSTRAPS" --topic "$TOPIC" --expect "$EVENTS")
    prate=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["rate"]))' "$p")
    "$CW" run --config "$DIR/cardwatch.ini" --group "bench-$kind-$r" --exit-at-end \
      --no-progress --summary-json "$DIR/run-$kind-$r.json" >"$DIR/run$r.out" 2>"$DIR/run$r.log"
    read -r crate alerts events < <(python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); print(int(d["rate"]), d["alerts"], d["events"])' \
      "$DIR/run-$kind-$r.json")
    if [[ $events -ne $EVENTS ]]; then
      echo "bench: $kind round $r processed $events of $EVENTS events" >&2; exit 1
    fi
    pr=$(peer "$kind" "$r")
    read -r peer_rate peer_alerts <<<"$pr"
    if [[ $PEER != 0 && $peer_alerts -ne $alerts ]]; then
      echo "bench: $kind round $r: the peer raised $peer_alerts alerts, cardwatch $alerts" >&2
      exit 1
    fi
    printf '%-9s %-6s %16s %16s %8s %10s %12s %8s\n' "$kind" "$r" "$prate" "$crate" \
      "$(python3 -c "print(f'{$crate/$prate:.2f}')")" "$alerts" "$peer_rate" \
      "$(python3 -c "print(f'{$crate/$peer_rate:.2f}' if $peer_rate else '-')")"
    plain_rates+=("$prate"); cw_rates+=("$crate"); peer_rates+=("$peer_rate")
  done
  python3 - "${plain_rates[*]}" "${cw_rates[*]}" "${peer_rates[*]}" >"$DIR/median-$kind" <<'PY'
import statistics, sys
p = [int(x) for x in sys.argv[1].split()]
c = [int(x) for x in sys.argv[2].split()]
q = [int(x) for x in sys.argv[3].split()]
print(int(statistics.median(p)), int(statistics.median(c)), int(statistics.median(q)))
PY
}

echo "bench: $EVENTS events (~1% on 7,455 exposed cards) on $TOPIC ($PARTS partitions)," \
  "$ROUNDS rounds per broker: $KINDS"
# The mock first (if asked), so that Apache Kafka's stack stays up for the
# rest of the benchmark.
for kind in embedded apache; do
  [[ " $KINDS " == *" $kind "* ]] || continue
  stack_up "$kind"
  rounds "$kind"
  if [[ $kind == embedded ]]; then
    BUILD="$BUILD" "$REPO/scripts/stack.sh" down "$DIR/stack-$kind" >/dev/null
  fi
done
python3 - "$DIR" "$KINDS" <<'PY'
import os, sys
d, kinds = sys.argv[1], sys.argv[2].split()
print()
for k in ("apache", "embedded"):
    if k not in kinds:
        continue
    mp, mc, mq = map(int, open(os.path.join(d, f"median-{k}")).read().split())
    name = "Apache Kafka" if k == "apache" else "embedded mock"
    print(f"median on {name:<14} plain consumer {mp:>10,} msg/s, cardwatch run {mc:>10,} "
          f"events/s, ratio {mc/mp:.2f}; target 500,000 events/s: "
          f"{'met' if mc >= 500000 else 'NOT met'}")
    if mq:
        print(f"{'':<24} Python peer {mq:>10,} events/s; cardwatch / peer {mc/mq:.2f}")
PY
if [[ " $KINDS " != *" apache "* ]]; then
  exit 0
fi

# Rule work: the default pack (window state in process, written behind to
# Redis) on the same topic, then on a topic where most traffic is on
# exposed cards, and the pure cost of aggregation + evaluation without
# Redis.
cp "$DIR/cardwatch.ini" "$DIR/rules.ini"
printf '\n[rules]\npath = %s/rules/default.rules\n' "$REPO" >>"$DIR/rules.ini"
"$CW" gen txns --config "$DIR/cardwatch.ini" --count "$RULE_EVENTS" --seed 9 \
  --exposed "$DIR/exposed.csv" --exposed-share 1.0 --topic "$XTOPIC" 2>/dev/null
report() { # label summary.json
  python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
exposed = d["alerted"] + d["exposed_no_alert"]
print(f"{sys.argv[1]:<44} {d['rate']:>10,.0f} events/s  {exposed:>8,} on exposed cards "
      f"({exposed / d['processing_seconds']:,.0f}/s), {d['alerts']:,} alerts")
PY
}
echo
"$CW" run --config "$DIR/rules.ini" --group bench-rules --exit-at-end --no-progress \
  --summary-json "$DIR/rules1.json" >/dev/null 2>"$DIR/rules1.log"
report "default pack, ~1% exposed ($EVENTS events)" "$DIR/rules1.json"
sed "s/^transactions_topic = .*/transactions_topic = $XTOPIC/" "$DIR/rules.ini" >"$DIR/rules-x.ini"
"$CW" run --config "$DIR/rules-x.ini" --group bench-rules-x --exit-at-end --no-progress \
  --summary-json "$DIR/rules2.json" >/dev/null 2>"$DIR/rules2.log"
report "default pack, mostly exposed ($RULE_EVENTS events)" "$DIR/rules2.json"
# its baseline: the same topic through Kafka alone, every event relayed as
# an alert-sized record (bench_lib.sh)
relay_baseline "$BUILD" "$KAFKA_BOOTSTRAPS" "$XTOPIC" cardwatch.alerts.acme_bank \
  cardwatch.bench.relay "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print((d["alerted"] + d["exposed_no_alert"]) / d["processing_seconds"])' "$DIR/rules2.json")"
echo "pure rule work (no Redis): $("$BUILD/bench_rules" "$REPO/rules/default.rules" 20)"

# Replay (issue 4): the same pipeline over stored history. Files: the
# 2,000,000-event traffic (~1% exposed) as length-delimited protobuf and
# as JSON lines, pinned to one core, beside bench_decode (the replay's own
# reader + decoder and nothing else) on the same file. Kafka: the bench
# topic replayed by time range, beside the plain consumer on that topic.
# Alerts go to /dev/null (--output), with the built-in rule set.
echo
echo "replay: writing $EVENTS events as protobuf and JSON-lines files"
for f in pb jsonl; do
  fmt=$([[ $f == pb ]] && echo protobuf || echo json)
  "$CW" gen txns --config "$DIR/cardwatch.ini" --count "$EVENTS" --seed 5 \
    --exposed "$DIR/exposed.csv" --exposed-share 0.01 --format "$fmt" \
    --output "$DIR/txns.$f" 2>/dev/null
done
PIN=()
command -v taskset >/dev/null && PIN=(taskset -c 1)
replay_rate() { # report.json -> events/s
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(int(d["events_per_second"]))' "$1"
}
printf '\n%-28s %6s %16s %16s %8s\n' input round "baseline/s" "replay ev/s" ratio
declare -A med_base med_rep
for f in pb jsonl kafka; do
  bases=(); reps=()
  for r in $(seq 1 "$ROUNDS"); do
    if [[ $f == kafka ]]; then
      p=$("$BUILD/plain_consumer" --brokers "$KAFKA_BOOTSTRAPS" --topic "$TOPIC" --expect "$EVENTS")
      base=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["rate"]))' "$p")
      "$CW" replay --config "$DIR/cardwatch.ini" --from 1970-01-01 --output /dev/null \
        --no-progress --report "$DIR/replay-$f-$r.json" \
        >/dev/null 2>"$DIR/replay-$f-$r.log"
      label="Kafka topic ($PARTS partitions)"
    else
      b=$("${PIN[@]}" "$BUILD/bench_decode" "$DIR/txns.$f")
      base=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["rate"]))' "$b")
      "${PIN[@]}" "$CW" replay --config "$DIR/cardwatch.ini" --input "$DIR/txns.$f" \
        --output /dev/null --no-progress --report "$DIR/replay-$f-$r.json" \
        >/dev/null 2>"$DIR/replay-$f-$r.log"
      label=$([[ $f == pb ]] && echo "protobuf file (1 core)" || echo "JSON-lines file (1 core)")
    fi
    rate=$(replay_rate "$DIR/replay-$f-$r.json")
    printf '%-28s %6s %16s %16s %8s\n' "$label" "$r" "$base" "$rate" \
      "$(python3 -c "print(f'{$rate/$base:.2f}')")"
    bases+=("$base"); reps+=("$rate")
  done
  med_base[$f]=$(printf '%s\n' "${bases[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
  med_rep[$f]=$(printf '%s\n' "${reps[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
done
python3 - "${med_base[pb]}" "${med_rep[pb]}" "${med_base[jsonl]}" "${med_rep[jsonl]}" \
  "${med_base[kafka]}" "${med_rep[kafka]}" <<'PY'
import sys
bp, rp, bj, rj, bk, rk = (int(x) for x in sys.argv[1:])
print(f"\nmedian replay: protobuf file {rp:,} events/s (decode-only baseline {bp:,}; "
      f"target 1,000,000: {'met' if rp >= 1000000 else 'NOT met'})")
print(f"               JSON lines    {rj:,} events/s (decode-only baseline {bj:,}; "
      f"target 300,000: {'met' if rj >= 300000 else 'NOT met'})")
print(f"               Kafka topic   {rk:,} events/s (plain consumer {bk:,}; ratio {rk/bk:.2f})")
PY

# Common point of purchase (issue 16): `cardwatch cpp` over the same
# protobuf file, pinned to the same core, beside the decode-only baseline
# and the replay's figure above. The compromised cards: 3,000 of the
# exposed cards, first defrauded 2024-08-20..31, looking back 90 days: the
# whole file is inside the period, so every event is fingerprinted and
# counted (200,000 merchants: the cache-unfriendly case).
python3 - "$DIR/exposed.csv" "$DIR/cpp-frauds.csv" <<'PY'
import csv, random, sys
rnd = random.Random(3)
rows = list(csv.DictReader(open(sys.argv[1])))[:3000]
with open(sys.argv[2], "w") as f:
    f.write("pan,first_fraud\n")
    for r in rows:
        f.write(f"{r['pan']},2024-08-{rnd.randint(20, 31):02d}\n")
PY
printf '\n%-28s %6s %16s %16s %8s\n' input round "baseline/s" "cpp txn/s" ratio
cpps=()
for r in $(seq 1 "$ROUNDS"); do
  b=$("${PIN[@]}" "$BUILD/bench_decode" "$DIR/txns.pb")
  base=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["rate"]))' "$b")
  t0=$(date +%s.%N)
  "${PIN[@]}" "$CW" cpp --config "$DIR/cardwatch.ini" --frauds "$DIR/cpp-frauds.csv" \
    --lookback 90 --report "$DIR/cpp-$r.json" "$DIR/txns.pb" >/dev/null 2>"$DIR/cpp-$r.log"
  t1=$(date +%s.%N)
  rate=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(int(d['transactions']/($t1-$t0)))" "$DIR/cpp-$r.json")
  printf '%-28s %6s %16s %16s %8s\n' "cpp, protobuf file (1 core)" "$r" "$base" "$rate" \
    "$(python3 -c "print(f'{$rate/$base:.2f}')")"
  cpps+=("$rate")
done
cm=$(printf '%s\n' "${cpps[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
python3 -c "import sys; c,r=int(sys.argv[1]),int(sys.argv[2]); print(f'\nmedian cpp: protobuf file {c:,} transactions/s (replay {r:,}; target 1,000,000: ' + ('met' if c >= 1000000 else 'NOT met') + ')')" "$cm" "${med_rep[pb]}"

# The issuer alert feed: GET /v1/alerts under wrk with 1,000 long polls held, fan-out.
"$REPO/scripts/bench_feed.sh" "$BUILD"
