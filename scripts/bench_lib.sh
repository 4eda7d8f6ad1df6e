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
