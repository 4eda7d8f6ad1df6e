"""Live monitoring, end to end: real redis-server, Apache Kafka and real
`cardwatch` processes (load, send, run). Expectations are computed in Python
from the test inputs (cwstack.expected_alerts), never by the C code."""

import hashlib
import json
import random
import re
import signal
import time

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn


def _scenario():
    """Three issuers, two breaches, and transactions on exposed cards used
    after and before their window start, on cards listed only by the later
    breach, on clean cards and on cards no issuer owns."""
    issuers = cw.three_issuers()
    mk = CardMaker(20240101)
    alpha = [mk.card("400001"), mk.card("400099", 19), mk.card("4000507")]
    gamma = [mk.card("4000501"), mk.card("4000504", 13)]
    beta = [mk.card("510000", 19), mk.card("52000042"), mk.card("52000099", 15)]
    unrouted = [mk.card("371234", 15), mk.card("999999")]
    clean = mk.cards(["400003", "4000502", "4000508", "510000", "52000010", "601100"], 12)
    b1 = Breach("e2e-shop-2024q1", "2024-01-01", "2024-03-31",
                ["pan", "expiry", "cvv2", "name", "address"],
                [alpha[0], alpha[1], alpha[2], gamma[0], beta[0], beta[1], unrouted[0],
                 unrouted[1]], description="skimmed checkout page (test data)")
    b2 = Breach("e2e-clinic-2024-06", "2024-06-01", "2024-06-30", ["pan", "name", "email"],
                [alpha[0], gamma[1], beta[2]])
    rnd = random.Random(7)
    txns = []

    def add(pan, when):
        txns.append(txn(f"t1-{len(txns):04d}", pan, when, rnd))

    day = 86_400_000
    for pan in b1.cards:
        add(pan, b1.start_ms - rnd.randrange(1, 60) * day)          # before: no alert
        add(pan, b1.start_ms + rnd.randrange(0, 80) * day + 12345)  # in window: alert
        add(pan, b1.end_ms + rnd.randrange(1, 300) * day)           # after the end: alert
    add(gamma[0], b1.start_ms)                   # the first ms of the window: alert
    add(gamma[0], b1.start_ms - 1)               # the last ms before it: no alert
    add(alpha[0], b2.start_ms + 3 * day)         # listed by both, both started
    for pan in b2.cards:
        add(pan, b2.start_ms - 10 * day)         # b1 started, but b2 lists the card
        add(pan, b2.start_ms)                    # alert (b2; alpha[0] also b1)
    for pan in clean:
        for _ in range(3):
            add(pan, b1.start_ms + rnd.randrange(-100, 400) * day)
    rnd.shuffle(txns)
    return issuers, [b1, b2], txns


def test_end_to_end_alerts_per_issuer():
    issuers, breaches, txns = _scenario()
    expected = cw.expected_alerts(txns, breaches, issuers)
    per_topic = {}
    for e in expected.values():
        per_topic[e["topic"]] = per_topic.get(e["topic"], 0) + 1
    # the scenario covers what it claims to
    assert set(per_topic) == set(cw.alert_topics(issuers)), per_topic
    assert any(len(e["alert"]["breaches"]) == 2 for e in expected.values())
    counts = cw.outcomes(txns, breaches)
    assert counts["exposed"] >= 10 and counts["clean"] >= 30, counts

    s = cw.Stack(issuers, partitions=4)
    for b in breaches:
        s.load(b)
    s.send(txns)
    t_start = cw.wall_ms()
    out = s.finish(s.run("--exit-at-end"))
    t_end = cw.wall_ms()

    got = s.alerts()
    cw.check_alerts(got, expected, exact_once=True, min_detected_ms=t_start,
                    max_detected_ms=t_end)
    got_per_topic = {}
    for topic, _m, _a in got:
        got_per_topic[topic] = got_per_topic.get(topic, 0) + 1
    assert got_per_topic == per_topic, (got_per_topic, per_topic)

    summary = cw.parse_summary(out)
    assert summary["events"] == len(txns), summary
    assert (summary["clean"], summary["exposed"], summary["alerted"], summary["dead_letters"]) \
        == (counts["clean"], counts["exposed"], counts["alerted"], 0), (summary, counts)
    by_issuer = {}
    for e in expected.values():
        label = e["alert"]["issuer_id"] or "unrouted"
        by_issuer[label] = by_issuer.get(label, 0) + 1
    assert summary["by_issuer"] == by_issuer, (summary["by_issuer"], by_issuer)
    assert summary["hits"] == {(i, cw.RULE): n for i, n in by_issuer.items()}, summary["hits"]
    # nothing invalid in this stream
    assert s.dead_letters() == []

    # a clean exit committed everything: a second run reads nothing and
    # alerts nothing again
    again = cw.parse_summary(s.finish(s.run("--exit-at-end")))
    assert again["events"] == 0 and again["by_issuer"] == {}, again
    assert len(s.alerts()) == len(expected)


