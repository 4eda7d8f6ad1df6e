#!/usr/bin/env bash
# `make bench-load`: what a breach costs in Redis, at sizes a card network
# meets. For each size in BENCH_LOAD_CARDS (default "1000000 10000000"):
# `cardwatch gen cards` writes the list (streamed to disk), `cardwatch
# load` loads it into an empty redis-server (free loopback port, no
# persistence), and the bench prints the load's time and rate and Redis's
# memory per card (INFO memory used_memory after - before, divided by the
# cards), beside the first layout's measured 240 bytes per card; then
# `cardwatch run` starts on it (Kafka: the embedded mock, the start-up
# here is Redis's) and the bench prints the time to its set check and
# exposure filter (the log line "exposure filter built").
# BENCH_LOAD_CARDS=100000000 is the 100 M-card breach (about 30 minutes
# and 5 GB of disk here). BENCH_KEEP=1 keeps the working directory.
set -euo pipefail
# shellcheck source=bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD:-build}}
[[ $BUILD == /* ]] || BUILD="$REPO/$BUILD"
CW="$BUILD/cardwatch"
SIZES=${BENCH_LOAD_CARDS:-1000000 10000000}
DIR=$(mktemp -d "${BENCH_DIR:-/tmp}/cardwatch-bench-load.XXXXXX")
PID=

cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "bench-load: kept $DIR" >&2
  else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

umask 077
echo "bench1 $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$DIR/key"
umask 022

used_memory() {
  redis-cli -p "$PORT" INFO memory | awk -F: '/^used_memory:/ {print $2+0}'
}

printf '%-12s %8s %9s %13s %13s %11s %12s %13s\n' cards "gen s" "load s" \
  "load cards/s" "Redis B/card" "1st layout" "run ready s" "filter B/card"
for n in $SIZES; do
  PORT=$(free_port)
  redis-server --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
    --dir "$DIR" --logfile "$DIR/redis.log" &
  PID=$!
  for _ in $(seq 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
  cat >"$DIR/cardwatch.ini" <<INI
[redis]
address = 127.0.0.1:$PORT
[card]
key_file = $DIR/key
[http]
listen =
[issuer acme_bank]
home_country = DE
bins = 400000-400099
INI
  t0=$(date +%s.%N)
  "$CW" gen cards --config "$DIR/cardwatch.ini" --count "$n" --seed 11 --out "$DIR/cards.csv"
  t1=$(date +%s.%N)
  before=$(used_memory)
  "$CW" load --config "$DIR/cardwatch.ini" --breach big --window-start 2021-04-13 \
    --window-end 2024-07-26 --elements pan,expiry,cvv2 "$DIR/cards.csv" >"$DIR/load.out"
  t2=$(date +%s.%N)
  after=$(used_memory)
  # the service's start-up on this set: the check, the presence count and
  # the filter (read every fingerprint, build it on a thread)
  "$BUILD/embedded_kafka" --bootstraps-file "$DIR/kafka.bootstraps" \
    --topic cardwatch.transactions:4 --topic cardwatch.deadletter:4 \
    --topic cardwatch.alerts.acme_bank:4 --topic cardwatch.alerts.unrouted:4 \
    >"$DIR/mock.log" 2>&1 &
  MOCK=$!
  for _ in $(seq 100); do [[ -s $DIR/kafka.bootstraps ]] && break; sleep 0.1; done
  printf '[kafka]\nbrokers_file = %s\n' "$DIR/kafka.bootstraps" >>"$DIR/cardwatch.ini"
  t3=$(date +%s.%N)
  "$CW" run --config "$DIR/cardwatch.ini" --no-progress >/dev/null 2>"$DIR/run.log" &
  RUN=$!
  for _ in $(seq 6000); do
    grep -q "exposure filter built" "$DIR/run.log" && break
    kill -0 "$RUN" 2>/dev/null || break
    sleep 0.1
  done
  t4=$(date +%s.%N)
  kill "$RUN" 2>/dev/null; wait "$RUN" 2>/dev/null || true
  kill "$MOCK" 2>/dev/null; wait "$MOCK" 2>/dev/null || true
  rm -f "$DIR/kafka.bootstraps"
  line=$(grep -o "exposure filter built: .*" "$DIR/run.log" || echo "")
  python3 - "$n" "$t0" "$t1" "$t2" "$before" "$after" "$t3" "$t4" "$line" <<'PY'
import re, sys
n, t0, t1, t2, before, after, t3, t4 = (float(x) for x in sys.argv[1:9])
m = re.search(r"built: (\d+) cards, (\d+) bytes", sys.argv[9])
per = (after - before) / n
ready = f"{t4 - t3:.1f}" if m else "n/a"
fb = f"{int(m.group(2)) / int(m.group(1)):.2f}" if m else "n/a"
print(f"{int(n):<12,} {t1 - t0:>8.1f} {t2 - t1:>9.1f} {n / (t2 - t1):>13,.0f} "
      f"{per:>13.1f} {per / 240:>10.2f}x {ready:>12} {fb:>13}")
PY
  [[ -n $line ]] || { echo "bench-load: no filter built; run log:" >&2; tail -5 "$DIR/run.log" >&2; }
  tail -1 "$DIR/load.out" | sed 's/^/  /'
  rm -f "$DIR/cards.csv"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
echo "(1st layout: one key per card and a set per breach, 240 B/card measured at 1 M)"
