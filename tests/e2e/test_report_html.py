"""`cardwatch replay --report-html FILE`: the analyst's picture of when the
misuse happened - one self-contained page (Chart.js built into the
binary) with, per breach, the transactions on its exposed cards and the
alerts per day from the breach's window start, and the alerts by rule,
issuer and severity, and the "already misused" count.

Expectations come from the inputs: which transactions fall on which
breach's cards after its window start (the documented semantics), and the
alerts of the default pack from oracle's model of it. The page is opened
from disk in Debian's headless Chromium with every request outside the
file refused (it must open offline), and must draw exactly those counts
with no console error; its text and bytes must hold no card number and no
card fingerprint. The screenshot is kept in
build/artifacts/report-<build>/report.png.
The JSON report (--report) carries the same timeline."""

import json
import random
from collections import defaultdict

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn
from test_replay_file import DEFAULT_PACK, _pack_alerts
from test_triage_page import ARTIFACTS, _need_browser, browser_run

DAY = 86_400_000


def _day(ms):
    return ms - ms % DAY


def _expected_timeline(txns, breaches, alerts):
    """[{breach_id, window_start_ms, window_end_ms, exposed, alerts, days:
    [[day_ms, exposed, alerts], ...]}] in the order the replay first meets
    each breach (a transaction on its cards, after its window start)."""
    per = {}
    order = []

    def slot(b):
        if b.id not in per:
            per[b.id] = defaultdict(lambda: [0, 0])
            order.append(b)
        return per[b.id]
    by_id = {b.id: b for b in breaches}
    alerted = defaultdict(list)
    for a in alerts:
        alerted[a["txn_id"]].append(a)
    for t in txns:
        for b in breaches:
            if t["pan"] in b.card_set and t["event_time_ms"] >= b.start_ms:
                slot(b)[_day(t["event_time_ms"])][0] += 1
        for a in alerted[t["txn_id"]]:
            for ab in a["breaches"]:
                slot(by_id[ab["breach_id"]])[_day(a["event_time_ms"])][1] += 1
    out = []
    for b in order:
        days = sorted([d, e, a] for d, (e, a) in per[b.id].items())
        out.append({"breach_id": b.id, "window_start_ms": b.start_ms, "window_end_ms": b.end_ms,
                    "exposed": sum(x[1] for x in days), "alerts": sum(x[2] for x in days),
                    "days": days})
    return out


def _dense(b):
    """The page's bars for breach b: every day from max(window start, first
    day) to the last, zeros included."""
    first = max(b["window_start_ms"], b["days"][0][0])
    last = b["days"][-1][0]
    at = {d: (e, a) for d, e, a in b["days"]}
    labels, exposed, alerts = [], [], []
    for d in range(first, last + 1, DAY):
        labels.append(_iso(d))
        exposed.append(at.get(d, (0, 0))[0])
        alerts.append(at.get(d, (0, 0))[1])
    return labels, exposed, alerts


def _iso(ms):
    import datetime
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


