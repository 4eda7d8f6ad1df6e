"""The exposed-card set is never silently empty, and a load is all or
nothing - against a real redis-server and Apache Kafka.

A Redis that lost its data (FLUSHALL, a restart without persistence) must
not make exposed cards look clean: intake pauses with the reason on /readyz,
a metric and an ERROR line; nothing past the last correct event is taken
as done; once the breach is loaded again every alert of the paused events
is delivered. A load that is interrupted (SIGTERM) or refused (Redis out of
memory) leaves its breach invisible and says so; running it again finishes
it."""

import json
import random

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn


_stream = cw.stream


def _members(s, breach):
    """The breach's cards in Redis so far: its members count (the cards
    whose record names it)."""
    return int(s.redis.call("HGET", f"cw:breach:{breach}", "members") or 0)


def _paused_with(s, words):
    """/readyz 503 whose body has every word; returns the body."""
    def check():
        st, body = s.ready()
        return st == 503 and all(w in body for w in words) and body
    return h.wait_until(check, 30, f"/readyz 503 naming {words}")


def _phase(s, proc, name, empty_redis, txns, all_txns, b1, issuers, mid_stream):
    """Empty Redis (how: empty_redis()) - in the middle of sending txns when
    mid_stream, else before - check the pause, reload, check every alert.
    Returns (readyz body, events not done when paused, alerts of txns)."""
    done0 = s.metrics().sum("cardwatch_events_total")
    # Mid-stream: the first two thirds are flowing when Redis is emptied
    # (lookups in flight meet the missing marker: how many depends on the
    # timing); the last third is sent once the pause is visible, so some
    # events always wait.
    first, rest = (txns[:2 * len(txns) // 3], txns[2 * len(txns) // 3:]) \
        if mid_stream else ([], txns)
    if first:
        sender = s.send_async(first, name=name + "-1")
        h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") > done0 + 200, 60,
                     "the stream flowing", interval=0.005)
    empty_redis()
    body = _paused_with(s, ["exposed-card set is gone", "intake paused"])
    if first:
        h.wait_until(lambda: not sender.alive, 60, "cardwatch send done")
        assert sender.returncode == 0, sender.log_text(20)
    s.send(rest, name=name + "-2")

    # (The proof that nothing was taken as clean is the alert count after
    # the reload, below; the lag while paused is
    # test_lag_keeps_counting_while_intake_is_paused's.)
    m = s.metrics()
    assert m.get("cardwatch_exposed_set_ok") == 0
    assert m.get("cardwatch_consumption_paused") == 1
    assert m.get("cardwatch_ready") == 0
    done_paused = m.sum("cardwatch_events_total") - done0
    assert done_paused <= len(first), "an event sent after the pause finished"
    assert proc.alive
    s.load(b1)

    def resumed():
        mm = s.metrics()
        return (s.ready()[0] == 200 and
                mm.sum("cardwatch_events_total") == done0 + len(txns)) and mm
    m = h.wait_until(resumed, 60, f"/readyz 200 and {len(txns)} more events processed")
    assert m.get("cardwatch_exposed_set_ok") == 1
    expected = cw.expected_alerts(all_txns, [b1], issuers)
    assert m.sum("cardwatch_alerts_total") == len(expected), \
        (m.sum("cardwatch_alerts_total"), len(expected))
    return body, int(len(txns) - done_paused), len(cw.expected_alerts(txns, [b1], issuers))


def test_emptied_redis_pauses_intake_until_the_set_is_back():
    issuers = cw.three_issuers()
    mk = CardMaker(1010)
    exposed = mk.cards(["400001", "400077", "510000", "52000042"], 120)
    clean = mk.cards(["400002", "400090", "510000", "52000007"], 1500)
    b1 = Breach("guard-b1", "2024-03-01", "2024-05-31", ["pan", "expiry", "cvv2"], exposed)
    part_a = _stream(1, 3000, "ga", exposed, clean)
    part_b = _stream(2, 3000, "gb", exposed, clean)
    part_c = _stream(3, 3000, "gc", exposed, clean)

    s = cw.Stack(issuers, partitions=4)
    # no set yet: intake waits, and says what to do
    proc = s.run()
    body = _paused_with(s, ["exposed-card set is gone", "cardwatch load"])
    assert "Redis 127.0.0.1:%d" % s.redis.port in body, body
    s.load(b1)
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200 after the load")
    s.send(part_a, name="part-a")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") == len(part_a), 60,
                 "part A processed")
    assert s.metrics().get("cardwatch_exposed_cards") == len(exposed)

    # FLUSHALL: what an eviction, a wrong script or an operator's slip does
    body1, paused1, alerts1 = _phase(
        s, proc, "part-b", lambda: s.redis.call("FLUSHALL"), part_b,
        part_a + part_b, b1, issuers, mid_stream=True)
    # a restart without persistence
    body2, paused2, alerts2 = _phase(
        s, proc, "part-c", lambda: s.redis.restart(keep_data=False), part_c,
        part_a + part_b + part_c, b1, issuers, mid_stream=False)
    print(f"figure: FLUSHALL mid-stream: {paused1} events held, {alerts1} alerts of that "
          f"paused stream delivered after the reload; restart without data: {paused2} "
          f"paused, {alerts2} delivered")

    # a set that lost some cards (a partial copy: their records gone from
    # the buckets, every count as it was): named, with the counts
    for p in random.Random(1010).sample(exposed, 5):
        assert cw.delete_card_record(s.redis, p) is not None
    s.redis.call("SET", "cw:exposed", "moved-by-the-test")  # checked at once
    _paused_with(s, [f"holds {len(exposed) - 5} of the {len(exposed)} cards committed",
                     "load the breaches again", "intake paused"])
    s.load(b1)
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200 after the reload")

    # an evicting Redis is refused too (it could drop exposed cards one by one)
    s.redis.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    # a marker change makes every instance check at once (a config change
    # alone is seen at the next periodic check, within 30 s)
    s.redis.call("DEL", "cw:exposed")
    _paused_with(s, ["maxmemory-policy allkeys-lru", "noeviction"])
    s.redis.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
    out = s.cardwatch("breaches", "--confirm").stdout.decode()
    assert "1 breaches, %d cards" % len(exposed) in out, out
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200 after --confirm")

    s.terminate(proc)
    log = open(proc.log, errors="replace").read()
    assert "ERROR" in log and "exposed-card set is gone" in log, log[-3000:]
    # the ERROR line names what was lost: the breach and its card count
    assert f"holding guard-b1 {len(exposed)} cards" in log, log[-3000:]
    expected = cw.expected_alerts(part_a + part_b + part_c, [b1], issuers)
    cw.check_alerts(s.alerts(), expected, exact_once=True)


