"""Real Redis faults against `cardwatch run` (Apache Kafka, the live
service) for the error branches of the Redis path that the other
scenarios do not reach: a command refused by the ACL of the user
cardwatch connects as (the window update, the suppression write, the
exposure lookup and set check, the delivered check and record), and a
Redis that does not answer (a listening socket that never accepts at
start-up, a redis-server paused with SIGSTOP mid-stream).

What the user sees: the log line naming the command and Redis's answer,
/readyz 503 with the reason while Redis refuses or does not answer,
cardwatch_redis_up / cardwatch_exposed_set_ok, and intake resuming on its
own once Redis answers again. What is not lost: every alert the inputs
call for (oracle.pack_expected for the rule pack, cwstack.expected_alerts
for the built-in rule), exactly once, in Kafka and in the issuers' feeds,
and every input offset committed at the end.

Not here (covered elsewhere): Redis stopped and restarted
(test_pipeline.py), emptied or shrunk (test_redis_guard.py), failover
(test_redis_ha.py), wrong password / TLS (test_redis_security.py), the
probe's hang (test_redis_conn.py), window state under re-processing
(test_window_state.py)."""

import random
import re
import signal
import socket
import time

import harness as h
import cwstack as cw
import oracle
from cwstack import Breach, CardMaker, txn
from test_redis_security import _acl_redis, _secret_file, USER
from test_rules import _t

MIN = 60_000
DAY = 24 * 60 * MIN
BASE = cw.day_ms("2024-03-10") + 12 * 3_600_000  # 2024-03-10T12:00Z
WATCH = "m-watched"  # the merchant of the extra rule that suppresses
WATCH_RULE = "watched-merchant"


def _processed(s, n):
    """cardwatch_events_total reached n and nothing is in flight: every
    sent event is done and all it caused acknowledged (delivered, recorded
    in Redis)."""
    m = s.metrics()
    return m.sum("cardwatch_events_total") >= n and m.get("cardwatch_in_flight_events") == 0


def _not_ready(s, *words):
    """/readyz answers 503 with every word in its body: returns the body."""
    status, body = s.ready()
    return status == 503 and all(w in body for w in words) and body


def _log_has(proc, text, since=0):
    """The run's log holds text after character offset `since`."""
    return text in proc.log_text()[since:]


def _feed_ids(s, issuers):
    """{issuer: [alert ids in its feed stream]} read from Redis."""
    out = {}
    for iss in issuers:
        ids = []
        for _sid, fields in s.redis.call("XRANGE", f"cw:feed:{iss.id}", "-", "+"):
            f = dict(zip(fields[::2], fields[1::2]))
            ids.append(f[b"alert_id"].decode())
        out[iss.id] = ids
    return out


def _check_feeds(s, issuers, expected):
    """Every routed expected alert is in its issuer's feed, once."""
    feeds = _feed_ids(s, issuers)
    for iss in issuers:
        want = sorted(a for a, e in expected.items() if e["alert"]["issuer_id"] == iss.id)
        got = feeds[iss.id]
        assert sorted(got) == want, \
            f"feed of {iss.id}: {len(got)} alerts ({len(set(got))} distinct), want {len(want)}; " \
            f"missing {sorted(set(want) - set(got))[:5]}"


def _committed_all(s, n):
    """The group committed every one of the n input messages (1 partition)."""
    got = s.kafka.committed("cardwatch-e2e", cw.TXN_TOPIC, 1)
    assert got == {0: n}, f"committed {got}, want {{0: {n}}}"


def _rejected_calls(s):
    """{command: calls Redis refused} (INFO commandstats)."""
    out = {}
    for line in s.redis.call("INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_") and "rejected_calls=" in line:
            name, _, stats = line[len("cmdstat_"):].partition(":")
            n = int(dict(kv.split("=") for kv in stats.split(","))["rejected_calls"])
            if n:
                out[name] = n
    return out


