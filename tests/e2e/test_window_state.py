"""Window state (processor/state.c) under re-processing and bad clocks.

Same event, same alert: an event processed again - after kill -9 before
its offset was committed, or delivered twice in the input - must give the
alert it gave the first time, whatever arrived after it (later entries in
the card's window, pruning done for later event times). And no single
event dated in the future may switch a card's windows off.

The transactions topic has one partition, so the input order is the
sending order and every expectation below is computed by hand."""

import json

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker
from test_rules import DEFAULT_PACK, MIN, _t

BASE = cw.day_ms("2024-04-10") + 12 * 3_600_000  # 2024-04-10T12:00Z
HOUR = 60 * MIN
DAY = 24 * HOUR
INT64_MAX = 2**63 - 1


def _hits(alerts):
    """[(txn_id, sorted rule ids)] in topic order."""
    return [(a["txn_id"], sorted(x["rule_id"] for x in a.get("hits", [])))
            for _, _, a in alerts]


def _check_copies(got, expected, what):
    """Every alert copy in got [(txn_id, hits)] has its expected hits, and
    every expected txn alerted."""
    wrong = [(t, hs, expected.get(t)) for t, hs in got if expected.get(t) != hs]
    assert not wrong, f"{what}: alerts that differ from the first answer " \
                      f"(txn, got, expected): {wrong}"
    missing = set(expected) - {t for t, _ in got}
    assert not missing, f"{what}: no alert for {sorted(missing)}"


def test_reprocessing_after_kill_9_gives_the_first_answer():
    issuers = cw.three_issuers()
    mk = CardMaker(404)
    a, b = mk.card("400001"), mk.card("400002")
    breach = Breach("e2e-reproc", "2024-01-01", "2024-03-31",
                    ["pan", "expiry", "cvv2"], [a, b])
    C = BASE + 2 * DAY
    txns = [
        # a: small card-present payments at home, out of order in event
        # time. A1 is first: alone in its windows; gambling: high-risk-mcc.
        _t("A1", a, BASE + 5 * MIN, amount_minor=100, mcc=7995),
        # 4 minutes earlier than A1: A1 is after it in event time
        _t("A2", a, BASE + 1 * MIN, amount_minor=100),
        _t("A3", a, BASE + 2 * MIN, amount_minor=100),
        # A2, A3, A4 in (T - 10m, T]: card-testing
        _t("A4", a, BASE + 3 * MIN, amount_minor=100),
        _t("A5", a, BASE + 4 * MIN, amount_minor=150),
        # A1..A6 in the last 10 minutes: card-testing and velocity
        _t("A6", a, BASE + 6 * MIN, amount_minor=100),
        # A1 delivered again after all of them: same answer as the first
        # time (its windows then held A1 alone), not 5 transactions
        _t("A1", a, BASE + 5 * MIN, amount_minor=100, mcc=7995),
        # b: 3,500.00 within 24 h: spend-spike on B2 ...
        _t("B1", b, C, amount_minor=200000),
        _t("B2", b, C + HOUR, amount_minor=150000),
        # ... and 27 h later a small one, after which B1 and B2 are older
        # than the longest window (24 h) plus the allowed lateness (1 h):
        # pruned for B3, but still needed when B2 is evaluated again
        _t("B3", b, C + 27 * HOUR, amount_minor=1000),
    ]
    expected = {
        "A1": ["high-risk-mcc"],
        "A4": ["card-testing"],
        "A5": ["card-testing"],
        "A6": ["card-testing", "velocity"],
        "B2": ["spend-spike"],
    }
    # A1's second delivery gives the same alert id: evaluated again (its
    # rule hits count), but not sent again. Its answer shows in the rule
    # hits: a different answer would count under other rules.
    n_alerts = len(expected)
    hits_by_rule = {}
    for t, hs in list(expected.items()) + [("A1", expected["A1"])]:
        for x in hs:
            hits_by_rule[x] = hits_by_rule.get(x, 0) + 1
    # Nothing is committed before the kill (no auto-commit; SIGKILL skips
    # the final commit): the second run processes every event again, with
    # the window state of the whole stream already in Redis.
    s = cw.Stack(issuers, partitions=1,
                 extra_ini=f"[rules]\npath = {DEFAULT_PACK}\n"
                           "[kafka.consumer]\nenable.auto.commit = false\n")
    s.load(breach)
    s.send(txns)
    first = s.run(name="run-1")
    h.wait_until(lambda: len(s.alerts(timeout=2)) >= n_alerts, 60,
                 f"run 1 delivered {n_alerts} alerts")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") >= len(txns) and
                 s.metrics().sum("cardwatch_alerts_not_resent_total") == 1, 30,
                 "run 1 processed every event, A1's copy not sent again")
    got1 = _hits(s.alerts())
    assert len(got1) == n_alerts, got1
    _check_copies(got1, expected, "run 1")
    m = s.metrics()
    assert {r: m.sum("cardwatch_rule_hits_total", rule=r) for r in hits_by_rule} == \
        hits_by_rule and m.sum("cardwatch_rule_hits_total") == sum(hits_by_rule.values()), \
        (m.sum("cardwatch_rule_hits_total"), hits_by_rule)
    assert first.kill() != 0
    # As if run 1 had died before any delivery was recorded: run 2 sends
    # every alert again instead of skipping the ones already delivered
    # (ledger.h), so its answers can be compared with run 1's.
    r = s.redis.client()
    delivered = r.call("KEYS", "cw:delivered:*")
    assert len(delivered) == len(expected), delivered
    r.call("DEL", *delivered)

    out = s.finish(s.run("--exit-at-end", name="run-2"), timeout=120)
    summary = cw.parse_summary(out)
    assert summary["events"] == len(txns), summary
    assert summary["dead_letters"] == 0, summary
    got = _hits(s.alerts(expect_count=2 * n_alerts))
    # run 2 answered every event as run 1 did: same alerts, same hits
    # (the topic's partitions interleave the runs: compared as multisets)
    assert sorted(got) == sorted(got1 * 2), \
        f"runs 1 and 2 {sorted(got)}\nrun 1 twice {sorted(got1 * 2)}"
    _check_copies(got, expected, "runs 1 and 2")
    by_rule = {}
    for (_issuer, rule), n in summary["hits"].items():
        by_rule[rule] = by_rule.get(rule, 0) + n
    assert by_rule == hits_by_rule, (by_rule, hits_by_rule)