def test_interrupted_or_refused_load_is_invisible_and_a_rerun_finishes_it():
    issuers = cw.three_issuers()
    mk = CardMaker(2020)
    small = mk.cards(["400001", "510000"], 40)
    b1 = Breach("small", "2024-03-01", "2024-05-31", ["pan"], small)
    big_cards = mk.cards(["400077", "52000042"], 60_000)
    big = Breach("big", "2024-03-01", "2024-05-31", ["pan"], big_cards)
    clean = mk.cards(["400002", "510000"], 500)

    s = cw.Stack(issuers, partitions=2)
    s.load(b1)
    proc = s.run()
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200")

    # SIGTERM in the middle of a load
    csv = s.dir / "big.csv"
    csv.write_text("pan\n" + "".join(p + "\n" for p in big_cards))
    load = h.spawn([h.tool("cardwatch"), "load", "--config", s.config, "--breach", "big",
                    "--window-start", "2024-03-01", "--window-end", "2024-05-31",
                    "--elements", "pan", csv], name="load-big")
    h.wait_until(lambda: _members(s, "big") > 0, 30,
                 "the load under way")
    rc = load.stop(sig=__import__("signal").SIGTERM)
    out = open(load.log, errors="replace").read()
    assert rc == 143, (rc, out[-2000:])
    assert "load of breach big interrupted by SIGTERM after" in out, out[-2000:]
    assert "none of it is visible" in out and "run the same load again" in out, out[-2000:]
    staged = _members(s, "big")
    assert 0 < staged < len(big_cards), staged
    res = s.cardwatch("breaches", "--json")
    rows = {r["breach_id"]: r for r in map(json.loads, res.stdout.decode().splitlines())}
    assert rows["big"]["status"] == "loading" and rows["small"]["status"] == "committed", rows
    assert b"not complete" in res.stderr, res.stderr
    table = s.cardwatch("breaches").stdout.decode()
    assert "LOADING (not monitored)" in table, table

    # a staged card is not exposed yet: only the committed breach alerts
    staged_cards = [p for p in big_cards[:2000]
                    if cw.card_record(s.redis, p) is not None]
    assert staged_cards, "the first cards of the list were staged"
    first = [txn(f"st-{i:04d}", p, cw.day_ms("2024-04-02") + i, random.Random(i))
             for i, p in enumerate(staged_cards[:50] + small[:10] + clean[:40])]
    s.send(first, name="while-staged")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") == len(first), 60,
                 "events during the staged load processed")
    assert s.metrics().sum("cardwatch_alerts_total") == \
        len(cw.expected_alerts(first, [b1], issuers))

    # Redis out of memory in the middle of the rerun: refused, still invisible
    # (room for less than half the cards still to load, at ~40 bytes each)
    assert (len(big_cards) - staged) * 40 > 2 * 500_000, "test data: the rerun must not fit"
    used = int(s.redis.call("INFO", "memory").decode().split("used_memory:")[1].split()[0])
    s.redis.call("CONFIG", "SET", "maxmemory", str(used + 500_000))
    res = s.cardwatch("load", "--breach", "big", "--window-start", "2024-03-01",
                      "--window-end", "2024-05-31", "--elements", "pan", csv, check=False)
    err = res.stderr.decode()
    assert res.returncode == 1, err[-2000:]
    assert "OOM" in err and "load of breach big stopped after" in err, err[-2000:]
    assert "none of it is visible" in err, err[-2000:]
    assert s.redis.call("HGET", "cw:breach:big", "status") == b"loading"

    # room again: the rerun finishes and commits; the cards alert at once
    s.redis.call("CONFIG", "SET", "maxmemory", "0")
    s.load(big)
    assert s.redis.call("HGET", "cw:breach:big", "status") == b"committed"
    assert int(s.redis.call("HGET", "cw:breach:big", "cards")) == len(big_cards)
    second = [txn(f"nd-{i:04d}", p, cw.day_ms("2024-04-03") + i, random.Random(i))
              for i, p in enumerate(big_cards[-30:] + small[:5])]
    s.send(second, name="after-commit")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") ==
                 len(first) + len(second), 60, "events after the commit processed")
    s.terminate(proc)
    expected = {**cw.expected_alerts(first, [b1], issuers),
                **cw.expected_alerts(second, [b1, big], issuers)}
    cw.check_alerts(s.alerts(), expected, exact_once=True)