def test_replay_report_html_in_chromium():
    """Two breaches (one card in both, windows starting on different days),
    two issuers, transactions over two weeks including some before a
    window start: the JSON and the HTML report hold exactly the expected
    timeline and counts, the page draws them offline without an error, and
    shows no card number or fingerprint."""
    _need_browser()
    acme = cw.Issuer("acme", "GB", ["400000-400099"])
    globex = cw.Issuer("globex", "FR", ["510000-510099"])
    mk = CardMaker(7311)
    a_cards = mk.cards("400001", 5) + mk.cards("510001", 2)
    b_cards = mk.cards("400002", 3) + [a_cards[0]]
    ba = Breach("rep-a", "2024-02-20", "2024-03-31", ["pan", "expiry", "cvv2"], a_cards)
    bb = Breach("rep-b", "2024-03-01", "2024-04-30", ["pan", "expiry"], b_cards)
    clean = mk.cards("400009", 6) + mk.cards("510009", 3)
    rnd = random.Random(31)
    txns = []
    for i in range(260):
        pan = rnd.choice(a_cards + b_cards + clean)
        at = cw.day_ms("2024-02-16") + rnd.randrange(0, 16 * DAY)   # some before both starts
        amount = rnd.choice([150, 2_000, 45_000, 320_000])
        txns.append(txn(f"rep-{i:04d}", pan, at, rnd, amount_minor=amount))
    txns.sort(key=lambda t: t["event_time_ms"])
    assert any(t["pan"] in bb.card_set and t["event_time_ms"] < bb.start_ms for t in txns)

    s = cw.Stack([acme, globex], extra_ini=f"[rules]\npath = {DEFAULT_PACK}\n")
    for b in (ba, bb):
        s.load(b)
    want_alerts = _pack_alerts(txns, [ba, bb], [acme, globex])
    want = _expected_timeline(txns, [ba, bb], want_alerts)
    assert len(want) == 2 and all(b["alerts"] > 0 for b in want), want

    d = h.tmpdir("report")
    inp = d / "in.jsonl"
    inp.write_text("".join(json.dumps(t) + "\n" for t in txns))
    html = d / "report.html"
    res = s.cardwatch("replay", "--input", inp, "--output", d / "alerts.jsonl", "--report",
                      d / "report.json", "--report-html", html, "--no-progress", check=False)
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 0, err[-3000:]
    assert not (d / "report.html.partial").exists()

    doc = json.loads((d / "report.json").read_text())
    assert doc["timeline"] == want, json.dumps(doc["timeline"])[:2000]
    assert doc["timeline_complete"] is True
    assert doc["alerts"] == len(want_alerts)

    # one directory per build: the plain and the ASan run go side by side
    out = ARTIFACTS / f"report-{h.config.build.name}"
    out.mkdir(parents=True, exist_ok=True)
    page = browser_run("report.mjs", [html, out], "report-browser")
    assert page["status"] == "complete", page["status"]
    charts = {c["id"]: c for c in page["charts"]}
    for i, b in enumerate(want):
        labels, exposed, alerts = _dense(b)
        c = charts[f"timeline-{i}"]
        assert c["drawn"] and c["labels"] == labels, (b["breach_id"], c["labels"][:5], labels[:5])
        assert c["data"] == [exposed, alerts], (b["breach_id"], c["data"], exposed, alerts)
    by_rule = defaultdict(int)
    by_issuer = defaultdict(int)
    for a in want_alerts:
        by_issuer[a["issuer_id"]] += 1
        for x in a["hits"]:
            by_rule[x["rule_id"]] += 1
    rule_chart = charts["by-rule"]
    assert dict(zip(rule_chart["labels"], rule_chart["data"][0])) == dict(by_rule), rule_chart
    issuer_chart = charts["by-issuer"]
    assert dict(zip(issuer_chart["labels"], issuer_chart["data"][0])) == dict(by_issuer)
    misused = len({a["card_fingerprint"] for a in want_alerts})
    assert page["tiles"]["already misused cards"] == f"{misused:,}", page["tiles"]
    assert page["tiles"]["alerts"] == f"{len(want_alerts):,}", page["tiles"]

    # counts only: no card number, no fingerprint, in the file or on screen
    raw = html.read_bytes()
    text = (out / "report.txt").read_text()
    for pan in set(t["pan"] for t in txns):
        assert pan.encode() not in raw and pan not in text, "a card number in the report"
    for fp in {a["card_fingerprint"].split(":")[1] for a in want_alerts}:
        assert fp.encode() not in raw, "a card fingerprint in the report"
    assert (out / "report.png").stat().st_size > 10_000
    print(f"    report: {len(raw):,} bytes, {len(want_alerts)} alerts, "
          f"{sum(len(_dense(b)[0]) for b in want)} days drawn; screenshot {out / 'report.png'}")