def test_future_dated_events_are_dead_letters_and_leave_windows_alone():
    issuers = cw.three_issuers()
    mk = CardMaker(405)
    f, g = mk.card("400001"), mk.card("400002")
    breach = Breach("e2e-future", "2024-01-01", "2024-03-31",
                    ["pan", "expiry", "cvv2"], [f, g])
    now = cw.wall_ms()
    t0 = now - HOUR
    future = [
        # sent first: each would become the card's newest event and prune
        # the window of every event after it
        _t("X1", f, now + 2 * DAY, amount_minor=100),
        _t("X2", f, cw.day_ms("2100-01-01"), amount_minor=100),
        _t("X3", f, cw.day_ms("9999-12-31"), amount_minor=100),
        _t("X4", f, INT64_MAX, amount_minor=100),
    ]
    txns = future + [_t(f"F{i}", f, t0 + (i - 1) * MIN, amount_minor=100)
                     for i in range(1, 7)]
    # a clock a minute ahead is within the allowed skew (5 min): accepted
    txns.append(_t("G1", g, now + MIN, mcc=7995))
    expected = {
        "F3": ["card-testing"],
        "F4": ["card-testing"],
        "F5": ["card-testing", "velocity"],
        "F6": ["card-testing", "velocity"],
        "G1": ["high-risk-mcc"],
    }
    s = cw.Stack(issuers, partitions=1, extra_ini=f"[rules]\npath = {DEFAULT_PACK}\n")
    s.load(breach)
    # `cardwatch send` stamps messages with the event time, which the
    # broker refuses this far ahead (log.message.timestamp.after.max.ms):
    # the future ones go as a producer stamping the time of sending would
    schema = h.ProtoSchema()
    h.produce(s.kafka.bootstraps, cw.TXN_TOPIC,
              [(t["txn_id"], schema.encode("Transaction", cw.to_proto(t))) for t in future],
              partition=0)
    s.send(txns[len(future):])
    summary = cw.parse_summary(s.finish(s.run("--exit-at-end"), timeout=120))
    assert summary["events"] == len(txns), summary
    assert summary["dead_letters"] == len(future), summary
    got = _hits(s.alerts(expect_count=len(expected)))
    assert sorted(got) == sorted(expected.items()), got
    dls = s.dead_letters(expect_count=len(future))
    reasons = sorted(dict(d.headers)["reason"].decode() for d in dls)
    assert reasons == [cw.REASON_FUTURE] * len(future), reasons
    for d in dls:
        doc = json.loads(d.value)
        assert doc["txn_id"] in {t["txn_id"] for t in future}, doc

    # replay of the same input: the same answer, the same dead letters
    src = s.dir / "future.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in txns))
    out = s.dir / "future-alerts.jsonl"
    res = s.cardwatch("replay", "--input", src, "--output", out,
                      "--rules", DEFAULT_PACK)
    err = res.stderr.decode()
    assert f"invalid event ({cw.REASON_FUTURE})" in err, err[-2000:]
    rep = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["txn_id"], sorted(x["rule_id"] for x in r["hits"])) for r in rep) \
        == sorted(expected.items()), rep


