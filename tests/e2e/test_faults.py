"""An injected fault for the I/O error branches that the other scenarios
do not reach: what the user sees (exit status, readiness, metrics, the log
line) and that no alert is lost. Faults are real where they can be (a
Redis paused with SIGSTOP or refusing a command through its ACL, a topic
limit on a real Apache Kafka broker); librdkafka's mock injects the
protocol errors that only it can (a producer fenced for good).
Expectations come from the inputs (cwstack.expected_alerts)."""

import json
import os
import random
import signal
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


def _paused(redis):
    """A context in which redis-server is stopped with SIGSTOP (a hang, not
    a close: connections stay open, nothing answers)."""
    class Paused:
        def __enter__(self):
            os.kill(redis.proc.pid, signal.SIGSTOP)
            return self

        def __exit__(self, *exc):
            os.kill(redis.proc.pid, signal.SIGCONT)
    return Paused()


def test_shutdown_drain_timeout_and_second_signal_lose_nothing():
    """Events stuck in flight (Redis hangs, its timeout longer than the
    drain) at SIGTERM: the drain gives up after --drain-timeout, says how
    many events stay unacknowledged, exits 1 and writes --summary-json
    with that status; a second SIGTERM while draining exits at once (1).
    A third run, Redis back, delivers every alert: nothing was committed
    that was not done."""
    issuers, b1, txns = _stream(47, "sd", n_exposed=15, n_clean=15, per_card=4)
    expected = cw.expected_alerts(txns, [b1], issuers)
    thirds = [txns[:40], txns[40:80], txns[80:]]
    s = cw.Stack(issuers, redis_ini="timeout_ms = 60000\n")
    s.load(b1)
    summary_file = s.dir / "run-1.summary.json"

    # 1. the drain times out
    first = s.run("--drain-timeout", "1", "--summary-json", summary_file, name="run-1")
    h.wait_until(lambda: s.ready()[0] == 200, 30, "run 1 ready")
    s.send(thirds[0], name="part-1")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") >= len(thirds[0]), 60,
                 "part 1 processed")
    with _paused(s.redis):
        s.send(thirds[1], name="part-2")
        h.wait_until(lambda: s.metrics().get("cardwatch_in_flight_events", 0) > 0, 30,
                     "events in flight while Redis hangs")
        first.send_signal(signal.SIGTERM)
        rc = first.wait(30)
    log = first.log_text()
    assert rc == 1, f"run 1 exited {rc} after a drain timeout:\n{log[-2000:]}"
    assert "drain timed out with" in log and "event(s) unacknowledged" in log, log[-2000:]
    summ = json.loads(summary_file.read_text())
    assert summ["exit_code"] == 1 and summ["events"] >= len(thirds[0]), summ

    # 2. a second signal while draining
    second = s.run(name="run-2")
    h.wait_until(lambda: s.ready()[0] == 200, 30, "run 2 ready")
    with _paused(s.redis):
        s.send(thirds[2], name="part-3")
        h.wait_until(lambda: s.metrics().get("cardwatch_in_flight_events", 0) > 0, 30,
                     "events in flight while Redis hangs")
        second.send_signal(signal.SIGTERM)
        h.wait_until(lambda: "stopping intake, draining" in second.log_text(), 10,
                     "the drain to start")
        second.send_signal(signal.SIGTERM)
        rc = second.wait(10)
    log = second.log_text()
    assert rc == 1, f"run 2 exited {rc} after a second SIGTERM:\n{log[-2000:]}"
    assert "second signal: exiting without draining" in log, log[-2000:]

    # 3. nothing lost
    out = s.finish(s.run("--exit-at-end", name="run-3"), timeout=120)
    got = s.alerts()
    copies = cw.check_alerts(got, expected, exact_once=False)
    print(f"    shutdown faults: {len(expected)} alerts, {sum(copies.values())} copies; "
          f"run 3: {cw.parse_summary(out)['events']} events read again or for the first time")
