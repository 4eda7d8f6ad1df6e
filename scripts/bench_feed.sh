#!/usr/bin/env bash
# `make bench-feed` (also run at the end of `make bench`): the issuer alert
# feed (`cardwatch feed`) under load, on loopback.
#
#   - Apache Kafka + redis-server (scripts/stack.sh), 2 issuers with
#     tokens (`cardwatch token`), 2,000 exposed cards loaded, traffic with a
#     few thousand alerts through `cardwatch run --exit-at-end` (so the feeds
#     in Redis are filled by the real ledger)
#   - `cardwatch feed`, then BENCH_FEED_CLIENTS (default 1,000) long polls
#     of one issuer held open (wait=600, after its newest alert) by a Python
#     asyncio client; held = the feed's waiting-clients gauge says so and
#     none of them has returned
#   - wrk (Debian package) --latency for BENCH_FEED_SECONDS (default 15) on
#     GET /v1/alerts?limit=100 with the issuer's token, and beside it the
#     same wrk on /healthz of the same process ([http] listen, same event
#     loop) as baseline: requests/s, p50/p99, ratio
#   - fan-out: one alert stored with the ledger's own Lua script
#     (RMODEL_LUA_RECORD_DELIVERY from processor/rmodel.c); time from the
#     moment it is stored (Redis keyspace notice) until each held long
#     poll has its answer: p50/p99/max over all of them
#   - the same wrk on GET /v1/alerts?limit=10 (answers under 16 KiB), on
#     the triage page's ?limit=100&order=newest&include=outcome, and on
#     ?limit=100 again with no client held
# Everything is stopped at the end (trap). The machine is noisy and wrk
# shares its 2 cores with the server: compare within one run.
set -euo pipefail
# shellcheck source=bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD:-build}}
[[ $BUILD == /* ]] || BUILD="$REPO/$BUILD"
CW="$BUILD/cardwatch"
HOLD=${BENCH_FEED_CLIENTS:-1000}
SECS=${BENCH_FEED_SECONDS:-15}
CONNS=${BENCH_FEED_WRK_CONNECTIONS:-64}
EVENTS=${BENCH_FEED_EVENTS:-150000}
DIR=$(mktemp -d /tmp/cardwatch-bench-feed.XXXXXX)
PIDS=()

say() { echo "bench-feed: $*"; }
die() { echo "bench-feed: $*" >&2; exit 1; }

cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$p" 2>/dev/null || true
  done
  BUILD="$BUILD" "$REPO/scripts/stack.sh" down "$DIR/stack" >/dev/null 2>&1 || true
  if [[ -n ${BENCH_FEED_KEEP:-} ]]; then
    echo "bench-feed: files kept in $DIR"
  else
    rm -rf "$DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $CW ]] || die "$CW is missing: run make first"
if ! command -v wrk >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing wrk (Debian package)"
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 &&
      apt-get install -y wrk >/dev/null 2>&1; } || die "cannot install wrk"
  else
    die "wrk is missing: apt-get install wrk"
  fi
fi
# 1,000 held connections on each side, plus wrk's
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > HOLD + CONNS + 100 )) || die "open files limit $(ulimit -n) too low"

BUILD="$BUILD" STACK_TOPICS="cardwatch.alerts.acme_bank:4 cardwatch.alerts.globex_bank:4
  cardwatch.alerts.unrouted:4" "$REPO/scripts/stack.sh" up "$DIR/stack" >/dev/null
# shellcheck disable=SC1091
. "$DIR/stack/env"
umask 077
echo "benchfeed $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$DIR/key"
umask 022
"$CW" token >"$DIR/tok-acme" 2>/dev/null
"$CW" token >"$DIR/tok-globex" 2>/dev/null
TOK_ACME=$(sed -n 1p "$DIR/tok-acme")
FEED_PORT=$(free_port)
ADMIN_PORT=$(free_port)
cat >"$DIR/cardwatch.ini" <<INI
[kafka]
brokers_file = $DIR/stack/kafka.bootstraps
session_timeout_ms = 6000
[redis]
address = 127.0.0.1:$REDIS_PORT
[card]
key_file = $DIR/key
[http]
listen =
[issuer acme_bank]
home_country = DE
bins = 400000-400099
$(sed -n 2p "$DIR/tok-acme")
[issuer globex_bank]
home_country = FR
bins = 510000-510049
$(sed -n 2p "$DIR/tok-globex")
INI
# the feed's own config: its listener, an admin port, limits that let a
# benchmark through (one token drives all of wrk's connections)
{ cat "$DIR/cardwatch.ini"
  printf '[http]\nlisten = 127.0.0.1:%s\n' "$ADMIN_PORT"
  printf '[feed]\nlisten = 127.0.0.1:%s\nrate_per_s = 100000\nburst = 100000\n' "$FEED_PORT"
  printf 'max_clients = %s\nmax_wait_s = 600\n' "$(( HOLD * 4 + 1000 ))"
} >"$DIR/feed.ini"

say "loading 2,000 exposed cards; $EVENTS transactions (3% on exposed cards) through cardwatch run"
"$CW" gen cards --config "$DIR/cardwatch.ini" --count 2000 --seed 3 --out "$DIR/exposed.csv" 2>/dev/null
"$CW" load --config "$DIR/cardwatch.ini" --breach benchfeed --window-start 2021-04-13 \
  --window-end 2024-07-26 --elements pan,expiry,cvv2 "$DIR/exposed.csv" >/dev/null
"$CW" gen txns --config "$DIR/cardwatch.ini" --count "$EVENTS" --seed 5 \
  --exposed "$DIR/exposed.csv" --exposed-share 0.03 --topic cardwatch.transactions 2>/dev/null
"$CW" run --config "$DIR/cardwatch.ini" --group benchfeed --exit-at-end --no-progress \
  --summary-json "$DIR/run.json" >"$DIR/run.out" 2>"$DIR/run.log" ||
  die "cardwatch run failed: $(tail -5 "$DIR/run.log")"
N_ACME=$(redis-cli -p "$REDIS_PORT" --raw XLEN cw:feed:acme_bank)
N_GLOBEX=$(redis-cli -p "$REDIS_PORT" --raw XLEN cw:feed:globex_bank)
say "feeds in Redis: acme_bank $N_ACME alerts, globex_bank $N_GLOBEX alerts"
(( N_ACME >= 1000 )) || die "too few alerts for a benchmark ($N_ACME)"

"$CW" feed --config "$DIR/feed.ini" 2>"$DIR/feed.log" &
PIDS+=($!)
FEED_PID=$!
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$FEED_PID" 2>/dev/null || die "cardwatch feed exited: $(tail -5 "$DIR/feed.log")"
  sleep 0.05
done
curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null || die "cardwatch feed not ready"

# The held clients and the fan-out measurement (asyncio, one process).
cat >"$DIR/holders.py" <<'PY'
import asyncio, json, os, re, socket, statistics, sys, time, urllib.request

repo, port, admin, redis_port, token, n, ctl = sys.argv[1:8]
port, admin, redis_port, n = int(port), int(admin), int(redis_port), int(n)
issuer, prefix = "acme_bank", "cw"


def metric(name, **labels):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def lua():
    src = open(os.path.join(repo, "processor", "rmodel.c")).read()
    m = re.search(r'const char RMODEL_LUA_RECORD_DELIVERY\[\] =\s*((?:"(?:[^"\\]|\\.)*"\s*)+);',
                  src)
    return "".join(bytes(p, "ascii").decode("unicode_escape")
                   for p in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))


def newest():
    s = socket.create_connection(("127.0.0.1", redis_port))
    s.sendall(resp("XREVRANGE", f"{prefix}:feed:{issuer}", "+", "-", "COUNT", 1))
    data = s.recv(65536)
    s.close()
    return re.search(rb"\$\d+\r\n(\d+-\d+)\r\n", data).group(1).decode()


async def poll(after, started, done):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write((f"GET /v1/alerts?after={after}&wait=600 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Authorization: Bearer {token}\r\n\r\n").encode())
    await w.drain()
    started.append(1)
    head = await r.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    body = await r.readexactly(length)
    t = time.monotonic()
    done.append((t, head.split(b" ", 2)[1], json.loads(body)))
    w.close()


async def main():
    after = newest()
    started, done = [], []
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(poll(after, started, done)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)   # let the server accept in batches
    t0 = time.monotonic()
    while metric("cardwatch_feed_waiting_clients", kind="long_poll") != n:
        if time.monotonic() - t0 > 60:
            sys.exit(f"only {metric('cardwatch_feed_waiting_clients', kind='long_poll')} "
                     f"of {n} long polls held after 60 s")
        await asyncio.sleep(0.1)
    assert not done, f"{len(done)} long polls returned early"
    open(ctl + ".held", "w").write(f"{n} held after {after}\n")
    while not os.path.exists(ctl + ".go"):          # the wrk runs happen now
        await asyncio.sleep(0.1)
    held = metric("cardwatch_feed_waiting_clients", kind="long_poll")
    assert not done and held == n, f"during wrk: {len(done)} returned, {held} held"
    # fan-out: store one alert with the ledger's script; the keyspace
    # notice tells when it is in Redis
    sub = socket.create_connection(("127.0.0.1", redis_port))
    sub.sendall(resp("CONFIG", "SET", "notify-keyspace-events", "Kt"))
    sub.recv(100)
    sub.sendall(resp("SUBSCRIBE", f"__keyspace@0__:{prefix}:feed:{issuer}"))
    sub.recv(1000)
    sub.setblocking(False)
    aid = os.urandom(16).hex()
    alert = {"alert_id": aid, "issuer_id": issuer, "txn_id": "bench-fanout",
             "card_fingerprint": "benchfeed:" + "0" * 32, "pan_masked": "400001******0000",
             "event_time_ms": int(time.time() * 1000), "amount_minor": 100,
             "currency": "EUR", "mcc": 5411, "merchant_id": "bench", "merchant_country": "DE",
             "channel": "ecommerce", "severity": "high",
             "hits": [{"rule_id": "exposed-card-use", "severity": "high"}],
             "breaches": [], "mode": "live", "detected_at_ms": int(time.time() * 1000),
             "ruleset_version": "bench"}
    ev = socket.create_connection(("127.0.0.1", redis_port))
    loop = asyncio.get_running_loop()
    t_sent = time.monotonic()
    ev.sendall(resp("EVAL", lua(), 4, f"{prefix}:delivered:{aid}", f"{prefix}:alert:{aid}",
                    f"{prefix}:feed:{issuer}", f"{prefix}:feedstats:{issuer}", 86400, 1000000,
                    0, f"{prefix}:feed", issuer, aid, json.dumps(alert), "high",
                    "exposed-card-use"))
    note = await loop.sock_recv(sub, 1000)
    t_stored = time.monotonic()
    assert b"xadd" in note, note
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    ok = [d for d in done if d[1] == b"200" and [a["alert"]["alert_id"]
                                                 for a in d[2]["alerts"]] == [aid]]
    lat = sorted((t - t_stored) * 1000 for t, _s, _b in done)
    q = statistics.quantiles(lat, n=100)
    print(json.dumps({"held": n, "answered": len(done), "with_the_alert": len(ok),
                      "p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2),
                      "max_ms": round(lat[-1], 2), "min_ms": round(lat[0], 2),
                      "eval_to_stored_ms": round((t_stored - t_sent) * 1000, 2)}))


asyncio.run(main())
PY

python3 "$DIR/holders.py" "$REPO" "$FEED_PORT" "$ADMIN_PORT" "$REDIS_PORT" "$TOK_ACME" \
  "$HOLD" "$DIR/ctl" >"$DIR/fanout.json" 2>"$DIR/holders.log" &
HOLDERS_PID=$!
PIDS+=("$HOLDERS_PID")
for _ in $(seq 1 1200); do
  [[ -e $DIR/ctl.held ]] && break
  kill -0 "$HOLDERS_PID" 2>/dev/null || die "holders failed: $(tail -5 "$DIR/holders.log")"
  sleep 0.1
done
[[ -e $DIR/ctl.held ]] || die "the long polls were not held in time"
say "$(cat "$DIR/ctl.held") (the feed's waiting-clients gauge: $HOLD, none returned)"

# wrk_run NAME URL [TOKEN]: wrk --latency into $DIR/NAME.wrk
wrk_run() {
  local name=$1 url=$2 tok=${3:-}
  local hdr=()
  [[ -n $tok ]] && hdr=(-H "Authorization: Bearer $tok")
  wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s --latency "${hdr[@]}" "$url" >"$DIR/$name.wrk"
}
# wrk_stats NAME -> "rps p50_ms p99_ms non2xx"
wrk_stats() {
  python3 - "$DIR/$1.wrk" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
lat = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)}
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
err = re.search(r"Socket errors:.*", t)
print(f"{rps:.0f} {lat['50']:.2f} {lat['99']:.2f} {bad.group(1) if bad else 0} "
      f"{'errors' if err else 'ok'}")
PY
}

URL_ALERTS="http://127.0.0.1:$FEED_PORT/v1/alerts?limit=100"
URL_BASE="http://127.0.0.1:$ADMIN_PORT/healthz"
say "wrk -t2 -c$CONNS -d${SECS}s on /healthz (baseline) and GET /v1/alerts?limit=100, $HOLD long polls held"
wrk_run base-held "$URL_BASE"
wrk_run alerts-held "$URL_ALERTS" "$TOK_ACME"
# the same with answers under 16 KiB (one write each): shows what the
# answer size alone costs
wrk_run small-held "${URL_ALERTS%=100}=10" "$TOK_ACME"
# the triage page's request: newest first, each item with its outcome
# (one more Redis call per answer)
wrk_run outcome-held "$URL_ALERTS&order=newest&include=outcome" "$TOK_ACME"
touch "$DIR/ctl.go"
wait "$HOLDERS_PID" || die "fan-out failed: $(tail -5 "$DIR/holders.log")"
say "wrk on GET /v1/alerts?limit=100 again, nothing held"
wrk_run alerts-free "$URL_ALERTS" "$TOK_ACME"
kill -0 "$FEED_PID" 2>/dev/null || die "cardwatch feed died: $(tail -5 "$DIR/feed.log")"

read -r b_rps b_p50 b_p99 b_bad b_err < <(wrk_stats base-held)
read -r a_rps a_p50 a_p99 a_bad a_err < <(wrk_stats alerts-held)
read -r f_rps f_p50 f_p99 f_bad f_err < <(wrk_stats alerts-free)
read -r s_rps s_p50 s_p99 s_bad s_err < <(wrk_stats small-held)
read -r o_rps o_p50 o_p99 o_bad o_err < <(wrk_stats outcome-held)
body=$(curl -fs -H "Authorization: Bearer $TOK_ACME" "$URL_ALERTS" | wc -c)
printf '\n%-44s %12s %10s %10s %8s\n' "endpoint (wrk -t2 -c$CONNS, ${SECS}s)" "requests/s" "p50 ms" \
  "p99 ms" "non-2xx"
printf '%-44s %12s %10s %10s %8s\n' "/healthz (baseline, $HOLD polls held)" "$b_rps" "$b_p50" "$b_p99" "$b_bad"
printf '%-44s %12s %10s %10s %8s\n' "GET /v1/alerts?limit=100 ($HOLD polls held)" "$a_rps" "$a_p50" \
  "$a_p99" "$a_bad"
printf '%-44s %12s %10s %10s %8s\n' "GET /v1/alerts?limit=100 (nothing held)" "$f_rps" "$f_p50" \
  "$f_p99" "$f_bad"
printf '%-44s %12s %10s %10s %8s\n' "GET /v1/alerts?limit=10 ($HOLD polls held)" "$s_rps" "$s_p50" \
  "$s_p99" "$s_bad"
printf '%-44s %12s %10s %10s %8s\n' "  limit=100&order=newest&include=outcome" "$o_rps" "$o_p50" \
  "$o_p99" "$o_bad"
python3 - "$a_rps" "$b_rps" "$f_rps" "$body" "$DIR/fanout.json" <<'PY'
import json, sys
a, b, f, body = (float(x) for x in sys.argv[1:5])
d = json.load(open(sys.argv[5]))
print(f"\nratio GET /v1/alerts / baseline: {a / b:.2f} (each answer {body / 1024:.0f} KiB: "
      f"100 alerts; {a * body / 2**20:.0f} MiB/s); with vs without {d['held']} held polls: "
      f"{a / f:.2f}")
print(f"fan-out: one alert stored -> all {d['held']} held long polls answered: "
      f"{d['with_the_alert']} got it; p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, "
      f"max {d['max_ms']} ms after it was stored (EVAL sent -> stored {d['eval_to_stored_ms']} ms)")
PY
if [[ $a_bad != 0 || $b_bad != 0 || $f_bad != 0 || $s_bad != 0 || $o_bad != 0 ||
      $a_err != ok || $b_err != ok || $f_err != ok || $s_err != ok || $o_err != ok ]]; then
  die "wrk saw non-2xx answers or socket errors (see above)"
fi
