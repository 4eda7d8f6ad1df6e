"""The in-process exposure filter keeps clean cards away from Redis and
never hides an exposed card - against a real redis-server and Apache Kafka.

`cardwatch run` builds a binary fuse filter of every card fingerprint in
Redis once the exposed-card set passed its check, and then asks Redis only
for the cards the filter cannot rule out. The filter belongs to the set's
marker: a load, unload or confirm commits a new one, and until the filter
of the new marker is built every card goes to Redis again (each lookup
reads the marker with the cards, so a lookup that meets a newer marker is
sent again whole). These tests check both halves: the candidate rate on
clean traffic (metrics), and the exact alerts across a load and an unload
made while events flow."""

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker


def _stream(seed, n, prefix, exposed, clean, share=0.05):
    return cw.stream(seed, n, prefix, exposed, clean, base_day="2024-04-10",
                     share=share, days=10)


def _filter_current(s, cards):
    def check():
        m = s.metrics()
        return (m.get("cardwatch_exposure_filter_current") == 1 and
                m.get("cardwatch_exposure_filter_cards") == cards) and m
    return h.wait_until(check, 60, f"a current filter of {cards} cards")


def _processed(s, n):
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") == n, 90,
                 f"{n} events processed")


def test_filter_answers_clean_cards_and_never_hides_an_exposed_one():
    issuers = cw.three_issuers()
    mk = CardMaker(1414)
    a_cards = mk.cards(["400001", "510000", "52000042"], 300)
    b_cards = mk.cards(["400077", "510000"], 200) + a_cards[:20]
    clean = mk.cards(["400002", "400090", "510000", "52000007"], 3000)
    a = Breach("flt-a", "2024-03-01", "2024-05-31", ["pan", "expiry", "cvv2"], a_cards)
    b = Breach("flt-b", "2024-03-15", "2024-05-31", ["pan"], b_cards)

    s = cw.Stack(issuers, partitions=2)
    s.load(a)
    proc = s.run()
    h.wait_until(lambda: s.ready()[0] == 200, 60, "/readyz 200")
    _filter_current(s, len(a_cards))

    # 1. clean traffic is answered in process: Redis sees the exposed
    # cards' events and the filter's false positives (about 1 in 256)
    part1 = _stream(1, 6000, "f1", a_cards, clean)
    n_exposed = sum(1 for t in part1 if t["pan"] in set(a_cards))
    n_clean = len(part1) - n_exposed
    s.send(part1, name="part1")
    _processed(s, len(part1))
    m = s.metrics()
    asked = m.get("cardwatch_exposure_cards_total")
    sent = m.get("cardwatch_exposure_candidates_total")
    assert asked == len(part1), (asked, len(part1))
    assert n_exposed <= sent <= n_exposed + 0.02 * n_clean, (sent, n_exposed, n_clean)
    print(f"figure: {len(part1)} events ({n_exposed} on exposed cards): {int(sent)} cards "
          f"asked of Redis, {int(sent) - n_exposed} false positives of {n_clean} clean "
          f"({100.0 * (sent - n_exposed) / n_clean:.2f} %)")
    assert m.get("cardwatch_exposure_filter_bytes") <= 2 * len(a_cards) + 256
    gen = s.redis.call("GET", "cw:exposed").decode()
    assert f'cardwatch_exposure_filter_info{{generation="{gen}"}} 1' in \
        h.http_get(s.url + "/metrics")[1], "the filter's generation is the set's marker"

    # 2. a breach loaded while the service runs: events on its cards sent
    # right after the commit alert, although the filter was built without
    # them (it is stale from the commit on, so every card goes to Redis)
    s.load(b)
    part2 = _stream(2, 3000, "f2", b_cards, clean, share=0.2)
    s.send(part2, name="part2")
    _processed(s, len(part1) + len(part2))
    _filter_current(s, len(set(a_cards) | set(b_cards)))

    # 3. a breach unloaded: its own cards no longer alert, b's still do
    out = s.cardwatch("unload", "flt-a").stdout.decode()
    assert f"{len(a_cards)} cards removed" in out, out
    _filter_current(s, len(b_cards))
    part3 = _stream(3, 2000, "f3", a_cards + b_cards, clean, share=0.3)
    s.send(part3, name="part3")
    _processed(s, len(part1) + len(part2) + len(part3))
    s.terminate(proc)

    log = open(proc.log, errors="replace").read()
    assert f"exposure filter built: {len(a_cards)} cards" in log, log[-3000:]
    expected = {**cw.expected_alerts(part1, [a], issuers),
                **cw.expected_alerts(part2, [a, b], issuers),
                **cw.expected_alerts(part3, [b], issuers)}
    assert any(t["pan"] in set(b_cards) - set(a_cards) for t in part2)
    cw.check_alerts(s.alerts(), expected, exact_once=True)


def _paused_with(s, words):
    """/readyz 503 whose body has every word; returns the body."""
    def check():
        st, body = s.ready()
        return st == 503 and all(w in body for w in words) and body
    return h.wait_until(check, 30, f"/readyz 503 naming {words}")


