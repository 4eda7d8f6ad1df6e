"""An injected fault for the I/O error branches that the other scenarios
do not reach: what the user sees (exit status, readiness, metrics, the log
line) and that no alert is lost. Faults are real where they can be (a
Redis paused with SIGSTOP or refusing a command through its ACL, a topic
limit on a real Apache Kafka broker); librdkafka's mock injects the
protocol errors that only it can (a producer fenced for good).
Expectations come from the inputs (cwstack.expected_alerts)."""

import random
import time

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn

DAY = 86_400_000


def _stream(seed, tag, n_exposed=12, n_clean=20, per_card=3):
    """Three issuers, one breach; every use of an exposed card after the
    window start alerts (the built-in rule)."""
    issuers = cw.three_issuers()
    mk = CardMaker(seed)
    exposed = mk.cards(["400001", "4000501", "510000", "52000042"], n_exposed)
    clean = mk.cards(["400002", "510000"], n_clean)
    b1 = Breach(f"{tag}-breach", "2024-01-01", "2024-06-30", ["pan", "expiry"], exposed)
    rnd = random.Random(seed)
    txns = [txn(f"{tag}-{i:05d}", pan, cw.day_ms("2024-03-01") + rnd.randrange(90) * DAY, rnd)
            for i, pan in enumerate(p for p in exposed + clean for _ in range(per_card))]
    rnd.shuffle(txns)
    return issuers, b1, txns


def test_a_fatal_producer_error_stops_the_service_and_a_restart_delivers_everything():
    """The producer's fatal error (the mock refuses its InitProducerId with
    CLUSTER_AUTHORIZATION_FAILED: idempotence is impossible, for good, and
    no delivery report ever comes) makes `cardwatch run` stop consuming,
    log the reason once and exit 1 without committing what it could not
    deliver; the next run delivers every alert."""
    issuers, b1, txns = _stream(41, "fz")
    expected = cw.expected_alerts(txns, [b1], issuers)
    assert len(expected) >= 20
    s = cw.Stack(issuers, kafka_kind="embedded", kafka_faults=["22:31:1"])
    s.load(b1)
    s.send(txns, name="all")
    s.kafka.inject()          # the first Produce request after this fails
    first = s.run(name="run-1")
    rc = first.wait(60)
    log = first.log_text()
    assert rc == 1, f"run 1 exited {rc}, want 1:\n{log[-3000:]}"
    assert log.count("ERROR sink: producer fatal error: ") == 1, log[-3000:]
    assert "Cluster authorization failed" in log and "stopped with errors" in log, log[-3000:]
    out = s.finish(s.run("--exit-at-end", name="run-2"), timeout=120)
    summary = cw.parse_summary(out)
    got = s.alerts(expect_count=len(expected))
    cw.check_alerts(got, expected, exact_once=False)
    print(f"    fatal producer error: run 1 exit {rc}; run 2 read {summary['events']} events, "
          f"{len(got)} alert copies for {len(expected)} alerts")


def test_a_refused_delivery_is_retried_until_the_topic_takes_it():
    """An issuer topic that refuses the alerts (max.message.bytes below an
    alert's size on a real broker: MSG_SIZE_TOO_LARGE, for every try)
    holds that issuer's alerts without losing them: the delivery is
    retried after a back-off (cardwatch_delivery_retries_total; one
    warning naming the topic per 10 s, not one per try), other issuers'
    alerts go on;
    once the limit is raised every alert is there exactly once."""
    issuers, b1, txns = _stream(43, "mb")
    expected = cw.expected_alerts(txns, [b1], issuers)
    alpha = {aid for aid, e in expected.items() if e["topic"] == "cardwatch.alerts.alpha"}
    assert len(alpha) >= 5 and len(expected) - len(alpha) >= 5
    s = cw.Stack(issuers)
    s.load(b1)
    s.kafka.set_topic_config("cardwatch.alerts.alpha", ["max.message.bytes=64"])
    proc = s.run()
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200")
    t0 = time.monotonic()
    s.send(txns, name="all")
    others = len(expected) - len(alpha)
    m = h.wait_until(lambda: (lambda m: m.sum("cardwatch_delivery_retries_total") >= 3 and m)(
        s.metrics()), 60, "deliveries to the refusing topic retried")
    h.wait_until(lambda: len(s.alerts()) >= others, 60, "the other issuers' alerts")
    log = proc.log_text()
    assert "delivery to cardwatch.alerts.alpha failed" in log, log[-2000:]
    retries0 = m.sum("cardwatch_delivery_retries_total")
    s.kafka.set_topic_config("cardwatch.alerts.alpha", ["max.message.bytes=1048588"])
    got = h.wait_until(lambda: (lambda a: len(a) >= len(expected) and a)(s.alerts()), 60,
                       "every alert once the topic takes them")
    cw.check_alerts(got, expected)
    log = proc.log_text()
    warned = log.count("delivery to cardwatch.alerts.alpha failed")
    # retried with a back-off and one warning per 10 s, not in a spin
    assert warned <= (time.monotonic() - t0) / 10 + 2, f"{warned} warnings logged"
    s.terminate(proc)
    print(f"    refused deliveries: {retries0:.0f} retries while refused, {warned} warnings "
          f"logged; {len(expected)} alerts delivered once each")
