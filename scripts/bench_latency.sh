#!/usr/bin/env bash
# `make bench-latency`: end-to-end latency of `cardwatch run` on Apache
# Kafka, beside the broker's own pass-through, at fixed produce rates.
#
#   - Apache Kafka + redis-server on free loopback ports (scripts/stack.sh)
#   - 7,455 exposed cards loaded, as make bench does
#   - one `cardwatch run` (built-in rule, default settings apart from what
#     the stack needs) on the transactions topic for the whole run
#   - per rate, build/latency (tools/latency.c): a producer at that rate
#     (event time = now, ~BENCH_LAT_EXPOSED_SHARE on exposed cards), an
#     independent consumer of the alert topics that matches each alert to
#     its transaction, a plain consumer of the transactions topic, and a
#     relay: a plain consumer that produces each transaction on an exposed
#     card to <topic>.relay with cardwatch's producer settings (linger.ms
#     5, idempotent, acks all) and a consumer of that topic - the two
#     broker hops an alert takes, without cardwatch; all in one process,
#     CLOCK_REALTIME in microseconds
#   - first a warm-up step (BENCH_LAT_WARMUP seconds, default 10, at the
#     first rate; not reported: the broker's JIT and page cache)
#   - rates BENCH_LAT_RATES (default 10000 50000 100000), then stepping up
#     through BENCH_LAT_STEPS until a rate is not sustained: the producer
#     reaches < 95% of it, or the consumer side falls behind - the median
#     latency of the last fifth of the step's transactions is more than
#     BENCH_LAT_BEHIND_MS (default 500) above the first fifth's, for
#     cardwatch or for the pass-through (a backlog grows through the step);
#     the highest sustained rate is reported
#   - prints per rate p50 / p99 / p99.9 / max for cardwatch (produce call
#     -> alert arrival) and for the pass-through (produce call -> plain
#     consumer), the difference at p99, the relay's p50 / p99 and
#     cardwatch's p99 over it, the rate achieved and the alerts matched; a
#     missing, duplicate or unexpected alert (or relayed transaction)
#     fails the bench
#
# Knobs: BENCH_LAT_SECONDS (per rate, default 15), BENCH_LAT_RATES,
# BENCH_LAT_STEPS ("" = no search), BENCH_LAT_EXPOSED_SHARE (default 0.01),
# BENCH_LAT_PARTITIONS (transactions topic, default 16),
# BENCH_LAT_CONFIG (extra lines appended to cardwatch's config, e.g.
# $'[kafka.producer]\nlinger.ms = 1'), BENCH_LAT_TIMEOUT (seconds to wait for
# the last alerts, default 60), BENCH_LAT_NICE (run cardwatch under
# `nice -n N`, e.g. -10: more CPU share against the broker's JVM and the
# measuring process; the loop-tick columns show what the scheduler held
# back), BENCH_KEEP=1 keeps the working directory.
# The machine is noisy (2 cores shared by the broker, Redis, cardwatch and
# the measuring process): compare the two columns within one run.
set -euo pipefail
# shellcheck source=bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD:-build}}
[[ $BUILD == /* ]] || BUILD="$REPO/$BUILD"
SECONDS_PER=${BENCH_LAT_SECONDS:-15}
RATES=${BENCH_LAT_RATES:-10000 50000 100000}
STEPS=${BENCH_LAT_STEPS-150000 200000 300000 400000 600000 800000}
SHARE=${BENCH_LAT_EXPOSED_SHARE:-0.01}
PARTS=${BENCH_LAT_PARTITIONS:-16}
BEHIND_MS=${BENCH_LAT_BEHIND_MS:-500}
WARMUP=${BENCH_LAT_WARMUP:-10}
TIMEOUT=${BENCH_LAT_TIMEOUT:-60}
CW="$BUILD/cardwatch"
DIR=$(mktemp -d /tmp/cardwatch-latency.XXXXXX)
TOPIC=cardwatch.latency
ALERTS=cardwatch.alerts.acme_bank,cardwatch.alerts.globex_bank,cardwatch.alerts.unrouted
CW_PID=

cleanup() {
  if [[ -n $CW_PID ]] && kill -0 "$CW_PID" 2>/dev/null; then
    kill -TERM "$CW_PID" 2>/dev/null || true
    wait "$CW_PID" 2>/dev/null || true
  fi
  BUILD="$BUILD" "$REPO/scripts/stack.sh" down "$DIR/stack" >/dev/null 2>&1 || true
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    echo "bench-latency: kept $DIR" >&2
  else
    rm -rf "$DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

umask 077
echo "bench1 $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$DIR/key"
umask 022

topics="$TOPIC:$PARTS cardwatch.alerts.acme_bank:4 cardwatch.alerts.globex_bank:4"
topics+=" cardwatch.alerts.unrouted:4 $TOPIC.relay:4"
BUILD="$BUILD" STACK_KAFKA=apache STACK_TOPICS="$topics" \
  "$REPO/scripts/stack.sh" up "$DIR/stack" >/dev/null
# shellcheck disable=SC1091
. "$DIR/stack/env"
bench_ini "$DIR/cardwatch.ini" "$DIR/stack/kafka.bootstraps" "$TOPIC" "$REDIS_PORT" "$DIR/key"
# cardwatch's /metrics, for its event-loop lag per step
HTTP_PORT=$(free_port)
sed -i "s/^listen =\$/listen = 127.0.0.1:$HTTP_PORT/" "$DIR/cardwatch.ini"
if [[ -n ${BENCH_LAT_CONFIG:-} ]]; then
  printf '\n%s\n' "$BENCH_LAT_CONFIG" >>"$DIR/cardwatch.ini"
fi
"$CW" gen cards --config "$DIR/cardwatch.ini" --count 7455 --seed 3 --out "$DIR/exposed.csv"
"$CW" load --config "$DIR/cardwatch.ini" --breach bench --window-start 2021-04-13 \
  --window-end 2024-07-26 --elements pan,expiry,cvv2 "$DIR/exposed.csv" >/dev/null

${BENCH_LAT_NICE:+nice -n "$BENCH_LAT_NICE"} "$CW" run --config "$DIR/cardwatch.ini" --group bench-latency --no-progress \
  >"$DIR/run.out" 2>"$DIR/run.log" &
CW_PID=$!

echo "bench-latency: Apache Kafka, $TOPIC ($PARTS partitions), ${SECONDS_PER} s per rate," \
  "$SHARE of events on 7,455 exposed cards, built-in rule"
[[ -n ${BENCH_LAT_CONFIG:-} ]] && echo "bench-latency: cardwatch config adds: ${BENCH_LAT_CONFIG//$'\n'/ }"
printf '\n%8s %9s %8s | %-31s | %-31s | %8s | %-15s | %8s | %-23s\n' "" "" "" \
  "cardwatch: produce -> alert (ms)" "pass-through (ms)" "p99" "relay, 2 hops" "p99" \
  "loop ticks late by (ms)"
printf '%8s %9s %8s | %7s %7s %7s %7s | %7s %7s %7s %7s | %8s | %7s %7s | %8s | %5s %5s %5s %6s\n' \
  target "events/s" alerts p50 p99 p99.9 max p50 p99 p99.9 max "diff ms" p50 p99 "cw-relay" \
  ">10" ">50" ">100" ticks

# loop_lag: cardwatch's cardwatch_event_loop_lag_seconds buckets as JSON
# ({"0.01": n, ..., "count": n}), {} when /metrics does not answer.
loop_lag() {
  python3 - "$HTTP_PORT" <<'PY'
import json, re, sys, urllib.request
try:
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
except OSError:
    print("{}"); sys.exit(0)
out = {}
for m in re.finditer(r'^cardwatch_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\d+)', text, re.M):
    out[m.group(1)] = int(m.group(2))
m = re.search(r"^cardwatch_event_loop_lag_seconds_count (\d+)", text, re.M)
out["count"] = int(m.group(1)) if m else 0
print(json.dumps(out))
PY
}

FAILED=0
BEST=0
# one_rate RATE [SECONDS RUN]: runs build/latency, prints the row; returns
# 0 when the rate was sustained, 1 when it was not, 2 when the bench
# failed. Each step's txn ids (hence alert ids) are its own (RUN).
one_rate() {
  local rate=$1 secs=${2:-$SECONDS_PER} run=${3:-r$1} out rc=0
  if ! kill -0 "$CW_PID" 2>/dev/null; then
    echo "bench-latency: FAILED: cardwatch run exited; last lines of its log:" >&2
    tail -n 5 "$DIR/run.log" >&2
    return 2
  fi
  lag0=$(loop_lag)
  out=$("$BUILD/latency" --brokers "$KAFKA_BOOTSTRAPS" --topic "$TOPIC" \
    --alert-topics "$ALERTS" --exposed "$DIR/exposed.csv" --rate "$rate" \
    --seconds "$secs" --exposed-share "$SHARE" --run "$run" \
    --timeout "$TIMEOUT" --relay-topic "$TOPIC.relay" 2>>"$DIR/latency.log") || rc=$?
  echo "$out" >>"$DIR/latency.jsonl"
  if [[ -z $out ]]; then
    echo "bench-latency: FAILED at $rate/s: $(tail -n 1 "$DIR/latency.log")" >&2
    return 2
  fi
  python3 - "$out" "$rate" "$BEHIND_MS" "$lag0" "$(loop_lag)" <<'PY'
import json, sys
d, rate, behind = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
lag = {k: json.loads(sys.argv[5]).get(k, 0) - v for k, v in json.loads(sys.argv[4]).items()}
c, p, r = d["cardwatch"], d["pass"], d["relay"]
def q(s, k):
    return f"{s[k]:7.1f}" if k in s else "      -"
print(f"{int(rate):>8,} {d['rate']:>9,.0f} {d['alerts']:>8,} | "
      f"{q(c,'p50')} {q(c,'p99')} {q(c,'p999')} {q(c,'max')} | "
      f"{q(p,'p50')} {q(p,'p99')} {q(p,'p999')} {q(p,'max')} | "
      f"{(c.get('p99', 0) - p.get('p99', 0)):+8.1f} | {q(r,'p50')} {q(r,'p99')} | "
      f"{(c.get('p99', 0) - r.get('p99', 0)):+8.1f} | "
      f"{lag.get('count', 0) - lag.get('0.01', 0):>5} "
      f"{lag.get('count', 0) - lag.get('0.05', 0):>5} "
      f"{lag.get('count', 0) - lag.get('0.1', 0):>5} {lag.get('count', 0):>6}")
if d["relay_received"] != d["alerting"]:
    print(f"\n!!! bench-latency FAILED at {int(rate):,}/s: the relay passed "
          f"{d['relay_received']:,} of {d['alerting']:,} transactions\n")
    sys.exit(2)
if d["missing"] or d["unexpected"] or d["duplicates"] or d["pass_received"] != d["sent"]:
    print(f"\n!!! bench-latency FAILED at {int(rate):,}/s: {d['alerts']:,} of "
          f"{d['alerting']:,} alerts arrived ({d['missing']:,} MISSING), "
          f"{d['unexpected']} unexpected, {d['duplicates']} duplicate(s); "
          f"{d['pass_received']:,} of {d['sent']:,} transactions passed through\n")
    sys.exit(2)
grow_c = d["cardwatch_last_p50"] - d["cardwatch_first_p50"]
grow_p = d["pass_last_p50"] - d["pass_first_p50"]
why = []
if d["rate"] < 0.95 * rate:
    why.append(f"the producer reached {d['rate']:,.0f}/s")
if grow_c > behind:
    why.append(f"cardwatch fell behind (median {d['cardwatch_first_p50']:,.0f} -> "
               f"{d['cardwatch_last_p50']:,.0f} ms through the step)")
if grow_p > behind:
    why.append(f"the pass-through fell behind (median {d['pass_first_p50']:,.0f} -> "
               f"{d['pass_last_p50']:,.0f} ms through the step)")
if why:
    print(f"{'':>8} not sustained: {'; '.join(why)}")
sys.exit(1 if why else 0)
PY
}

first=${RATES%% *}
if (( WARMUP > 0 )); then
  echo "(warm-up: ${WARMUP} s at $first/s, not reported)"
  set +e; warm=$(one_rate "$first" "$WARMUP" warmup); st=$?; set -e
  (( st == 2 )) && { FAILED=1; echo "$warm" | grep -v '^ *[0-9]'; }
fi
for r in $RATES; do
  set +e; one_rate "$r"; st=$?; set -e
  (( st == 2 )) && FAILED=1
  (( st == 0 && r > BEST )) && BEST=$r
done
# Stepping up only from a sustained last rate.
if [[ -n $STEPS && $st == 0 ]]; then
  for r in $STEPS; do
    set +e; one_rate "$r"; st=$?; set -e
    (( st == 2 )) && FAILED=1
    (( st != 0 )) && break
    BEST=$r
  done
fi

kill -TERM "$CW_PID" 2>/dev/null || true
wait "$CW_PID" || { echo "bench-latency: cardwatch run exited non-zero" >&2; FAILED=1; }
CW_PID=
echo
echo "highest rate sustained (the producer >= 95% of the target, neither side ${BEHIND_MS} ms" \
  "further behind at the end of the step than at its start, every alert): $(
  (( BEST > 0 )) && echo "${BEST}/s" || echo "none")"
if (( FAILED )); then
  echo "bench-latency: FAILED: see the lines marked !!! above (logs: BENCH_KEEP=1)" >&2
  exit 1
fi