def _phase(s, proc, deny, txns, sent, line, words, restore, name=None):
    """ACL SETUSER USER deny...; send txns; the log gets `line` and /readyz
    503 with every one of `words` (or of words(the log since), when a
    function); ACL SETUSER USER restore...; every event is processed and
    /readyz is 200 again. Returns (events sent so far, seconds the refusal
    lasted)."""
    since = len(proc.log_text())
    s.redis.call("ACL", "SETUSER", USER, *deny)
    t0 = time.monotonic()
    s.send(txns, name=name or "-".join(deny).replace("-", "no-"))
    h.wait_until(lambda: _log_has(proc, line, since), 20, f"log line {line!r}")
    if callable(words):
        words = words(proc.log_text()[since:])
    if words:
        h.wait_until(lambda: _not_ready(s, *words), 10,
                     f"/readyz 503 naming {words} while Redis refuses {deny}")
    s.redis.call("ACL", "SETUSER", USER, *restore)
    held = time.monotonic() - t0
    sent += len(txns)
    h.wait_until(lambda: _processed(s, sent) and s.ready()[0] == 200, 20,
                 f"{sent} events processed and /readyz 200 after {restore}")
    return sent, held


# Every key of the service but the window hashes (cw:live:win:*): Redis
# refuses the window update (a script on those keys) and nothing else.
NO_WINDOW_KEYS = ["resetkeys", "~cw:[^l]*", "~cw:layout:*", "~cw:live:sup:*"]
ALL_KEYS = ["resetkeys", "~cw:*"]
LOOKUP_REFUSED = "WARN exposure: exposure lookup answered "


def _lookup_refusal(log, names):
    """The refusal the log's first "exposure lookup answered" line quotes:
    it must match the regex `names` (the command Redis refused). Returns
    the /readyz words that say the same."""
    m = re.search(re.escape(LOOKUP_REFUSED) +
                  r"(.*); retrying every 200 ms \(the events wait\)", log)
    assert m, log[-3000:]
    assert re.search(names, m.group(1)), f"{m.group(1)!r} does not name {names!r}"
    return ["answered the exposure lookup " + m.group(1)[:100]]


