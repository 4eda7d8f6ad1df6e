"""The rule language live: the default pack through Kafka and Redis against
a hand-computed list of hits, suppression with state in Redis, hot reload
(SIGHUP and HTTP) with a broken file, and the analysts' offline tools.

The transactions topic has one partition here, so the processing order is
the sending order and every window below can be computed by hand."""

import json
import signal
import urllib.request
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PACK = REPO / "rules" / "default.rules"
BASE = cw.day_ms("2024-04-10") + 12 * 3_600_000  # 2024-04-10T12:00Z
MIN = 60_000


def _t(txn_id, pan, at, **kw):
    """A transaction with boring defaults, so only what a case sets
    matters."""
    t = {"txn_id": txn_id, "pan": pan, "expiry": "2612", "amount_minor": 5000,
         "currency": "EUR", "mcc": 5411, "merchant_id": "m-1",
         "merchant_country": "GB", "channel": "card_present",
         "entry_mode": "chip", "cvv2_presented": False,
         "response": "approved", "event_time_ms": at}
    t.update(kw)
    return t


def _hits_by_txn(alerts):
    out = {}
    for _, _, a in alerts:
        hits = sorted(x["rule_id"] for x in a.get("hits", []))
        prev = out.setdefault(a["txn_id"], hits)
        assert prev == hits, f"copies of {a['txn_id']} differ: {prev} vs {hits}"
    return out


def _post(url):
    req = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_default_pack_end_to_end():
    issuers = cw.three_issuers()  # alpha: home GB, beta: home US
    mk = CardMaker(303)
    a, b, c, d = (mk.card("400001"), mk.card("510000"), mk.card("400002"),
                  mk.card("400003"))
    breach = Breach("e2e-rules", "2024-01-01", "2024-03-31",
                    ["pan", "expiry", "cvv2"], [a, b, c])
    txns = [
        # a: first use, card present at home: exposed but no rule holds
        _t("A1", a, BASE),
        # card-not-present: cnp-use; 2 in 10m, not yet card testing
        _t("A2", a, BASE + 1 * MIN, channel="ecommerce", amount_minor=150),
        # third small one within 10m: card-testing too
        _t("A3", a, BASE + 2 * MIN, channel="ecommerce", amount_minor=120),
        # 4th within 10m, small, declined; card present: card-testing only
        _t("A4", a, BASE + 3 * MIN, amount_minor=90, response="declined"),
        # 5th in 1h: velocity; gambling: high-risk-mcc; 2nd decline
        _t("A5", a, BASE + 4 * MIN, amount_minor=20000, mcc=7995,
           merchant_country="US", response="declined"),
        # moto abroad, 3rd decline in 1h, 6th in 1h; 24h sum 275,360
        _t("A6", a, BASE + 5 * MIN, channel="moto", entry_mode="keyed",
           amount_minor=250000, merchant_country="US", response="declined"),
        # 2 h later: the 1h windows are empty again; 24h sum 305,360
        _t("A7", a, BASE + 120 * MIN, amount_minor=30000),
        # A3 delivered again: counted once, same alert id, same hits (its
        # windows at its own event time do not see A4..A7)
        _t("A3", a, BASE + 2 * MIN, channel="ecommerce", amount_minor=120),
        # b: home US, cnp at home: cnp-use only
        _t("B1", b, BASE, channel="ecommerce", amount_minor=100,
           merchant_country="US"),
        # exactly 10m later: B1 is outside (T - 10m, T]
        _t("B2", b, BASE + 10 * MIN, channel="ecommerce", amount_minor=100,
           merchant_country="US"),
        _t("B3", b, BASE + 10 * MIN + 1, channel="ecommerce", amount_minor=100,
           merchant_country="US"),
        _t("B4", b, BASE + 10 * MIN + 2, channel="ecommerce", amount_minor=100,
           merchant_country="US"),
        # c: listed, but used before its breach window started: nothing
        _t("C1", c, cw.day_ms("2023-12-31"), channel="ecommerce",
           amount_minor=100),
        # d: clean card: no rule work at all
        _t("D1", d, BASE, channel="ecommerce", amount_minor=100, mcc=7995),
    ]
    expected = {
        "A2": ["cnp-use"],
        "A3": ["card-testing", "cnp-use"],
        "A4": ["card-testing"],
        "A5": ["high-risk-mcc", "velocity"],
        "A6": ["cnp-use", "cross-border-cnp", "declined-burst", "velocity"],
        "A7": ["spend-spike"],
        "B1": ["cnp-use"],
        "B2": ["cnp-use"],
        # B1 is outside (T - 10m, T] for B3 too (T - 10m = BASE + 1 ms)
        "B3": ["cnp-use"],
        # B2, B3 and B4 within 10m, all small: card testing
        "B4": ["card-testing", "cnp-use"],
    }
    s = cw.Stack(issuers, partitions=1,
                 extra_ini=f"[rules]\npath = {DEFAULT_PACK}\n")
    s.load(breach)
    s.send(txns)
    out = s.finish(s.run("--exit-at-end"), timeout=120)
    summary = cw.parse_summary(out)
    assert summary["events"] == len(txns), summary
    got = s.alerts(expect_count=len(expected))
    hits = _hits_by_txn(got)
    assert hits == expected, f"got {hits}"
    ids = {x["alert_id"] for _, _, x in got}
    assert ids == {cw.alert_id(t) for t in expected}
    severity = {"A5": "SEVERITY_HIGH",  # high-risk-mcc high, velocity medium
                "A6": "SEVERITY_HIGH",  # cnp-use high, the rest medium
                "A7": "SEVERITY_HIGH"}
    for _, _, x in got:
        assert x["ruleset_version"].startswith("default.rules@"), x
        if x["txn_id"] in severity:
            assert x["severity"] == severity[x["txn_id"]], x
    # window state lives in Redis, only for exposed cards, keyed by
    # fingerprint, in the live namespace
    keys = [k.decode() for k in s.redis.client().call("KEYS", "*:live:win:*")]
    fps = {cw.fingerprint(p).split(":")[1] for p in (a, b, c)}
    assert keys and all(k.rsplit(":", 1)[1] in fps for k in keys), keys