def test_feed_is_not_ready_over_an_emptied_redis():
    """The issuer feed serves what Redis holds: over an emptied Redis it
    would answer "no alerts" with every light green. It is not ready
    while the set is gone, and says why."""
    class TokenIssuer(cw.Issuer):       # the feed wants a token to serve
        def ini(self):
            return super().ini() + "token_sha256 = %s\n" % ("ab" * 32)
    issuers = [TokenIssuer("alpha", "GB", ["400000-400099"])]
    s = cw.Stack(issuers,
                 extra_ini=f"\n[feed]\nlisten = 127.0.0.1:{h.free_port()}\n")
    feed = h.spawn([h.tool("cardwatch"), "feed", "--config", s.config],
                   name="cardwatch-feed")
    body = _paused_with(s, ["exposed-card set is gone", "cardwatch load"])
    assert "intake" not in body, body   # the feed has no intake to pause
    out = s.cardwatch("breaches", "--confirm").stdout.decode()
    assert "0 breaches, 0 cards" in out, out
    h.wait_until(lambda: s.ready()[0] == 200, 30, "feed ready after --confirm")
    s.redis.call("FLUSHALL")
    _paused_with(s, ["exposed-card set is gone", "last seen"])
    assert h.scrape(s.url + "/metrics").get("cardwatch_feed_redis_up") == 1, \
        "Redis itself is up: only the set is gone"
    assert feed.stop() == 0


def test_lag_keeps_counting_while_intake_is_paused():
    """cardwatch_consumer_lag follows the topic while intake is paused
    (librdkafka refreshes a partition's high watermark only by fetching
    it, and a paused partition is not fetched: the metric froze at what it
    was when Redis went away, 2,739 while ~15,000 events arrived)."""
    issuers = cw.three_issuers()
    mk = CardMaker(3030)
    exposed = mk.cards(["400001", "510000"], 40)
    clean = mk.cards(["400002", "52000007"], 400)
    b1 = Breach("lag-b1", "2024-03-01", "2024-05-31", ["pan"], exposed)
    before = _stream(4, 500, "la", exposed, clean)
    held = _stream(5, 3000, "lb", exposed, clean)

    s = cw.Stack(issuers, partitions=3)
    s.load(b1)
    proc = s.run()
    h.wait_until(lambda: s.ready()[0] == 200, 60, "/readyz 200")
    s.send(before, name="before")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") == len(before), 60,
                 "the first events processed")
    h.wait_until(lambda: s.metrics().get("cardwatch_consumer_lag") == 0, 30, "lag 0")

    s.redis.call("FLUSHALL")        # the set is gone: intake pauses
    _paused_with(s, ["exposed-card set is gone", "intake paused"])
    assert s.metrics().get("cardwatch_consumption_paused") == 1
    s.send(held, name="held")

    def lag_counts_them():
        m = s.metrics()
        return m.get("cardwatch_consumer_lag") >= len(held) and m
    m = h.wait_until(lag_counts_them, 30,
                     f"cardwatch_consumer_lag >= {len(held)} while paused",
                     interval=0.2)
    assert m.get("cardwatch_consumption_paused") == 1
    assert m.sum("cardwatch_events_total") == len(before), "an event was taken while paused"
    lag = m.get("cardwatch_consumer_lag")
    assert lag == len(held), f"lag {lag}, {len(held)} events held"
    print(f"figure: lag {int(lag)} with {len(held)} events sent while intake was paused")

    s.load(b1)                      # back: the held events drain, lag to 0
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") ==
                 len(before) + len(held), 60, "the held events processed")
    h.wait_until(lambda: s.metrics().get("cardwatch_consumer_lag") == 0, 30,
                 "lag 0 after the resume")
    s.terminate(proc)
