#!/usr/bin/env bash
# The local stack: redis-server and Kafka on free loopback ports, in the
# background. Kafka is Apache Kafka by default (scripts/kafka_cluster.py:
# KRaft nodes from the jars scripts/kafka/pom.xml pins, fetched once from
# Maven Central); STACK_KAFKA=embedded starts librdkafka's mock cluster
# (build/embedded_kafka) instead, for machines without Java.
#
#   scripts/stack.sh up DIR       start both (no-op if already up), wait until
#                                 both answer, write DIR/env
#   scripts/stack.sh down DIR     stop both (TERM, bounded wait, then KILL)
#   scripts/stack.sh status DIR   show state; exit 0 only if both are up
#
# DIR holds pid files, logs, Redis's working dir and DIR/env, a shell file:
#   REDIS_HOST=127.0.0.1 REDIS_PORT=... REDIS_URL=redis://127.0.0.1:...
#   KAFKA_BOOTSTRAPS=127.0.0.1:...  KAFKA_KIND=apache|embedded
# and DIR/kafka.bootstraps (the broker list alone).
# Topics: cardwatch.transactions:16 (STACK_TXN_PARTITIONS) and
# cardwatch.deadletter:4, plus STACK_TOPICS="name:partitions ...". Apache
# Kafka creates no other topic (auto-creation is off, as in production);
# the embedded one auto-creates unknown topics with 4 partitions and keeps
# only ~5 MiB per partition.
# Environment: STACK_KAFKA (apache|embedded), STACK_KAFKA_NODES (Apache
# Kafka nodes, default 1; 3 gives replication factor 3 and
# min.insync.replicas 2), BUILD (default build; build/kafka_admin creates the
# topics) or EMBEDDED_KAFKA (path of the mock's binary), STACK_TIMEOUT
# (seconds to wait for start and for stop, default 15; Apache Kafka gets
# at least 90 to start).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD="$REPO/$BUILD"
EMBEDDED_KAFKA=${EMBEDDED_KAFKA:-$BUILD/embedded_kafka}
TIMEOUT=${STACK_TIMEOUT:-15}
KIND=${STACK_KAFKA:-apache}
NODES=${STACK_KAFKA_NODES:-1}
[[ $KIND == apache || $KIND == embedded ]] ||
  { echo "stack: STACK_KAFKA=$KIND: want apache or embedded" >&2; exit 2; }
KCLUSTER=(python3 "$REPO/scripts/kafka_cluster.py")
TOPICS=("cardwatch.transactions:${STACK_TXN_PARTITIONS:-16}" cardwatch.deadletter:4)
# shellcheck disable=SC2206 # word splitting intended
TOPICS+=(${STACK_TOPICS:-})

say() { echo "stack: $*"; }
die() { echo "stack: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 up|down|status DIR" >&2
  exit 2
}

# running PID: the process exists and is not a zombie (our daemons are
# reparented to PID 1, which may reap them only seconds later).
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# alive PIDFILE PROGRAM: the pid in PIDFILE runs PROGRAM (guards against a
# stale pid file whose pid was reused by something else).
alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# now_ms: monotonic-enough wall clock in ms for bounded polls
now_ms() { date +%s%3N; }

# stop_one NAME PIDFILE PROGRAM
stop_one() {
  local name=$1 pidfile=$2 prog=$3 pid deadline
  if ! alive "$pidfile" "$prog"; then
    [[ -e $pidfile ]] && say "$name was not running (stale pid file removed)"
    rm -f "$pidfile"
    return 0
  fi
  pid=$(cat "$pidfile")
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
  while running "$pid" && (( $(now_ms) < deadline )); do
    sleep 0.05
  done
  if running "$pid"; then
    say "$name (pid $pid) did not stop within ${TIMEOUT}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "stopped $name (pid $pid)"
}

# kafka_up DIR: whichever Kafka runs in DIR answers
kafka_up() {
  if compgen -G "$1/kafka-*.pid" >/dev/null; then
    "${KCLUSTER[@]}" status "$1" >/dev/null
  else
    alive "$1/kafka.pid" embedded_kafka
  fi
}

do_down() {
  local dir=$1
  stop_one "embedded Kafka" "$dir/kafka.pid" embedded_kafka
  if compgen -G "$dir/kafka-*.pid" >/dev/null; then
    BUILD="$BUILD" "${KCLUSTER[@]}" down "$dir" --timeout "$TIMEOUT" 2>&1 | sed 's/^kafka: /stack: /'
  fi
  stop_one "redis-server" "$dir/redis.pid" redis-server
  rm -f "$dir/env" "$dir/kafka.bootstraps"
}

start_redis() {
  local dir=$1 port attempt
  mkdir -p "$dir/redis"
  for attempt in 1 2 3; do
    port=$(free_port)
    setsid redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$dir/redis" --daemonize no --logfile "$dir/redis.log" \
      </dev/null >>"$dir/redis.out" 2>&1 &
    echo $! >"$dir/redis.pid"
    local deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
    while (( $(now_ms) < deadline )); do
      if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
        REDIS_PORT=$port
        return 0
      fi
      alive "$dir/redis.pid" redis-server || break
      sleep 0.05
    done
    if alive "$dir/redis.pid" redis-server; then
      stop_one redis-server "$dir/redis.pid" redis-server
      echo "stack: redis-server did not answer PING within ${TIMEOUT}s" >&2
      return 1
    fi
    if grep -q "Address already in use" "$dir/redis.log" 2>/dev/null && (( attempt < 3 )); then
      say "port $port was taken, retrying"
      continue
    fi
    echo "stack: redis-server failed to start; last lines of $dir/redis.log:" >&2
    tail -n 5 "$dir/redis.log" >&2 || true
    return 1
  done
  return 1
}