def test_commands_refused_by_the_acl_hold_the_events_until_redis_accepts_them():
    """Redis refuses, for a moment, one command at a time (the ACL of the
    service user): EXISTS (the delivered check: the alert is sent), EVALSHA
    (the window update retries with EVAL; the delivery record waits),
    EVALSHA and EVAL (the exposure lookup is a script: every lookup waits,
    before any window update), the window keys (the window update waits;
    the lookups go on), EVAL while the marker changed (the set check
    fails: intake pauses), HGET (the lookup script's read of a card bucket
    fails: the lookups wait while EVAL itself is allowed), HSET (a
    suppression record waits, and the card's next event with it), XADD
    (the delivery record fails after its SET: sent again, the alert still
    reaches its issuer's feed, once). Each
    time the log names the refusal (once, however often it is retried)
    and, where the event waits, /readyz is 503 saying why; once the ACL
    allows it again every event is processed without a restart. SIGTERM
    while the window keys and EVAL are refused (events held at the window
    update and at the lookup) gives up after --drain-timeout (exit 1, no
    hang) and the next run processes the held events. In the end: exactly
    the alerts of the inputs (default pack plus a rule that suppresses),
    each once on Kafka and in its issuer's feed, and every offset
    committed."""
    t_start = time.monotonic()
    issuers = cw.three_issuers()
    mk = CardMaker(1201)
    pa, pw, pb, pc, pd, pe, pf = (
        mk.card("400001"), mk.card("400002"), mk.card("510000"), mk.card("52000042"),
        mk.card("40005012"), mk.card("400077"), mk.card("400098"))
    clean = mk.card("400003")
    ph = mk.card("400066")
    b1 = Breach("fr-acl", "2024-01-01", "2024-06-30", ["pan", "expiry"],
                [pa, pw, pb, pc, pd, pe, pf, ph])
    rules = h.tmpdir("rules") / "watched.rules"
    rules.write_text(oracle.DEFAULT_PACK.read_text() +
                     f"\nrule {WATCH_RULE}\n"
                     "  severity: low\n"
                     "  description: Exposed card used at the watched merchant\n"
                     f"  when: exposed and merchant_id == \"{WATCH}\"\n"
                     "  suppress: 1h\n")
    pw_file = _secret_file("acl-fault-pw")
    s = cw.Stack(issuers, partitions=1, redis=_acl_redis("acl-fault-pw"),
                 redis_ini=f"username = {USER}\npassword_file = {pw_file}\n",
                 extra_ini=f"[rules]\npath = {rules}\n")
    s.load(b1)
    cnp_abroad = dict(channel="ecommerce", merchant_country="US", entry_mode="keyed")
    w1 = _t("W1", pw, BASE, merchant_id=WATCH)
    phases = {
        # EXISTS refused: cnp-use, cross-border-cnp; W1 records its suppression
        "exists": [_t("A1", pa, BASE, **cnp_abroad), _t("A2", pa, BASE + MIN, **cnp_abroad),
                   w1, _t("A3", clean, BASE)],
        # EVALSHA refused: card-testing from B3, velocity on B5
        "evalsha": [_t(f"B{i}", pb, BASE + i * MIN, amount_minor=100, merchant_country="US")
                    for i in range(1, 6)],
        # EVALSHA and EVAL refused: the lookups wait; spend-spike from C4,
        # velocity on C5
        "eval": [_t(f"C{i}", pc, BASE + i * MIN, amount_minor=90_000, merchant_country="US")
                 for i in range(1, 6)],
        # the window keys refused: card-testing on H3
        "window": [_t(f"H{i}", ph, BASE + i * MIN, amount_minor=150) for i in range(1, 4)],
        # EVAL refused while the marker changes: high-risk-mcc
        "check": [_t("D1", pd, BASE, mcc=7995, merchant_country="NL"),
                  _t("D2", pd, BASE + MIN, merchant_country="NL")],
        # HGET refused (inside the lookup script): high-risk-mcc on E1
        "hget": [_t("E1", pe, BASE, mcc=4829), _t("E2", pe, BASE + MIN),
                 _t("E3", clean, BASE + MIN)],
        # HSET refused: W1 again (a redelivery: its window entry is there,
        # the alert was delivered, its suppression record is written again)
        # and W2, 30 minutes later: suppressed by W1
        "hset": [dict(w1), _t("W2", pw, BASE + 30 * MIN, merchant_id=WATCH)],
        # XADD refused: the record of X1's alert fails after its SET NX
        "xadd": [_t("X1", pe, BASE + 2 * DAY, mcc=7995)],
        # the window keys refused at SIGTERM: card-testing on F3, after a
        # restart
        "stop": [_t(f"F{i}", pf, BASE + i * MIN, amount_minor=150) for i in range(1, 4)]
        + [_t("F4", clean, BASE + 5 * MIN)],
        # ... and EVAL refused too (the lookups): high-risk-mcc on G1,
        # after a restart
        "stop-eval": [_t("G1", pa, BASE + DAY, mcc=6051), _t("G2", clean, BASE + DAY)],
    }
    txns = [t for p in phases.values() for t in p]
    expected = oracle.pack_expected(txns, [b1], issuers, rules_path=rules)
    base = cw.expected_alerts([w1], [b1], issuers)[cw.alert_id("W1")]
    expected[cw.alert_id("W1")] = dict(base, alert=dict(
        base["alert"], hits=[{"rule_id": WATCH_RULE, "severity": "SEVERITY_LOW"}],
        severity="SEVERITY_LOW", ruleset_version=oracle.pack_version(rules)))
    want_rules = {"A1": {"cnp-use", "cross-border-cnp"}, "B3": {"card-testing"},
                  "B5": {"card-testing", "velocity"}, "C4": {"spend-spike"},
                  "C5": {"spend-spike", "velocity"}, "H3": {"card-testing"},
                  "D1": {"high-risk-mcc"}, "E1": {"high-risk-mcc"}, "W1": {WATCH_RULE},
                  "F3": {"card-testing"}, "G1": {"high-risk-mcc"}, "X1": {"high-risk-mcc"}}
    got_rules = {e["alert"]["txn_id"]: {x["rule_id"] for x in e["alert"]["hits"]}
                 for e in expected.values()}
    for tid, rs in want_rules.items():  # the oracle agrees with the hand count
        assert got_rules.get(tid) == rs, (tid, got_rules.get(tid), rs)
    assert "W2" not in got_rules

    proc = s.run("--drain-timeout", "2")
    h.wait_until(lambda: not proc.alive or s.ready()[0] == 200, 30, "/readyz 200")
    assert proc.alive, proc.log_text(30)
    held = {}
    sent = 0
    # 1. the delivered check refused: the alert is sent (never lost), and
    #    the suppression record of W1 is written
    sent, held["exists"] = _phase(
        s, proc, ["-exists"], phases["exists"], sent,
        "WARN ledger: delivered check for alert ", None, ["+exists"])
    log = proc.log_text()
    assert "answered NOPERM" in log and "sending it" in log, log[-3000:]
    # 2. EVALSHA refused: the window update is sent again as EVAL at once;
    #    recording the delivered alerts waits (and with it the offsets);
    #    the lookups (EVAL) go on
    sent, held["evalsha"] = _phase(
        s, proc, ["-evalsha"], phases["evalsha"], sent,
        "ERROR ledger: recording delivered alert ",
        ["refused the record of delivered alerts: NOPERM", "'evalsha'"], ["+evalsha"])
    log = proc.log_text()
    assert "WARN state: window update failed: NOPERM this user has no permissions to run " \
           "the 'evalsha' command; sending the whole script (EVAL)" in log, log[-3000:]
    assert LOOKUP_REFUSED not in log, log[-3000:]
    # 3. EVALSHA and EVAL refused: the lookup is a script, so every event
    #    waits at its lookup and no window update is sent
    since = len(proc.log_text())
    sent, held["eval"] = _phase(
        s, proc, ["-evalsha", "-eval"], phases["eval"], sent,
        LOOKUP_REFUSED + "NOPERM this user has no permissions to run the 'eval' command; "
        "retrying every 200 ms (the events wait)",
        ["answered the exposure lookup NOPERM", "'eval'", "lookups retried every 200 ms"],
        ["+evalsha", "+eval"])
    log = proc.log_text()[since:]
    assert "INFO exposure: Redis 127.0.0.1:" in log and \
        "answers exposure lookups again" in log, log[-3000:]
    assert "window update failed" not in log, log[-3000:]
    # 4. the window keys refused: the lookups go on, the window update
    #    waits (the card's later events behind it)
    sent, held["window"] = _phase(
        s, proc, NO_WINDOW_KEYS, phases["window"], sent,
        "ERROR state: window update failed: NOPERM this user has no permissions to access "
        "one of the keys used as arguments; retrying every 200 ms",
        ["refused the window update: NOPERM"], ALL_KEYS, name="no-window-keys")
    # 5. EVAL refused when the marker changes: the set check fails
    since = len(proc.log_text())
    s.redis.call("ACL", "SETUSER", USER, "-eval")
    s.redis.call("SET", "cw:exposed", "fr-acl-generation-2")
    body = h.wait_until(lambda: _not_ready(s, "cannot check the exposed-card set", "NOPERM"),
                        10, "/readyz 503: the set check refused")
    m = s.metrics()
    assert m.get("cardwatch_exposed_set_ok") == 0 and m.get("cardwatch_ready") == 0, m
    h.wait_until(lambda: s.metrics().get("cardwatch_consumption_paused") == 1, 5,
                 "intake paused")
    assert "ERROR exposure: cannot check the exposed-card set" in proc.log_text()[since:], body
    s.send(phases["check"], name="no-check")
    s.redis.call("ACL", "SETUSER", USER, "+eval")
    sent += len(phases["check"])
    h.wait_until(lambda: _processed(s, sent) and s.ready()[0] == 200, 20,
                 "the set checked again and the held events processed")
    assert "INFO exposure: exposed-card set in Redis" in proc.log_text()[since:]
    assert s.metrics().get("cardwatch_exposed_set_ok") == 1
    # 6. HGET refused: EVAL is allowed, but the lookup script's read of a
    #    card bucket fails; Redis's answer says so, and the lookups wait
    since = len(proc.log_text())
    before = _rejected_calls(s)
    sent, held["hget"] = _phase(
        s, proc, ["-hget"], phases["hget"], sent, LOOKUP_REFUSED,
        lambda log: _lookup_refusal(log, r"can't run this command|"
                                         r"permissions to run the 'hget' command"),
        ["+hget"])
    after = _rejected_calls(s)
    assert after.get("eval", 0) == before.get("eval", 0), (before, after)
    assert "answers exposure lookups again" in proc.log_text()[since:]
    # 7. HSET refused: the suppression write of W1 waits, W2 with it
    sent, held["hset"] = _phase(
        s, proc, ["-hset"], phases["hset"], sent,
        "ERROR state: suppression write failed: NOPERM",
        ["refused the suppression write: NOPERM", "'hset'"], ["+hset"])
    m = s.metrics()
    assert m.get("cardwatch_suppressed_hits_total", rule=WATCH_RULE) == 1, m
    # 7b. XADD refused: the delivery record's script fails after its SET
    #     NX; sent again until Redis takes it, the alert is appended then
    #     (the delivered key alone does not count as recorded)
    sent, held["xadd"] = _phase(
        s, proc, ["-xadd"], phases["xadd"], sent,
        "ERROR ledger: recording delivered alert ",
        ["refused the record of delivered alerts: ERR The user executing the script can't "
         "run this command"], ["+xadd"])
    m = s.metrics()
    # a refusal is an answer: the connection stayed up all along
    assert m.get("cardwatch_redis_up") == 1
    assert m.get("cardwatch_redis_reconnects_total") == 1, proc.log_text()[-3000:]

    # 8. SIGTERM while the window update and the lookup are refused: the
    #    drain gives up after --drain-timeout (exit 1, the held events not
    #    committed), and the next run, the ACL restored, processes them
    s.redis.call("ACL", "SETUSER", USER, *NO_WINDOW_KEYS)
    s.send(phases["stop"], name="stop")
    h.wait_until(lambda: _not_ready(s, "refused the window update: NOPERM") and
                 s.metrics().get("cardwatch_in_flight_events") == 3, 10,
                 "/readyz 503 and the card's 3 events held")
    s.redis.call("ACL", "SETUSER", USER, "-eval")
    s.send(phases["stop-eval"], name="stop-eval")
    h.wait_until(lambda: _not_ready(s, "answered the exposure lookup NOPERM", "'eval'") and
                 s.metrics().get("cardwatch_in_flight_events") == 5, 10,
                 "/readyz 503 and 2 more events held")
    t0 = time.monotonic()
    rc = proc.stop(timeout=20, sig=signal.SIGTERM)
    held["stop"] = time.monotonic() - t0
    log = proc.log_text()
    assert rc == 1, f"exit {rc} after the drain timed out, want 1:\n{log[-3000:]}"
    assert "drain timed out with 5 event(s) unacknowledged" in log, log[-3000:]
    assert held["stop"] < 8, f"SIGTERM took {held['stop']:.1f}s with --drain-timeout 2"
    assert "evaluating with this transaction alone" not in log, log[-3000:]
    # a refusal retried every 200 ms is logged once per answer (again
    # after Redis accepted the command in between): the record in phases 2
    # and 7b, the window update in phases 4 and 8, the lookup in phases 3,
    # 6 and 8
    rejected = _rejected_calls(s)
    assert rejected.get("evalsha", 0) + rejected.get("eval", 0) >= 10, rejected
    assert log.count("ERROR ledger: recording delivered alert") == 2, log[-3000:]
    assert log.count("ERROR state: window update failed") == 2, log[-3000:]
    assert log.count(LOOKUP_REFUSED) == 3, log[-3000:]
    s.redis.call("ACL", "SETUSER", USER, *ALL_KEYS, "+eval")
    summary = cw.parse_summary(s.finish(s.run("--exit-at-end", name="run-2"), timeout=60))
    assert summary["events"] == len(phases["stop"]) + len(phases["stop-eval"]), summary
    cw.check_alerts(s.alerts(expect_count=len(expected)), expected, exact_once=True)
    _check_feeds(s, issuers, expected)
    _committed_all(s, len(txns))
    print(f"    ACL refusals: {len(txns)} events, {len(expected)} alerts; refused for "
          + ", ".join(f"{k} {v:.1f}s" for k, v in held.items())
          + "; calls refused " + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items()))
          + f"; {time.monotonic() - t_start:.1f}s")


