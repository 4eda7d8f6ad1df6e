# bench_lib.sh - what the benchmark scripts share (sourced, not run).

# free_port: a free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_ini FILE BROKERS_FILE TOPIC REDIS_PORT KEY_FILE: the benches'
# configuration: Kafka from the stack's bootstrap file, Redis on the
# stack's port, the bench key, no HTTP, the two issuers the generator
# knows. Callers append their own sections.
bench_ini() {
  cat >"$1" <<INI
[kafka]
brokers_file = $2
transactions_topic = $3
session_timeout_ms = 6000
[redis]
address = 127.0.0.1:$4
[card]
key_file = $5
[http]
listen =
[issuer acme_bank]
home_country = DE
bins = 400000-400099
[issuer globex_bank]
home_country = FR
bins = 510000-510049
INI
}

# relay_baseline BUILD BROKERS TOPIC ALERT_TOPIC RELAY_TOPIC [EXPOSED_RATE]:
# the Kafka half of an alert path, alone: build/plain_consumer reads TOPIC
# and produces, for every event, one record of ALERT_TOPIC's mean message
# size to RELAY_TOPIC with cardwatch's alert producer settings (no Redis,
# no rules), timed until every record is acknowledged. Its rate is the
# most events/s that this broker and client take when each event raises
# an alert: a ceiling for the exposed-heavy rows. Prints one line (with
# EXPOSED_RATE, cardwatch's exposed events/s, and their ratio).
relay_baseline() {
  local a r
  a=$("$1/plain_consumer" --brokers "$2" --topic "$4")
  local size
  size=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(max(1, d["bytes"] // max(1, d["messages"])))' "$a")
  r=$("$1/plain_consumer" --brokers "$2" --topic "$3" --relay-topic "$5" --relay-bytes "$size")
  python3 - "$r" "$size" "${6:-0}" <<'PY'
import json, sys
d, size, ex = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
line = (f"{'  baseline: Kafka alone, each event relayed':<44} {d['rate']:>10,.0f} events/s  "
        f"({d['relayed']:,} records of {size} B, the alerts' mean size, acknowledged)")
if ex > 0:
    line += f"; cardwatch's exposed events/s {ex / d['rate']:.2f} of it"
print(line)
PY
}