start_apache_kafka() {
  local dir=$1 args=() t
  for t in "${TOPICS[@]}"; do args+=(--topic "$t"); done
  [[ -x $BUILD/kafka_admin ]] || {
    echo "stack: $BUILD/kafka_admin not found: build it first (make $BUILD/kafka_admin)" >&2
    return 1
  }
  KAFKA_BOOTSTRAPS=$(BUILD="$BUILD" "${KCLUSTER[@]}" up "$dir" --nodes "$NODES" \
    --timeout $(( TIMEOUT > 90 ? TIMEOUT : 90 )) "${args[@]}" 2> >(sed 's/^kafka: /stack: /' >&2)) ||
    return 1
}

start_kafka() {
  [[ $KIND == apache ]] && { start_apache_kafka "$@"; return; }
  local dir=$1 args=() t
  [[ -x $EMBEDDED_KAFKA ]] || {
    echo "stack: $EMBEDDED_KAFKA not found: build it first (make $EMBEDDED_KAFKA)" >&2
    return 1
  }
  for t in "${TOPICS[@]}"; do args+=(--topic "$t"); done
  rm -f "$dir/kafka.bootstraps"
  setsid "$EMBEDDED_KAFKA" "${args[@]}" --bootstraps-file "$dir/kafka.bootstraps" \
    </dev/null >"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  local deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
  while (( $(now_ms) < deadline )); do
    if [[ -s $dir/kafka.bootstraps ]]; then
      KAFKA_BOOTSTRAPS=$(cat "$dir/kafka.bootstraps")
      # It answers metadata requests (lists topics; creates nothing).
      if command -v kcat >/dev/null; then
        if kcat -L -b "$KAFKA_BOOTSTRAPS" -m 5 >/dev/null 2>&1; then return 0; fi
      else
        return 0
      fi
    fi
    if ! alive "$dir/kafka.pid" embedded_kafka; then
      echo "stack: embedded Kafka exited; $dir/kafka.log says:" >&2
      tail -n 5 "$dir/kafka.log" >&2 || true
      return 1
    fi
    sleep 0.05
  done
  echo "stack: embedded Kafka did not come up within ${TIMEOUT}s" >&2
  return 1
}

do_up() {
  local dir=$1
  if alive "$dir/redis.pid" redis-server && kafka_up "$dir" && [[ -s $dir/env ]] &&
     grep -q "^KAFKA_KIND=$KIND\$" "$dir/env"; then
    say "already up in $dir"
    cat "$dir/env"
    return 0
  fi
  if alive "$dir/redis.pid" redis-server || kafka_up "$dir"; then
    say "partially up (or another Kafka) in $dir: restarting both"
    do_down "$dir"
  fi
  rm -f "$dir/env"
  start_redis "$dir" || { do_down "$dir" >/dev/null; die "start failed"; }
  start_kafka "$dir" || { do_down "$dir" >/dev/null; die "start failed"; }
  cat >"$dir/env.tmp" <<EOF
REDIS_HOST=127.0.0.1
REDIS_PORT=$REDIS_PORT
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
KAFKA_BOOTSTRAPS=$KAFKA_BOOTSTRAPS
KAFKA_KIND=$KIND
EOF
  mv "$dir/env.tmp" "$dir/env"
  local what
  if [[ $KIND == apache ]]; then
    what="Apache Kafka ($NODES node(s))"
  else
    what="embedded Kafka pid $(cat "$dir/kafka.pid")"
  fi
  say "up in $dir: redis-server pid $(cat "$dir/redis.pid") on 127.0.0.1:$REDIS_PORT," \
      "$what at $KAFKA_BOOTSTRAPS (topics: ${TOPICS[*]})"
  cat "$dir/env"
}

do_status() {
  local dir=$1 rc=0
  if alive "$dir/redis.pid" redis-server; then
    say "redis-server up (pid $(cat "$dir/redis.pid"))"
  else
    say "redis-server down"; rc=3
  fi
  if compgen -G "$dir/kafka-*.pid" >/dev/null; then
    "${KCLUSTER[@]}" status "$dir" | sed 's/^/stack: Apache Kafka /' || rc=3
  elif alive "$dir/kafka.pid" embedded_kafka; then
    say "embedded Kafka up (pid $(cat "$dir/kafka.pid"))"
  else
    say "Kafka down"; rc=3
  fi
  [[ -s $dir/env ]] && cat "$dir/env"
  return $rc
}

[[ $# -eq 2 ]] || usage
cmd=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
case $cmd in
  up) do_up "$DIR" ;;
  down)
    if [[ ! -e $DIR/redis.pid && ! -e $DIR/kafka.pid ]] &&
       ! compgen -G "$DIR/kafka-*.pid" >/dev/null; then
      say "nothing running in $DIR"
      rm -f "$DIR/env"
    else
      do_down "$DIR"
    fi
    ;;
  status) do_status "$DIR" ;;
  *) usage ;;
esac