def _log_has(proc, text):
    return h.wait_until(lambda: text in open(proc.log, errors="replace").read(), 30,
                        f"the log saying {text!r}")


def test_a_refused_filter_build_or_set_check_never_makes_an_exposed_card_clean():
    """Faults of the filter build and of the guard's check, injected into
    a real redis-server through the ACL of the service user and
    hand-written keys: a build Redis refuses leaves the filter not current
    (every card goes to Redis: the new breach's cards alert) until the
    next approval builds it; a check Redis refuses or whose data it cannot
    trust pauses intake with the reason on /readyz, and resumes once the
    fault is lifted; no exposed card is ever answered clean."""
    from test_redis_security import _acl_redis, _secret_file, USER
    issuers = cw.three_issuers()
    mk = CardMaker(1515)
    a_cards = mk.cards(["400001", "510000"], 200)
    b_cards = mk.cards(["400077", "52000042"], 100)
    clean = mk.cards(["400002", "400090", "510000"], 600)
    a = Breach("fg-a", "2024-03-01", "2024-05-31", ["pan", "expiry"], a_cards)
    b = Breach("fg-b", "2024-03-15", "2024-05-31", ["pan"], b_cards)
    pw = _secret_file("filter-fault-pw")
    s = cw.Stack(issuers, partitions=1, redis=_acl_redis("filter-fault-pw"),
                 redis_ini=f"username = {USER}\npassword_file = {pw}\n")
    s.load(a)
    proc = s.run()
    h.wait_until(lambda: s.ready()[0] == 200, 60, "/readyz 200")
    _filter_current(s, len(a_cards))
    marker = lambda: s.redis.call("GET", "cw:exposed").decode()  # noqa: E731
    gen_a = marker()

    # 1. the build's read refused (HKEYS, which only the build uses): said
    # once, the filter stays not current, every card goes to Redis and
    # the new breach's cards alert
    s.redis.call("ACL", "SETUSER", USER, "-hkeys")
    s.load(b)
    _log_has(proc, "exposure filter: reading the cards answered")
    part1 = _stream(4, 1500, "g1", b_cards + a_cards, clean, share=0.2)
    s.send(part1, name="part1")
    _processed(s, len(part1))
    m = s.metrics()
    assert m.get("cardwatch_exposure_filter_current") == 0
    assert m.get("cardwatch_exposure_filter_cards") == len(a_cards), "the old filter"
    assert m.get("cardwatch_exposure_candidates_total") == \
        m.get("cardwatch_exposure_cards_total") == len(part1), "every card asked of Redis"
    assert f'generation="{gen_a}"' in h.http_get(s.url + "/metrics")[1]
    assert s.ready()[0] == 200, "a filter not built does not stop lookups"
    # lifted: nothing happens until the next approval (a new marker here)
    s.redis.call("ACL", "SETUSER", USER, "+hkeys")
    s.redis.call("SET", "cw:exposed", "fg-after-hkeys")
    _filter_current(s, len(a_cards) + len(b_cards))
    assert 'generation="fg-after-hkeys"' in h.http_get(s.url + "/metrics")[1]

    # 2. the guard's presence count refused (HLEN): intake pauses with
    # the reason; events sent meanwhile wait and alert once it is lifted
    s.redis.call("ACL", "SETUSER", USER, "-hlen")
    s.redis.call("SET", "cw:exposed", "fg-no-hlen")
    _paused_with(s, [f"cannot count the exposed cards in Redis 127.0.0.1:{s.redis.port}",
                     "intake paused"])
    m = s.metrics()
    assert m.get("cardwatch_exposed_set_ok") == 0 and m.get("cardwatch_consumption_paused") == 1
    part2 = _stream(5, 400, "g2", b_cards + a_cards, clean, share=0.3)
    s.send(part2, name="part2")
    s.redis.call("ACL", "SETUSER", USER, "+hlen")
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200 once HLEN is allowed")
    _processed(s, len(part1) + len(part2))

    # 3. a layout this version does not read; a committed breach whose
    # recorded count is not what its cards say: paused, named, resumed
    lkey = f"cw:layout:{cw.KEY_ID}"
    s.redis.call("HSET", lkey, "version", "9")
    s.redis.call("SET", "cw:exposed", "fg-layout-9")
    _paused_with(s, ["exposed cards in data layout 9", "run the cardwatch that wrote it",
                     "intake paused"])
    s.redis.call("HSET", lkey, "version", "2")
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200 with layout 2 again")
    s.redis.call("HSET", "cw:breach:fg-b", "cards", str(len(b_cards) + 1))
    s.redis.call("SET", "cw:exposed", "fg-bad-count")
    _paused_with(s, ["fg-b", "load it again", "intake paused"])
    s.redis.call("HSET", "cw:breach:fg-b", "cards", str(len(b_cards)))
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200 with the count restored")

    # 4. breaches the check leaves out: one staged (status loading), one
    # whose members field is not a number (its entry comes back short)
    s.redis.call("SADD", "cw:breaches", "fg-ghost")
    s.redis.call("HSET", "cw:breach:fg-ghost", "status", "loading", "members", "0")
    s.redis.call("SET", "cw:exposed", "fg-ghost-staged")
    _log_has(proc, f"checked: 2 breaches, {len(a_cards) + len(b_cards)} cards "
             "(generation fg-ghost-staged)")
    s.redis.call("HSET", "cw:breach:fg-ghost", "status", "committed", "members", "x")
    s.redis.call("SET", "cw:exposed", "fg-ghost-short")
    _log_has(proc, f"checked: 2 breaches, {len(a_cards) + len(b_cards)} cards "
             "(generation fg-ghost-short)")
    s.redis.call("SREM", "cw:breaches", "fg-ghost")
    s.redis.call("DEL", "cw:breach:fg-ghost")

    # the filter of the last marker, and every alert exactly once
    s.redis.call("SET", "cw:exposed", "fg-final")
    _filter_current(s, len(a_cards) + len(b_cards))
    part3 = _stream(6, 1000, "g3", b_cards + a_cards, clean, share=0.2)
    s.send(part3, name="part3")
    _processed(s, len(part1) + len(part2) + len(part3))
    s.terminate(proc)
    log = open(proc.log, errors="replace").read()
    assert log.count("exposure filter: reading the cards answered") == 1, log[-3000:]
    expected = cw.expected_alerts(part1 + part2 + part3, [a, b], issuers)
    assert any(t["pan"] in set(b_cards) for t in part1)
    cw.check_alerts(s.alerts(), expected, exact_once=True)


