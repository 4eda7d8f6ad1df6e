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


def _expected_top_uses(txns, frauds, merchant, lookback_days=180):
    """[{day, uses}]: per UTC day, the first and (when later) the last use
    of `merchant` by each compromised card inside its look-back [first
    fraud - lookback, first fraud) - the points cpp's window rests on."""
    import datetime
    first_fraud = {}
    for row in frauds.read_text().splitlines()[1:]:
        pan, ff = row.split(",")
        ms = int(datetime.datetime.fromisoformat(ff.replace("Z", "+00:00")).timestamp() * 1000)
        first_fraud[pan] = min(ms, first_fraud.get(pan, ms))
    span = {}
    for pan, m, at in txns:
        ff = first_fraud.get(pan)
        if m != merchant or ff is None or not ff - lookback_days * DAY <= at < ff:
            continue
        lo, hi = span.get(pan, (at, at))
        span[pan] = (min(lo, at), max(hi, at))
    per = defaultdict(int)
    for lo, hi in span.values():
        per[_day(lo)] += 1
        if hi != lo:
            per[_day(hi)] += 1
    return [{"day": _iso(d), "uses": n} for d, n in sorted(per.items())]


def _cpp_files(s, *args):
    """`cardwatch cpp ARGS` on s's config: history files only, so no broker
    is started (Stack.cardwatch would start Kafka for any cpp)."""
    return h.run_tool([h.tool("cardwatch"), "cpp", "--config", s.config, *args], check=False)


def test_cpp_report_html_in_chromium():
    """`cardwatch cpp --report-html` on a simulated year with an injected
    breach: --report's top_uses_by_day is exactly the compromised cards'
    first and last uses at the top suspect per day (computed here from the
    history), and the page - opened offline in headless Chromium - draws
    the suspects' cases against expected and those uses per day over the
    estimated window, names the top suspect as significant, without a
    console error, and holds no card number or fingerprint. An unwritable
    path is exit 1 naming it."""
    _need_browser()
    from test_cpp import _gen
    s = cw.Stack(cw.three_issuers())
    hist, frauds, truth = _gen(s, "year")
    m = truth["merchant"]
    d = h.tmpdir("cpp-report")
    rep, html = d / "cpp.json", d / "cpp.html"
    res = _cpp_files(s, "--frauds", frauds, "--report", rep, "--report-html", html, hist)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert not (d / "cpp.html.partial").exists()
    doc = json.loads(rep.read_text())
    top = doc["suspects"][0]
    assert top["merchant"] == m and top["significant"], (truth, top)
    with open(hist) as f:
        txns = [(t["pan"], t["merchant_id"], t["event_time_ms"]) for t in map(json.loads, f)]
    want_uses = _expected_top_uses(txns, frauds, m)
    assert doc["top_uses_by_day"] == want_uses, (doc["top_uses_by_day"][:5], want_uses[:5])
    assert want_uses[0]["day"] == top["first_use"] and want_uses[-1]["day"] == top["last_use"]

    out = ARTIFACTS / f"cpp-report-{h.config.build.name}"
    out.mkdir(parents=True, exist_ok=True)
    page = browser_run("report.mjs", [html, out], "cpp-report-browser")
    assert page["status"] == "significant suspect", page["status"]
    charts = {c["id"]: c for c in page["charts"]}
    sus = charts["suspects"]
    assert sus["drawn"] and sus["labels"] == [x["merchant"] for x in doc["suspects"]], sus
    assert sus["data"][0] == [x["cases"] for x in doc["suspects"]], sus["data"]
    assert sus["data"][1] == [round(x["expected"], 1) for x in doc["suspects"]], sus["data"]
    uses = charts["top-uses"]
    assert uses["drawn"] and sum(uses["data"][0]) == sum(u["uses"] for u in want_uses), uses
    drawn = dict(zip(uses["labels"], uses["data"][0]))
    assert all(drawn[u["day"]] == u["uses"] for u in want_uses), "a day's uses drawn wrong"
    assert top["window_start"] in drawn and top["window_end"] in drawn, uses["labels"][:3]
    assert page["tiles"]["top suspect"] == m and page["tiles"]["significant"] == "yes", page
    assert page["tiles"]["compromised cards"] == f"{doc['cases']:,}", page["tiles"]
    text = (out / "report.txt").read_text()
    assert f"{top['window_start']} to {top['window_end']}" in text and "Bonferroni" in text

    # counts, merchant ids and dates only: no card number, no fingerprint
    raw = html.read_bytes()
    assert not h.text_card_numbers(text), "a card number on the page"
    pans = {t[0] for t in txns}
    for pan in pans:
        assert pan.encode() not in raw, "a card number in the report"
        assert cw.fingerprint(pan).split(":")[1].encode() not in raw, "a fingerprint in the report"
    assert (out / "report.png").stat().st_size > 10_000

    bad = d / "no-such-dir" / "x.html"
    short = d / "short.jsonl"   # a day of the history: the error is what counts
    with open(hist) as f:
        short.write_text("".join(next(f) for _ in range(1000)))
    res = _cpp_files(s, "--frauds", frauds, "--report-html", bad, short)
    err = res.stderr.decode()
    assert res.returncode == 1 and f"{bad}.partial: open: No such file" in err, err[-2000:]
    print(f"    cpp report: {len(raw):,} bytes, {m} with {sum(u['uses'] for u in want_uses)} uses "
          f"on {len(want_uses)} days; screenshot {out / 'report.png'}")