def test_a_transaction_twice_on_the_topic_is_sent_once():
    """A transaction the topic holds twice (the same txn_id, e.g. a
    producer's retry), the copy right behind the first so that both are in
    flight together, or far behind it: each alert reaches its issuer's
    topic once, and /metrics counts the copies not sent again."""
    issuers, breaches, txns = _scenario()
    expected = cw.expected_alerts(txns, breaches, issuers)
    alerting = [t for t in txns if cw.alert_id(t["txn_id"]) in expected]
    assert len(alerting) >= 12, len(alerting)
    near, far = alerting[:8], alerting[8:12]
    stream = []
    for t in txns:
        stream.append(t)
        if t in near:
            stream.append(t)
    stream += far

    s = cw.Stack(issuers, partitions=4)
    for b in breaches:
        s.load(b)
    s.send(stream)
    proc = s.run()
    m = h.wait_until(lambda: (lambda m: m.sum("cardwatch_events_total") >= len(stream) and
                              m.sum("cardwatch_in_flight_events") == 0 and m)(s.metrics()),
                     60, "every event processed")
    cw.check_alerts(s.alerts(expect_count=len(expected)), expected, exact_once=True)
    assert m.sum("cardwatch_alerts_not_resent_total") == len(near) + len(far), \
        m.sum("cardwatch_alerts_not_resent_total")
    s.terminate(proc)


def test_send_publishes_lines_as_they_are():
    """`cardwatch send --help`: "Publishes JSON-lines transactions ... to
    Kafka as protobuf, keyed by txn_id, with the event time as message
    timestamp. Lines are not validated, so invalid test data reaches the
    processor as it is"."""
    s = cw.Stack(cw.three_issuers(), partitions=4)
    mk = CardMaker(5)
    txns = [txn(f"key-{i}", mk.card("400001"), cw.day_ms("2024-05-01") + i * 1000)
            for i in range(8)]
    txns[3]["mcc"] = 10000        # invalid, must reach the processor as it is
    txns[4]["amount_minor"] = -7  # likewise
    s.send(txns)
    msgs = s.inputs()
    assert len(msgs) == len(txns)
    schema = h.ProtoSchema()
    by_id = {t["txn_id"]: t for t in txns}
    problems = []
    for m in msgs:
        got = schema.decode("Transaction", m.value)
        t = by_id[got["txn_id"]]
        want = {k: v for k, v in cw.to_proto(t).items() if v not in (0, "", False)}
        if got != want:
            problems.append(f"{t['txn_id']}: published {got}, line was {want}")
        if m.key != t["txn_id"].encode():
            problems.append(f"{t['txn_id']}: message key {m.key!r}")
        if m.timestamp != t["event_time_ms"]:
            problems.append(f"{t['txn_id']}: message timestamp {m.timestamp}, event time "
                            f"{t['event_time_ms']}")
    assert not problems, "\n".join(problems)