def test_reprocessing_after_kill_9_keeps_suppression():
    issuers = cw.three_issuers()
    mk = CardMaker(406)
    card = mk.card("510000")
    breach = Breach("e2e-supp-re", "2024-01-01", "2024-03-31", ["pan"], [card])
    rules_file = h.tmpdir("rules") / "supp.rules"
    rules_file.write_text(
        "rule any-cnp\n"
        "  severity: low\n"
        "  description: Card-not-present use of an exposed card\n"
        "  when: exposed and cnp\n"
        "  suppress: 1h\n")
    cnp = dict(channel="ecommerce", merchant_country="US", amount_minor=900)
    txns = [_t("S1", card, BASE, **cnp),
            _t("S2", card, BASE + 30 * MIN, **cnp),   # within 1h of S1: suppressed
            _t("S3", card, BASE + 60 * MIN, **cnp)]   # exactly 1h: alerts
    expected = {"S1": ["any-cnp"], "S3": ["any-cnp"]}
    s = cw.Stack(issuers, partitions=1,
                 extra_ini=f"[rules]\npath = {rules_file}\n"
                           "[kafka.consumer]\nenable.auto.commit = false\n")
    s.load(breach)
    # S1 is processed and committed (a clean exit commits) ...
    s.send(txns[:1], name="s1")
    s.finish(s.run("--exit-at-end", name="run-0"))
    # ... S2 and S3 are processed, never committed
    s.send(txns[1:], name="s2-s3")
    first = s.run(name="run-1")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") >= 2 and
                 len(s.alerts(timeout=2)) >= 2, 60, "run 1 processed 2 events, 2 alerts in all")
    got1 = _hits(s.alerts())
    _check_copies(got1, expected, "runs 0 and 1")
    assert first.kill() != 0
    r = s.redis.client()
    r.call("DEL", *r.call("KEYS", "cw:delivered:*"))
    # run 2 evaluates S2 again with S3's alert already recorded: S3 came
    # after S2, so S2 is still suppressed by S1
    summary = cw.parse_summary(s.finish(s.run("--exit-at-end", name="run-2"), timeout=120))
    assert summary["events"] == 2, summary
    got = _hits(s.alerts(expect_count=3))
    assert sorted(got) == sorted(expected.items()) + [("S3", ["any-cnp"])], got