def _unanswering_listener():
    """A loopback socket that listens but never accepts, its one-slot
    backlog full: a connect to it gets no answer. Returns (port, sockets
    to close)."""
    lsn = socket.socket()
    lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsn.bind(("127.0.0.1", h.free_port()))
    lsn.listen(0)
    port = lsn.getsockname()[1]
    held = [lsn]
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        held.append(c)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        raise h.Skip("a full backlog still accepts connections here")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return port, held


def test_a_redis_that_does_not_answer_pauses_intake_and_loses_nothing():
    """`cardwatch run` started against an address that takes no connection
    (a socket whose backlog is full) logs "connect timed out (300 ms)",
    /readyz is 503 naming Redis, cardwatch_redis_up 0; once a Redis listens
    there (and the breach is loaded) it goes on by itself. Mid-stream the
    Redis is paused with SIGSTOP: "no answer within 300 ms", then every
    reconnect's handshake times out ("no answer to ROLE"), /readyz 503,
    intake paused, events sent meanwhile wait; after SIGCONT every event is
    processed and every alert delivered exactly once."""
    t_start = time.monotonic()
    issuers = cw.three_issuers()
    mk = CardMaker(1202)
    exposed = mk.cards(["400001", "4000501", "510000", "52000042"], 10)
    clean = mk.cards(["400002", "510000"], 20)
    b1 = Breach("fr-hang", "2024-01-01", "2024-06-30", ["pan", "expiry"], exposed)
    rnd = random.Random(1202)
    txns = [txn(f"fh-{i:05d}", pan, BASE + rnd.randrange(60) * 86_400_000 // 4, rnd)
            for i, pan in enumerate(p for p in exposed + clean for _ in range(4))]
    rnd.shuffle(txns)
    expected = cw.expected_alerts(txns, [b1], issuers)
    part_a, part_b = txns[:len(txns) // 2], txns[len(txns) // 2:]

    port, held = _unanswering_listener()
    s = cw.Stack(issuers, redis=h.Redis(port=port, start=False), redis_ini="timeout_ms = 300\n")
    try:
        proc = s.run()
        h.wait_until(lambda: _log_has(proc, f"Redis 127.0.0.1:{port}: connect timed out (300 ms)"),
                     20, "the connect timeout logged")
        body = h.wait_until(lambda: _not_ready(s, f"Redis 127.0.0.1:{port} unavailable",
                                               "connect timed out"), 10, "/readyz 503")
        m = s.metrics()
        assert m.get("cardwatch_redis_up") == 0 and m.get("cardwatch_ready") == 0, body
        assert h.http_get(s.url + "/healthz")[0] == 200, "alive while not ready"
    finally:
        for sock in held:
            sock.close()
    s.redis.start()
    s.load(b1)
    h.wait_until(lambda: not proc.alive or s.ready()[0] == 200, 20,
                 "/readyz 200 once Redis answers and holds the set")
    assert proc.alive, proc.log_text(30)
    s.send(part_a, name="part-a")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") > 0, 30,
                 "the first events processed", interval=0.01)

    since = len(proc.log_text())
    s.redis.pause()
    try:
        h.wait_until(lambda: _log_has(proc, "(no answer within 300 ms); intake pauses", since),
                     10, "the lost connection logged")
        h.wait_until(lambda: _log_has(proc, "no answer to ROLE within 300 ms", since), 10,
                     "a reconnect's handshake timing out")
        body = h.wait_until(lambda: _not_ready(s, f"Redis 127.0.0.1:{port} unavailable"),
                            5, "/readyz 503 while Redis is stopped")
        m = s.metrics()
        assert m.get("cardwatch_redis_up") == 0, body
        assert m.get("cardwatch_consumption_paused") == 1, body
        s.send(part_b, name="part-b")  # arrives while Redis is stopped
        done = s.metrics().sum("cardwatch_events_total")
        assert done <= len(part_a), f"{done} events done while Redis was stopped"
    finally:
        s.redis.resume()
    m = h.wait_until(lambda: (lambda m: s.ready()[0] == 200 and
                              m.sum("cardwatch_events_total") == len(txns) and m)(s.metrics()),
                     30, f"/readyz 200 and all {len(txns)} events processed")
    assert m.get("cardwatch_redis_reconnects_total") >= 2, m
    assert m.sum("cardwatch_alerts_total") == len(expected)
    s.terminate(proc)
    cw.check_alerts(s.alerts(expect_count=len(expected)), expected, exact_once=True)
    print(f"    unanswering Redis: {len(txns)} events, {len(expected)} alerts; "
          f"{time.monotonic() - t_start:.1f}s")