def test_missing_topics_stop_start_up():
    """The brokers create no topic on first use: `cardwatch run` names every
    topic it lacks and where it is configured, instead of idling (no
    transactions topic) or failing deliveries minutes later (no alert
    topic); `send` and `tail` likewise."""
    s = cw.Stack(cw.three_issuers(), partitions=2)
    k = s.kafka
    if not k.apache:
        raise h.Skip("the embedded mock creates topics on first use")
    h.run_tool([h.tool("kafka_admin"), "--brokers", k.bootstraps, "delete",
                "cardwatch.alerts.beta", cw.TXN_TOPIC], timeout=60)
    h.wait_until(lambda: not {"cardwatch.alerts.beta", cw.TXN_TOPIC} &
                 {t["topic"] for t in k.cluster.metadata()["topics"]}, 30, "topics deleted")
    res = s.cardwatch("run", "--no-progress", "--exit-at-end", check=False, timeout=60)
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 1, f"exit {res.returncode}:\n{err}"
    assert "2 topic(s) missing" in err, err
    assert f"{cw.TXN_TOPIC} ([kafka] transactions_topic)" in err, err
    assert "cardwatch.alerts.beta (issuer beta)" in err, err
    assert "cardwatch.alerts.alpha" not in err, err
    for cmd, topic in (("send", cw.TXN_TOPIC), ("tail", "cardwatch.alerts.beta")):
        args = ["send", "--input", "/dev/null"] if cmd == "send" else ["tail", topic]
        res = s.cardwatch(*args, check=False, timeout=60)
        err = res.stderr.decode(errors="replace")
        assert res.returncode == 1 and f"missing: {topic}" in err, f"{cmd}: {err}"
    # nothing was created on the way
    assert not {"cardwatch.alerts.beta", cw.TXN_TOPIC} & \
        {t["topic"] for t in k.cluster.metadata()["topics"]}


def test_dead_letters_and_the_stream_goes_on():
    issuers = cw.three_issuers()
    mk = CardMaker(99)
    exposed = mk.cards(["400001", "4000501", "510000", "999999"], 12)
    clean = mk.cards(["400002", "52000001", "601100"], 20)
    b1 = Breach("e2e-dl", "2024-01-01", "2024-01-31", ["pan", "cvv2"], exposed)
    invalid = cw.invalid_events(exposed[0], "dl")
    invalid_pb = cw.invalid_protobuf(exposed[2], "dl")
    junk = cw.garbage(exposed[1])
    rnd = random.Random(3)
    valid = [txn(f"dl-ok-{i:04d}", rnd.choice(exposed if i % 4 == 0 else clean),
                 cw.day_ms("2024-01-15") + rnd.randrange(-30, 30) * 86_400_000, rnd)
             for i in range(200)]
    expected = cw.expected_alerts(valid, [b1], issuers)
    counts = cw.outcomes(valid, [b1])
    assert len(expected) >= 10

    s = cw.Stack(issuers, partitions=4)
    s.load(b1)
    proc = s.run()
    # live: the group has joined and nothing is there yet
    h.wait_until(lambda: s.ready()[0] == 200 and
                 s.metrics().get("cardwatch_assigned_partitions") == 4,
                 30, "cardwatch ready with 4 partitions assigned")
    s.send([t for t, _ in invalid], name="invalid")
    for p, payload in enumerate(junk + [raw for raw, _, _ in invalid_pb]):
        h.produce(s.kafka.bootstraps, cw.TXN_TOPIC, [(None, payload)], partition=p % 4)
    invalid += [(t, reason) for _, t, reason in invalid_pb]
    s.send(valid, name="valid")

    want_reasons = {}
    for _, reason in invalid:
        want_reasons[reason] = want_reasons.get(reason, 0) + 1
    want_reasons["undecodable"] = len(junk)
    n_invalid = len(invalid) + len(junk)
    total = n_invalid + len(valid)

    m = h.wait_until(lambda: (lambda m: m.sum("cardwatch_events_total") >= total and m)(
        s.metrics()), 60, f"metrics: {total} events")
    assert m.sum("cardwatch_events_total") == total
    dl = {r: v for r, v in m.by("cardwatch_dead_letters_total", "reason").items() if v}
    assert dl == want_reasons, f"dead letters by reason {dl}, expected {want_reasons}"
    # every reason is listed, even with a zero count
    assert set(m.by("cardwatch_dead_letters_total", "reason")) >= set(cw.REASONS)
    assert m.get("cardwatch_events_total", outcome="dead_letter") == n_invalid
    assert m.get("cardwatch_events_total", outcome="clean") == counts["clean"]
    assert m.get("cardwatch_events_total", outcome="exposed") == counts["exposed"]
    assert m.get("cardwatch_events_total", outcome="alerted") == counts["alerted"]
    assert s.ready()[0] == 200
    s.terminate(proc)

    # where every input is, and what it should have caused
    schema = h.ProtoSchema()
    reason_of = {}
    for t, reason in invalid:
        reason_of[cw.input_key(t)] = reason
    junk_set = set(junk)
    inputs = {(m.partition, m.offset): m for m in s.inputs()}
    assert len(inputs) == total
    want_at = {}   # (partition, offset) -> reason, for the invalid inputs
    for pos, m in inputs.items():
        if m.value in junk_set:
            want_at[pos] = "undecodable"
            continue
        key = cw.input_key(schema.decode("Transaction", m.value))
        if key in reason_of:
            want_at[pos] = reason_of[key]
    assert len(want_at) == n_invalid, "test data: inputs not told apart"
    # the stream goes on: every partition with a dead letter has valid
    # events after it (all of which were counted and alerted above)
    for part, off in want_at:
        assert any(p == part and o > off and (p, o) not in want_at for p, o in inputs), \
            f"test data: nothing valid after {part}/{off}"

    dls = s.dead_letters(expect_count=n_invalid)
    seen = {}
    pans = set(mk.made) | {t.get("pan", "") for t, _ in invalid} - {""}
    for d in dls:
        hd = dict(d.headers)
        where = f"dead letter {d.partition}/{d.offset} {hd}"
        assert set(hd) == {"reason", "source_topic", "source_partition", "source_offset"}, where
        pos = (int(hd["source_partition"]), int(hd["source_offset"]))
        assert hd["source_topic"] == cw.TXN_TOPIC.encode(), where
        assert pos in want_at, f"{where}: points at a valid input or nowhere"
        assert hd["reason"].decode() == want_at[pos], f"{where}: expected {want_at[pos]}"
        seen[pos] = seen.get(pos, 0) + 1
        src = inputs[pos]
        body = json.loads(d.value)
        tid = "" if want_at[pos] in ("undecodable", "txn_id") else \
            schema.decode("Transaction", src.value)["txn_id"]
        assert body["reason"] == want_at[pos], where
        assert body["source"] == {"topic": cw.TXN_TOPIC, "partition": pos[0], "offset": pos[1]}, \
            (where, body)
        assert body["txn_id"] == tid, (where, body)
        # a keyed MAC, never a plain hash of the payload (which may be a
        # bare card number: a hash is found by trying a BIN's numbers)
        assert "payload_sha256" not in body, where
        assert body["payload_mac"] == cw.dead_letter_mac(src.value or b""), where
        assert hashlib.sha256(src.value or b"").hexdigest() not in d.value.decode(), where
        assert body["payload_bytes"] == len(src.value or b""), where
        assert d.key == (tid.encode() if tid else None), (where, d.key)
        raw = h.blob(d)
        for pan in pans:
            assert pan.encode() not in raw, f"{where}: holds a test card number"
        for run in h.luhn_scan(raw):
            assert run == str(body["detected_at_ms"]), f"{where}: Luhn-valid number {run}"
    assert seen == {p: 1 for p in want_at}, "every invalid input has exactly one dead letter"

    cw.check_alerts(s.alerts(), expected, exact_once=True)


