#!/usr/bin/env bash
# `make run`: the whole local stack on demo data.
#   1. starts redis-server and Apache Kafka (a single KRaft node; the jars
#      are fetched from Maven Central on the first run) on free loopback
#      ports; KAFKA=embedded uses librdkafka's mock cluster instead (no
#      Java needed)
#   2. writes a demo config and a fingerprint key (mode 0600)
#   3. makes 7,455 synthetic exposed cards and loads them as breach
#      "demo-skimmer" (window 2021-04-13 .. 2024-07-26)
#   4. publishes DEMO_EVENTS generated transactions (default 1,000,000,
#      ~1% on exposed cards, with injected misuse and a few invalid events)
#   5. runs `cardwatch run` with the default rule pack (rules/default.rules)
#      and a live progress line until the topic is consumed, then prints
#      the summary (alerts by issuer and rule)
#   6. replays the topic to a file (the "already misused" count)
#   7. with DEMO_FEED=1: serves Acme Bank's alert feed and triage page
#      (`cardwatch feed`, a fresh token printed) until Ctrl-C
# Ctrl-C at any point stops everything this script started.
# Environment: DEMO_EVENTS, DEMO_DIR (default build/demo), DEMO_FEED, BUILD,
# KAFKA (apache, the default, or embedded).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD:-build}}
[[ $BUILD == /* ]] || BUILD="$REPO/$BUILD"
DIR=${DEMO_DIR:-$BUILD/demo}
EVENTS=${DEMO_EVENTS:-1000000}
CW="$BUILD/cardwatch"
ISSUERS=(acme_bank globex_bank initech_cu)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

cleanup() {
  trap - EXIT INT TERM
  set +e
  if [[ -n ${FEED_PID:-} ]]; then
    kill "$FEED_PID" 2>/dev/null
    wait "$FEED_PID" 2>/dev/null
  fi
  if [[ -n ${RUN_PID:-} ]]; then
    # Ctrl-C reached cardwatch too (same process group): let it drain and
    # commit; only a run that is still there after its drain time is ended.
    for _ in $(seq 1 350); do
      kill -0 "$RUN_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$RUN_PID" 2>/dev/null && kill "$RUN_PID"
    wait "$RUN_PID" 2>/dev/null
  fi
  BUILD="$BUILD" "$REPO/scripts/stack.sh" down "$DIR/stack" >/dev/null
  echo "demo: stopped Redis and Kafka"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT TERM

KIND=${KAFKA:-${STACK_KAFKA:-apache}}
# Every topic the demo writes: the brokers create none on first use.
topics="cardwatch.alerts.unrouted:4 cardwatch.deadletter.replay:4"
for i in "${ISSUERS[@]}"; do topics+=" cardwatch.alerts.$i:4"; done
parts=16
if [[ $KIND == embedded ]]; then
  # The embedded Kafka keeps ~5 MiB per partition and evicts the oldest:
  # 1,000,000 events of ~100 bytes need more than 16 partitions to stay whole.
  parts=$(( (EVENTS / 40000) + 1 )); (( parts < 16 )) && parts=16
fi
BUILD="$BUILD" STACK_KAFKA="$KIND" STACK_TOPICS="$topics" STACK_TXN_PARTITIONS=$parts \
  "$REPO/scripts/stack.sh" up "$DIR/stack"

umask 077
[[ -s $DIR/fingerprint.key ]] ||
  echo "demo1 $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$DIR/fingerprint.key"
umask 022
# shellcheck disable=SC1091
. "$DIR/stack/env"
cat >"$DIR/cardwatch.ini" <<INI
; Written by scripts/demo.sh for the local demo stack.
[kafka]
brokers_file = $DIR/stack/kafka.bootstraps
group = cardwatch-demo
session_timeout_ms = 6000

[redis]
address = 127.0.0.1:$REDIS_PORT
prefix = demo

[card]
key_file = $DIR/fingerprint.key

[rules]
path = $REPO/rules/default.rules

[http]
listen = 127.0.0.1:0

[issuer acme_bank]
name = Acme Bank
home_country = DE
bins = 400000-400099

[issuer globex_bank]
name = Globex Bank
home_country = FR
bins = 510000-510049

[issuer initech_cu]
name = Initech Credit Union
home_country = NL
bins = 370000-370009,45100000-45100099
INI
sed -i "s/^listen = 127.0.0.1:0$/listen = 127.0.0.1:$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')/" "$DIR/cardwatch.ini"

echo "demo: making 7,455 synthetic exposed cards"
"$CW" gen cards --config "$DIR/cardwatch.ini" --count 7455 --seed 7 --out "$DIR/exposed.csv"
"$CW" load --config "$DIR/cardwatch.ini" --breach demo-skimmer \
  --window-start 2021-04-13 --window-end 2024-07-26 \
  --elements pan,expiry,cvv2,name,address \
  --description "tampered payment page (demo data)" "$DIR/exposed.csv"
"$CW" breaches --config "$DIR/cardwatch.ini"

echo "demo: publishing $EVENTS transactions (~1% on exposed cards)"
"$CW" gen txns --config "$DIR/cardwatch.ini" --count "$EVENTS" --seed 11 \
  --exposed "$DIR/exposed.csv" --exposed-share 0.01 --invalid-share 0.0005 \
  --start 2024-08-01 --days 30 --topic cardwatch.transactions

echo "demo: cardwatch run (metrics: http://$(sed -n 's/^listen = //p' "$DIR/cardwatch.ini")/metrics)"
"$CW" run --config "$DIR/cardwatch.ini" --exit-at-end --progress &
RUN_PID=$!
wait "$RUN_PID"
RUN_PID=
echo
echo "demo: first alerts of issuer ${ISSUERS[0]} (cardwatch tail):"
"$CW" tail --config "$DIR/cardwatch.ini" --exit-at-end \
  "cardwatch.alerts.${ISSUERS[0]}" >"$DIR/alerts.${ISSUERS[0]}.jsonl"
head -3 "$DIR/alerts.${ISSUERS[0]}.jsonl"
echo "demo: all of them: $DIR/alerts.${ISSUERS[0]}.jsonl"

# Replay: the same history again, as an investigation would run it - which
# exposed cards were already misused? Its alerts go to a file (the live
# topics, state and group are not touched).
echo
echo "demo: cardwatch replay of the whole topic (the 'already misused' question)"
"$CW" replay --config "$DIR/cardwatch.ini" --from 2024-08-01 --progress \
  --output "$DIR/replay-alerts.jsonl" --report "$DIR/replay-report.json" \
  --report-html "$DIR/replay-report.html" --log-level warn
echo "demo: replay alerts in $DIR/replay-alerts.jsonl, report in $DIR/replay-report.json"
echo "demo: the same report with charts (opens offline): $DIR/replay-report.html"

# The issuer's side: Acme Bank's feed (what the run delivered, from Redis)
# and its triage page, with a token made now (only its hash is configured).
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
if [[ ${DEMO_FEED:-0} == 1 ]]; then
  { read -r TOKEN; read -r HASHLINE; } < <("$CW" token 2>/dev/null)
  FEED_PORT=$(free_port)
  sed -e "/^\[issuer ${ISSUERS[0]}\]\$/a $HASHLINE" \
      -e "s/^listen = .*/listen = 127.0.0.1:$(free_port)/" \
      "$DIR/cardwatch.ini" >"$DIR/feed.ini"
  printf '\n[feed]\nlisten = 127.0.0.1:%s\n' "$FEED_PORT" >>"$DIR/feed.ini"
  "$CW" feed --config "$DIR/feed.ini" --log-level warn &
  FEED_PID=$!
  for _ in $(seq 1 100); do
    curl -fso /dev/null "http://127.0.0.1:$FEED_PORT/" && break
    kill -0 "$FEED_PID" 2>/dev/null || { echo "demo: cardwatch feed did not start" >&2; exit 1; }
    sleep 0.1
  done
  echo
  echo "demo: Acme Bank's triage page: http://127.0.0.1:$FEED_PORT/"
  echo "demo: sign in with this token (shown once): $TOKEN"
  echo "demo: or: curl -H 'Authorization: Bearer $TOKEN' 'http://127.0.0.1:$FEED_PORT/v1/alerts?order=newest&limit=5'"
  echo "demo: Ctrl-C stops the feed, Redis and Kafka"
  wait "$FEED_PID"
else
  echo
  echo "demo: DEMO_FEED=1 make run also serves Acme Bank's alert feed and triage page"
fi