class _HoldingProxy:
    """A TCP proxy in front of Redis that, once armed, holds the first
    client->server chunk holding `pattern` (and everything after it on
    that connection) until released."""

    def __init__(self, port, pattern):
        import socket
        import threading
        self.port, self.pattern = port, pattern
        self.armed, self.held, self.go = (threading.Event() for _ in range(3))
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.listen_port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, upstream):
        tail = b""  # the end of the previous chunk: a pattern split by recv
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if upstream and self.armed.is_set() and self.pattern in tail + data:
                    self.armed.clear()
                    self.held.set()
                    self.go.wait(30)
                tail = data[-(len(self.pattern) - 1):] if len(self.pattern) > 1 else b""
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def close(self):
        self.go.set()
        self.srv.close()


def test_a_load_committed_while_the_filter_build_reads_is_never_answered_clean():
    """A build reads the buckets 1024 at a time, each read with the marker:
    a load that commits between two reads (the second read held by a
    proxy in front of Redis while the load runs) drops that build - no
    filter of the old marker is made - and the next approval builds the
    filter of the new marker. Every event on the new breach's cards,
    sent while the build was held, alerts."""
    issuers = cw.three_issuers()
    mk = CardMaker(1616)
    big = mk.cards(["400001", "510000", "52000042"], 45_000)  # > 1024 buckets
    new = mk.cards(["400077", "510000"], 60)
    clean = mk.cards(["400002", "510000"], 500)
    a = Breach("fb-big", "2024-03-01", "2024-05-31", ["pan"], big)
    b = Breach("fb-new", "2024-03-15", "2024-05-31", ["pan", "expiry"], new)
    s = cw.Stack(issuers, partitions=1, redis_ini="timeout_ms = 20000\n")
    # the second read of a build: first bucket 1024, fingerprints wanted
    proxy = _HoldingProxy(s.redis.port, b"\r\n$4\r\n1024\r\n$4\r\n1024\r\n$4\r\nkeys\r\n")
    s.config.write_text(s.config.read_text().replace(
        f"address = 127.0.0.1:{s.redis.port}\n", f"address = 127.0.0.1:{proxy.listen_port}\n"))
    try:
        s.load(a)
        proc = s.run()
        _filter_current(s, len(big))
        assert int(s.redis.call("HGET", f"cw:layout:{cw.KEY_ID}", "split")) + \
            2 ** int(s.redis.call("HGET", f"cw:layout:{cw.KEY_ID}", "level")) > 1024
        proxy.armed.set()
        s.redis.call("SET", "cw:exposed", "fb-held")   # approved, then built
        h.wait_until(proxy.held.is_set, 30, "the build's second read held")
        s.load(b)                                      # commits a new marker
        gen_b = s.redis.call("GET", "cw:exposed").decode()
        assert gen_b != "fb-held"
        txns = _stream(7, 600, "fb", new, clean, share=0.3)
        s.send(txns, name="while-held")
        proxy.go.set()
        _filter_current(s, len(big) + len(new))
        assert f'generation="{gen_b}"' in h.http_get(s.url + "/metrics")[1]
        _processed(s, len(txns))
        s.terminate(proc)
    finally:
        proxy.close()
    log = open(proc.log, errors="replace").read()
    assert "checked: 1 breaches, %d cards (generation fb-held)" % len(big) in log
    assert not [ln for ln in log.splitlines() if "filter built" in ln and "fb-held" in ln], \
        "a filter of the dropped build"
    assert f"exposure filter built: {len(big) + len(new)} cards" in log, log[-3000:]
    cw.check_alerts(s.alerts(), cw.expected_alerts(txns, [a, b], issuers), exact_once=True)