def test_a_flood_of_identical_dead_letters_is_counted_not_logged_line_by_line():
    """Bad input never stops the stream, nor floods the log: thousands of
    identical invalid events are all counted (metrics by reason) while the
    log gets the first of the reason, with its position, then at most one
    line per reason per 10 s saying how many more there were."""
    issuers = cw.three_issuers()
    mk = CardMaker(4242)
    cards = mk.cards(["400001", "510000"], 4)
    b1 = Breach("e2e-flood", "2024-01-01", "2024-01-31", ["pan"], cards)
    rnd = random.Random(4242)
    t0_ms = cw.day_ms("2024-01-10")
    n_bad = 6000
    bad = [txn(f"fl-bad-{i:05d}", cw.luhn_break(cards[i % 4]), t0_ms + i, rnd)
           for i in range(n_bad)]
    valid = [txn(f"fl-ok-{i:03d}", cards[i % 4], t0_ms + i, rnd) for i in range(40)]
    expected = cw.expected_alerts(valid, [b1], issuers)
    s = cw.Stack(issuers, partitions=2)
    s.load(b1)
    proc = s.run()
    h.wait_until(lambda: s.ready()[0] == 200 and
                 s.metrics().get("cardwatch_assigned_partitions") == 2,
                 30, "cardwatch ready with 2 partitions assigned")
    started = time.monotonic()
    s.send(bad[:n_bad // 2], name="bad-1")
    s.send(valid, name="valid")
    s.send(bad[n_bad // 2:], name="bad-2")
    total = n_bad + len(valid)
    m = h.wait_until(lambda: (lambda m: m.sum("cardwatch_events_total") >= total and m)(
        s.metrics()), 60, f"metrics: {total} events")
    secs = time.monotonic() - started
    assert m.get("cardwatch_dead_letters_total", reason="luhn") == n_bad
    assert m.get("cardwatch_events_total", outcome="dead_letter") == n_bad
    assert m.sum("cardwatch_alerts_total") == len(expected)
    s.terminate(proc)
    lines = [x for x in proc.log_text().splitlines() if " pipeline: " in x and "dead letter" in x]
    assert lines, "the first dead letter of a reason is not logged"
    assert "luhn" in lines[0] and re.search(rf"{re.escape(cw.TXN_TOPIC)}/\d+/\d+", lines[0]), \
        lines[0]
    # one reason: the first line, then at most one per 10 s
    assert len(lines) <= 2 + int(secs / 10), f"{len(lines)} log lines in {secs:.1f} s:\n" + \
        "\n".join(lines[:20])
    for pan in mk.made | {t["pan"] for t in bad}:
        assert pan not in proc.log_text(), "a test card number in the log"


def _big_stream(seed, n, prefix, exposed_share=0.05):
    """n transactions on 3 issuers + unrouted cards, ~exposed_share on cards of
    one breach (some used before its window start)."""
    issuers = cw.three_issuers()
    mk = CardMaker(seed)
    exposed = mk.cards(["400001", "400077", "4000503", "510000", "52000042", "999999"], 240)
    clean = mk.cards(["400002", "400090", "4000509", "4000501", "510000", "52000007",
                      "371234"], 3000)
    b1 = Breach(f"{prefix}-breach", "2024-03-01", "2024-05-31", ["pan", "expiry", "cvv2"],
                exposed)
    rnd = random.Random(seed)
    base = cw.day_ms("2024-02-20")
    txns = [txn(f"{prefix}-{i:06d}",
                rnd.choice(exposed) if rnd.random() < exposed_share else rnd.choice(clean),
                base + rnd.randrange(0, 60 * 86_400_000), rnd)
            for i in range(n)]
    return issuers, b1, txns


def test_restart_after_kill_9_loses_no_alert():
    """kill -9 mid-stream, then a restart: every alert is produced, run 2
    reads exactly what the group had not committed (the cluster's own
    committed offsets, not cardwatch's account), and the only alerts sent
    twice are those of events past the last commit."""
    issuers, b1, txns = _big_stream(11, 20_000, "rs")
    expected = cw.expected_alerts(txns, [b1], issuers)
    assert 500 <= len(expected) <= 1000, len(expected)
    half = len(txns) // 2

    s = cw.Stack(issuers, partitions=8)
    s.load(b1)
    first = s.run(name="run-1")
    h.wait_until(lambda: s.ready()[0] == 200 and
                 s.metrics().get("cardwatch_assigned_partitions") == 8,
                 30, "run 1 ready with 8 partitions assigned")

    def processed(n):
        if not first.alive:
            raise AssertionError(f"run 1 exited {first.returncode}:\n{first.log_text(20)}")
        m = s.metrics()
        return m.sum("cardwatch_events_total") >= n and m

    def committed():
        return sum(max(o, 0) for o in
                   s.kafka.committed("cardwatch-e2e", cw.TXN_TOPIC, 8).values())
    # The first half arrives in chunks while run 1 is live; it is killed
    # while the last (largest) chunk is still arriving, once it has
    # produced alerts. Before that chunk, everything sent is committed, so
    # only the last chunk can be read twice.
    cuts = [0, 1500, 3000, 4500, half]
    for i in range(3):
        s.send(txns[cuts[i]:cuts[i + 1]], name=f"live-{i}")
        h.wait_until(lambda: processed(cuts[i + 1]), 60, f"chunk {i} processed")
    h.wait_until(lambda: committed() == cuts[3], 30, f"{cuts[3]} events committed")
    sender = s.send_async(txns[cuts[3]:half], name="live-3")
    m = h.wait_until(lambda: processed(cuts[3] + 1), 60, "the last chunk started",
                     interval=0.005)
    rc = first.kill()
    assert rc == -signal.SIGKILL, rc
    assert m.sum("cardwatch_alerts_total") > 0, "run 1 produced no alerts before kill -9"
    assert sender.wait(60) == 0, sender.log_text(10)
    done = committed()   # what run 1 committed before it died
    assert cuts[3] <= done <= half, (done, cuts[3], half)
    s.send(txns[half:], name="second-half")

    out = s.finish(s.run("--exit-at-end", name="run-2"), timeout=120)
    summary = cw.parse_summary(out)
    assert summary["dead_letters"] == 0
    assert summary["events"] == len(txns) - done, \
        f"run 2 read {summary['events']} events; {len(txns) - done} were not committed"

    got = s.alerts(expect_count=len(expected))
    copies = cw.check_alerts(got, expected, exact_once=False)
    dup = {aid: n - 1 for aid, n in copies.items() if n > 1}
    last_chunk = {cw.alert_id(t["txn_id"]) for t in txns[cuts[3]:half]} & set(expected)
    assert set(dup) <= last_chunk, \
        f"alerts sent again for events that were committed: {sorted(set(dup) - last_chunk)[:5]}"
    assert all(n == 1 for n in dup.values()), f"an alert sent 3 times or more: {dup}"
    print(f"    restart: killed after {m.sum('cardwatch_events_total'):.0f} events "
          f"({done} committed); {len(expected)} alerts expected, {len(got)} produced "
          f"({sum(dup.values())} again after kill -9, of {len(last_chunk)} in the last chunk); "
          f"run 2 read {summary['events']} events")


def test_redis_outage_pauses_and_resumes():
    issuers, b1, txns = _big_stream(23, 8_000, "ro")
    expected = cw.expected_alerts(txns, [b1], issuers)
    counts = cw.outcomes(txns, [b1])
    part_a, part_b = txns[:4000], txns[4000:]

    s = cw.Stack(issuers, partitions=8)
    s.load(b1)
    # the exposure data (the run adds delivered records and feed entries,
    # as many as it finished before the outage: not compared)
    keys_before = set(s.redis.call("KEYS", "*"))
    proc = s.run()
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200")
    s.send(part_a, name="part-a")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") > 0, 60,
                 "the first events processed", interval=0.01)

    s.redis.stop(save=True)  # an outage mid-stream; the data is saved
    status, body = h.wait_until(lambda: (lambda r: r[0] == 503 and r)(s.ready()), 30,
                                "/readyz 503 while Redis is down")
    assert "redis" in body.lower(), body
    m = s.metrics()
    assert m.get("cardwatch_redis_up") == 0, m.get("cardwatch_redis_up")
    assert m.get("cardwatch_ready") == 0
    assert m.get("cardwatch_consumption_paused") == 1
    assert h.http_get(s.url + "/healthz")[0] == 200, "alive while not ready"
    s.send(part_b, name="part-b")  # arrives during the outage
    assert s.ready()[0] == 503
    done = s.metrics().sum("cardwatch_events_total")
    assert done <= len(part_a), f"{done} events finished while Redis was down"
    assert proc.alive

    s.redis.start()
    lost = keys_before - set(s.redis.call("KEYS", "*"))
    assert not lost, f"Redis lost the exposure data: {sorted(lost)[:5]}"

    def resumed():
        m = s.metrics()
        return (s.ready()[0] == 200 and m.get("cardwatch_redis_up") == 1 and
                m.sum("cardwatch_events_total") == len(txns)) and m
    m = h.wait_until(resumed, 60, f"/readyz 200 and all {len(txns)} events processed")
    assert m.get("cardwatch_events_total", outcome="clean") == counts["clean"]
    assert m.get("cardwatch_events_total", outcome="exposed") == counts["exposed"]
    assert m.get("cardwatch_events_total", outcome="alerted") == counts["alerted"]
    assert m.get("cardwatch_events_total", outcome="dead_letter") == 0
    assert m.sum("cardwatch_alerts_total") == len(expected)
    assert m.get("cardwatch_redis_reconnects_total", 0) >= 1
    assert m.get("cardwatch_consumption_paused") == 0
    s.terminate(proc)
    cw.check_alerts(s.alerts(), expected, exact_once=True)