def test_suppress_and_hot_reload():
    issuers = cw.three_issuers()
    mk = CardMaker(404)
    card = mk.card("510000")
    breach = Breach("e2e-supp", "2024-01-01", "2024-03-31", ["pan"], [card])
    rules_file = h.tmpdir("rules") / "live.rules"
    rules_file.write_text(
        "# one rule, quiet for an hour after it fired on a card\n"
        "rule any-cnp\n"
        "  severity: low\n"
        "  description: Card-not-present use of an exposed card\n"
        "  when: exposed and cnp\n"
        "  suppress: 1h\n")
    s = cw.Stack(issuers, partitions=1, extra_ini=f"[rules]\npath = {rules_file}\n")
    s.load(breach)
    run = s.run(name="live")
    h.wait_until(lambda: s.ready()[0] == 200 and
                 s.metrics().get("cardwatch_assigned_partitions") == 1, 30,
                 "cardwatch ready")
    cnp = dict(channel="ecommerce", merchant_country="US", amount_minor=900)
    s.send([_t("S1", card, BASE, **cnp),
            _t("S2", card, BASE + 30 * MIN, **cnp),   # within 1h: suppressed
            _t("S3", card, BASE + 60 * MIN, **cnp),   # exactly 1h: alerts
            _t("S1", card, BASE, **cnp)])             # redelivery: same alert
    # the redelivered S1 gives the same alert id, which is not sent again
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") >= 4 and
                 s.metrics().sum("cardwatch_alerts_not_resent_total") == 1 and
                 len(s.alerts()) >= 2, 60,
                 "4 events processed, 2 alerts out, S1's copy not resent")
    m = s.metrics()
    assert m.get("cardwatch_suppressed_hits_total", rule="any-cnp") == 1
    assert len(s.alerts()) == 2
    hits = _hits_by_txn(s.alerts())
    assert hits == {"S1": ["any-cnp"], "S3": ["any-cnp"]}, hits
    v1 = h.http_get(s.url + "/admin/rules")[1].strip()
    assert v1.startswith("live.rules@"), v1

    # A broken file: SIGHUP and the HTTP call refuse it, the set stays.
    rules_file.write_text("rule broken\n  severity: extreme\n  when: exposed\n")
    run.send_signal(signal.SIGHUP)
    h.wait_until(lambda: s.metrics().get("cardwatch_rules_reloads_total",
                                         result="refused") == 1, 10,
                 "SIGHUP reload refused")
    status, body = _post(s.url + "/admin/rules/reload")
    assert status == 422 and "live.rules:2:" in body, (status, body)
    assert h.http_get(s.url + "/admin/rules")[1].strip() == v1
    assert "reload refused" in run.log_text()

    # A good file: the new set takes over, alerts record its version.
    rules_file.write_text(
        "rule moto-only\n"
        "  severity: critical\n"
        "  description: Mail or phone order on an exposed card\n"
        "  when: exposed and channel == moto\n")
    status, body = _post(s.url + "/admin/rules/reload")
    assert status == 200 and "live.rules@" in body, (status, body)
    v2 = h.http_get(s.url + "/admin/rules")[1].strip()
    assert v2 != v1
    s.send([_t("S4", card, BASE + 90 * MIN, **cnp),
            _t("S5", card, BASE + 91 * MIN, **dict(cnp, channel="moto"))])
    h.wait_until(lambda: "S5" in _hits_by_txn(s.alerts()), 30, "S5 alerted")
    hits = _hits_by_txn(s.alerts())
    assert "S4" not in hits and hits["S5"] == ["moto-only"], hits
    s5 = [x for _, _, x in s.alerts() if x["txn_id"] == "S5"][0]
    assert s5["ruleset_version"] == v2
    assert 'cardwatch_ruleset_info{version="%s"} 1' % v2 in \
        h.http_get(s.url + "/metrics")[1]
    s.terminate(run)


def test_rules_check_and_test_offline():
    d = h.tmpdir("offline")
    good = d / "ok.rules"
    good.write_text(DEFAULT_PACK.read_text())
    bad = d / "bad.rules"
    bad.write_text("rule a\n  severity: high\n  description: bad window\n"
                   "  when: exposed and count(10x) > 1\n")
    r = h.run_tool([h.tool("cardwatch"), "rules", "check", good, bad], check=False)
    out = r.stdout.decode()
    assert r.returncode == 1, out
    assert f"{good}: ok (7 rules" in out, out
    assert f"{bad}:4:" in out, out

    mk = CardMaker(505)
    card, clean = mk.card("400001"), mk.card("400002")
    (d / "list.csv").write_text(f"pan,expiry\n{card},2612\n")
    txns = [_t("O1", card, BASE, channel="ecommerce", amount_minor=150),
            _t("O2", card, BASE + MIN, channel="ecommerce", amount_minor=150),
            _t("O3", card, BASE + 2 * MIN, channel="ecommerce", amount_minor=150),
            _t("O4", clean, BASE, channel="ecommerce")]
    (d / "txns.jsonl").write_text("".join(json.dumps(t) + "\n" for t in txns)
                                  + "not json\n")
    r = h.run_tool([h.tool("cardwatch"), "rules", "test", DEFAULT_PACK,
                    "--input", d / "txns.jsonl", "--exposed", d / "list.csv",
                    "--window-start", "2024-01-01", "--elements", "pan,expiry"],
                   check=False)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln[:2] in ("O1", "O2", "O3")}
    assert "cnp-use" in lines["O1"] and "card-testing" not in lines["O1"], out
    assert "card-testing" in lines["O3"], out
    assert "O4" not in lines
    assert "txns.jsonl:5:" in out, out  # the bad line, by number
    assert card not in out and clean not in out, "a PAN in the output"
    assert cw.mask(card) in out


def test_window_state_survives_a_redis_restart():
    """Two small payments before Redis restarts, the third after it: the
    window in Redis still holds the first two (persistence), the restarted
    Redis has lost its script cache (NOSCRIPT, then EVAL), and card-testing
    fires on the third."""
    issuers = cw.three_issuers()
    mk = CardMaker(606)
    card = mk.card("400001")
    breach = Breach("e2e-restart", "2024-01-01", "2024-03-31", ["pan"], [card])
    s = cw.Stack(issuers, partitions=1,
                 extra_ini=f"[rules]\npath = {DEFAULT_PACK}\n")
    s.load(breach)
    run = s.run(name="live")
    h.wait_until(lambda: s.metrics().get("cardwatch_assigned_partitions") == 1, 30,
                 "cardwatch assigned")
    small = dict(amount_minor=100, merchant_country="GB")
    s.send([_t("R1", card, BASE, **small), _t("R2", card, BASE + MIN, **small)])
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") >= 2, 30,
                 "2 events processed")
    s.redis.restart(keep_data=True)
    h.wait_until(lambda: s.metrics().get("cardwatch_redis_up") == 1 and
                 s.ready()[0] == 200, 30, "Redis back")
    s.send([_t("R3", card, BASE + 2 * MIN, **small)])
    h.wait_until(lambda: "R3" in _hits_by_txn(s.alerts()), 30, "R3 alerted")
    assert _hits_by_txn(s.alerts()) == {"R3": ["card-testing"]}
    s.terminate(run)
