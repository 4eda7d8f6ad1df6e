"""The issuer triage page (web/triage.html, built into cardwatch and served
by `cardwatch feed` at /) in a real browser against the real feed: Debian's
headless Chromium, driven by tests/browser/triage.mjs (playwright-core).

Alerts come from the whole pipeline (breach list in Redis, transactions
through the embedded Kafka, `cardwatch run` with a rule file that gives
every severity); the page signs in with a bearer token, lists them, filters,
records an outcome (and meets a 409), survives an outage and shows an alert
sent while it is open. The page's HTML and the rendered DOM hold no card
number. The screenshot is kept in build/artifacts/triage.png. Its chart
(Chart.js, served by the feed at /assets/chart-<version>.umd.js) and its
sort orders are checked against alerts with known event and detection
times (tests/browser/triage_chart.mjs; build/artifacts/triage-chart.png).

Needs Node.js, Chromium (/usr/bin/chromium) and tests/browser/node_modules:
`make deps` installs them. Without them the test fails, saying so."""

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker

REPO = Path(__file__).resolve().parents[2]
BROWSER_DIR = REPO / "tests" / "browser"
SCRIPT = BROWSER_DIR / "triage.mjs"
PAGE = REPO / "web" / "triage.html"
ARTIFACTS = REPO / "build" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGE_BUDGET = 36_000  # bytes: one small file, no framework (34 KB with the chart and sort;
# Chart.js itself is a separate, cached file: /assets/chart-<version>.umd.js)
T0 = cw.day_ms("2024-06-03") + 9 * 3_600_000

RULES = """\
# test_triage_page.py: one rule per severity, so every badge shows up
rule big-spend
  severity: critical
  description: 5,000.00 or more in one payment on an exposed card
  when: exposed and amount_minor >= 500000
rule cnp-use
  severity: high
  description: Card not present on an exposed card
  when: exposed and cnp
rule abroad
  severity: medium
  description: Exposed card used outside the issuer's country
  when: exposed and merchant_country != issuer_country
rule any-use
  severity: low
  description: Any use of an exposed card
  when: exposed
"""
SEV_ORDER = ["low", "medium", "high", "critical"]


class TokenIssuer(cw.Issuer):
    """An issuer whose feed token hash is in the config."""

    def __init__(self, *args, token, **kw):
        super().__init__(*args, **kw)
        self.token = token

    def ini(self):
        digest = hashlib.sha256(self.token.encode()).hexdigest()
        return super().ini() + f"token_sha256 = {digest}\n"


def _need_browser():
    missing = []
    if not shutil.which("node"):
        missing.append("Node.js (`node`)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"Chromium ({CHROMIUM}, Debian package chromium)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        missing.append("tests/browser/node_modules (npm ci in tests/browser)")
    if missing:
        raise AssertionError("the triage page test cannot run: missing " + "; ".join(missing)
                             + ". Run `make deps` (scripts/install-deps.sh installs them).")


def browser_run(script, args, name, on_step=None, timeout=60, env=None):
    """Runs tests/browser/SCRIPT with node (Debian's Chromium) and returns
    the JSON of its "RESULT {...}" line; on_step(step) is called for each
    "STEP <step>" line it prints while it runs (the test acts, the page
    sees it). Fails with the script's stderr when it exits non-zero or
    prints no result."""
    node = h.spawn(["node", BROWSER_DIR / script, *args], name=name, cwd=BROWSER_DIR,
                   stdout=subprocess.PIPE, extra_env=dict(env or {}, CHROMIUM=CHROMIUM))
    lines, result = [], None
    for raw in node.popen.stdout:
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if line.startswith("STEP ") and on_step is not None:
            on_step(line[len("STEP "):])
        elif line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    rc = node.wait(timeout)
    if rc != 0 or result is None:
        raise AssertionError(f"{script} failed (exit {rc}): "
                             f"{node.log_text(40).strip() or '(no stderr)'}\n"
                             f"stdout: {lines[-10:]}")
    return result


def _txn(txn_id, pan, at, **kw):
    t = {"txn_id": txn_id, "pan": pan, "expiry": "2612", "amount_minor": 4_250,
         "currency": "GBP", "mcc": 5411, "merchant_id": "m-shop", "merchant_country": "GB",
         "channel": "card_present", "entry_mode": "chip", "cvv2_presented": False,
         "response": "approved", "event_time_ms": at}
    t.update(kw)
    return t


def _hits(t, home):
    """Rule ids the test rules give transaction t of an exposed card."""
    hits = []
    if t["amount_minor"] >= 500_000:
        hits.append(("big-spend", "critical"))
    if t["channel"] in ("ecommerce", "moto"):
        hits.append(("cnp-use", "high"))
    if t["merchant_country"] != home:
        hits.append(("abroad", "medium"))
    hits.append(("any-use", "low"))
    return hits


def _get(url, token=None, timeout=10):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def _inline_hash(html, tag):
    import base64
    body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S).group(1)
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


def test_triage_page_in_chromium():
    _need_browser()
    t_start = time.monotonic()
    token = secrets.token_urlsafe(32)
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], name="Alpha Bank (test)", token=token)
    beta = cw.Issuer("beta", "US", ["510000"])
    mk = CardMaker(8080)
    cards = mk.cards(["400001", "400042", "400077"], 6)
    beta_card = mk.card("510000")
    clean = mk.card("400055")
    breach = Breach("e2e-triage", "2024-01-01", "2024-12-31", ["pan", "expiry", "cvv2"],
                    cards + [beta_card], description="triage page test")
    minute = 60_000
    shapes = [  # (channel, country, amount, currency): severities low..critical
        ("card_present", "GB", 4_250, "GBP"),        # low
        ("card_present", "FR", 12_999, "EUR"),       # medium
        ("ecommerce", "GB", 1_234_567, "JPY"),       # critical (big-spend): JPY has no minor unit
        ("moto", "GB", 8_800, "GBP"),                # high
        ("card_present", "DE", 305_125, "KWD"),      # medium: KWD has 3 decimals
        ("ecommerce", "US", 19_995, "USD"),          # high (+ abroad)
        ("card_present", "GB", 700_000, "GBP"),      # critical
        ("card_present", "GB", 99, "GBP"),           # low
        ("ecommerce", "GB", 45_000, "EUR"),          # high
        ("card_present", "NL", 2_500, "EUR"),        # medium
        ("card_present", "GB", 60_000, "GBP"),       # low
        ("moto", "IE", 15_000, "EUR"),               # high
    ]
    txns = [_txn(f"tp-{i:03d}", cards[i % len(cards)], T0 + i * minute, channel=ch,
                 merchant_country=cc, amount_minor=amt, currency=cur,
                 merchant_id=f"m-{i:03d}", mcc=5999 + i,
                 entry_mode="keyed" if ch != "card_present" else "chip")
            for i, (ch, cc, amt, cur) in enumerate(shapes)]
    txns.append(_txn("tp-clean", clean, T0 + 30 * minute))                 # no alert
    txns.append(_txn("tp-beta", beta_card, T0 + 31 * minute, merchant_country="US"))  # beta's
    live_txn = _txn("tp-live", cards[1], T0 + 90 * minute, channel="ecommerce",
                    merchant_country="ES", amount_minor=77_700, currency="EUR",
                    merchant_id="m-live")
    expected = {t["txn_id"]: _hits(t, "GB") for t in txns[:len(shapes)]}
    severity = {}
    for hits in expected.values():
        sev = max((s for _, s in hits), key=SEV_ORDER.index)
        severity[sev] = severity.get(sev, 0) + 1
    assert sorted(severity) == sorted(SEV_ORDER), severity  # every badge is exercised
    abroad = sum(1 for hits in expected.values() if ("abroad", "medium") in hits)

    d = h.tmpdir("triage")
    rules = d / "triage.rules"
    rules.write_text(RULES)
    s = cw.Stack([alpha, beta], partitions=1, extra_ini=f"[rules]\npath = {rules}\n")
    s.load(breach)
    s.send(txns)
    run = s.run()  # the live service: it also has to pick up the live alert

    feed_port = h.free_port()
    feed_ini = d / "feed.ini"
    feed_ini.write_text(s.config.read_text()
                        + f"\n[feed]\nlisten = 127.0.0.1:{feed_port}\n"
                        # its own admin port: `cardwatch run` has [http] listen
                        + f"\n[http]\nlisten = 127.0.0.1:{h.free_port()}\n")
    feed = h.spawn([h.tool("cardwatch"), "feed", "--config", feed_ini], name="cardwatch-feed")
    url = f"http://127.0.0.1:{feed_port}/"

    def stats():
        st, _, body = _get(url + "v1/stats", token, timeout=5)
        return json.loads(body) if st == 200 else None
    h.wait_until(lambda: (stats() or {}).get("alerts") == len(shapes), timeout=60,
                 what=f"{len(shapes)} alerts in alpha's feed (feed log: {feed.log})")
    t_feed_ready = time.monotonic()

    # ---- the page as served: the embedded file, its CSP, its size, no card
    st, headers, body = _get(url)
    assert st == 200, st
    headers = {k.lower(): v for k, v in headers.items()}
    assert body == PAGE.read_bytes().replace(b"@CHARTJS_VERSION@", _chartjs_version().encode()), \
        "the feed serves another page than web/triage.html"
    assert headers.get("content-type", "").startswith("text/html"), headers
    assert len(body) < PAGE_BUDGET, f"web/triage.html is {len(body)} bytes, over {PAGE_BUDGET}"
    csp = headers.get("content-security-policy", "")
    html = body.decode()
    for tag in ("script", "style"):
        assert _inline_hash(html, tag) in csp, f"CSP does not allow the page's <{tag}>: {csp}"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert not h.luhn_scan(body), "the page's HTML holds a card-number-like digit run"
    assert _get(url + "v1/alerts")[0] == 401 and _get(url + "v1/stats", "wrong")[0] == 401

    # ---- the browser run
    out = d / "browser"
    # the chart (event time, per hour): computed here from the transactions
    alerted = [{"event_time_ms": t["event_time_ms"], "severity": max(
        (sv for _, sv in expected[t["txn_id"]]), key=SEV_ORDER.index)} for t in txns[:len(shapes)]]
    live_sev = max((sv for _, sv in _hits(live_txn, "GB")), key=SEV_ORDER.index)
    chart_live = alerted + [{"event_time_ms": live_txn["event_time_ms"], "severity": live_sev}]
    spec = {"count": len(shapes),
            "pans": sorted({cw.mask(t["pan"]) for t in txns[:len(shapes)]}),
            "severity": severity, "rule": ["abroad", abroad],
            "live_alert_id": cw.alert_id(live_txn["txn_id"]), "live_pan": cw.mask(live_txn["pan"])}
    spec_path = d / "spec.json"
    spec_path.write_text(json.dumps(spec))
    node = h.spawn(["node", SCRIPT, url, token, out, spec_path], name="triage-browser",
                   cwd=BROWSER_DIR, stdout=subprocess.PIPE,
                   extra_env={"CHROMIUM": CHROMIUM, "TRIAGE_LIVE_TIMEOUT_MS": "60000"})
    lines, result, sent_live = [], None, None
    for raw in node.popen.stdout:
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if line == "STEP live-alert":
            sent_live = time.monotonic()
            s.send([live_txn], name="live")
        elif line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    rc = node.wait(30)
    if rc != 0 or result is None:
        raise AssertionError(f"the browser run failed (exit {rc}): "
                             f"{node.log_text(40).strip() or '(no stderr)'}\n"
                             f"stdout: {lines[-10:]}\nscreenshot and DOM: {out}")
    assert sent_live is not None, "the browser script never asked for the live alert"
    for name, xs in (("chart", alerted), ("chart_live", chart_live)):
        want = _chart_want(xs, "event_time_ms")[0]
        assert result[name] == want, f"{name}: {result[name]}\nexpected {want}"

    # ---- keep the screenshot
    shot = out / "triage.png"
    assert shot.is_file() and shot.stat().st_size > 10_000, "no screenshot"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "triage.png")
    shutil.copyfile(shot, d / "triage.png")

    # ---- what the page recorded is what the API and Redis say
    # (the feed's order is the order the pipeline finished the alerts in)
    listed = json.loads(_get(url + "v1/alerts?limit=100", token)[2])["alerts"]
    order = [x["alert"]["alert_id"] for x in listed]
    assert sorted(order) == sorted(cw.alert_id(t["txn_id"]) for t in txns[:len(shapes)]
                                   + [live_txn]), order
    newest, second = order[-2], order[-3]  # before the live alert
    assert result["outcomes"] == {newest: "confirmed_fraud", second: "legitimate"}, \
        (result["outcomes"], order)
    st, _, b = _get(url + f"v1/alerts/{newest}", token)
    rec = json.loads(b)
    assert st == 200 and rec["outcome"] == "confirmed_fraud", rec
    assert "<script>" in rec["note"], "the note was not stored as typed"
    rec2 = json.loads(_get(url + f"v1/alerts/{second}", token)[2])
    assert rec2["outcome"] == "legitimate", rec2
    final = stats()
    assert final["alerts"] == len(shapes) + 1, final
    assert final["by_outcome"].get("confirmed_fraud") == 1, final
    assert final["by_outcome"].get("legitimate") == 1, final
    assert _get(url + f"v1/alerts/{cw.alert_id('tp-beta')}", token)[0] == 404, \
        "alpha's token reads beta's alert"

    # ---- no card number in the page, the DOM or the console
    hexes = {cw.alert_id(t["txn_id"]) for t in txns + [live_txn]}
    hexes |= {cw.fingerprint(t["pan"]).split(":")[1] for t in txns + [live_txn]}
    texts = {n: (out / n).read_text(errors="replace") for n in ("dom.html", "dom.txt", "console.log")}
    version = re.search(r"triage\.rules@([0-9a-f]+)", texts["dom.txt"])
    assert version, "the rule-set version is not shown"
    hexes.add(version.group(1))
    for name, text in texts.items():
        for pan in mk.made:
            assert pan not in text, f"{name} holds test card number {cw.mask(pan)}"
        for x in sorted(hexes, key=len, reverse=True):
            text = text.replace(x, " ")
        found = h.luhn_scan(text)
        assert not found, f"{name} holds card-number-like digit runs: {[cw.mask(f) for f in found]}"
    for pan in spec["pans"] + [spec["live_pan"]]:
        assert pan in texts["dom.txt"], f"masked PAN {pan} is not on the page"

    # ---- both services stop cleanly
    s.terminate(run)
    rc = feed.stop(timeout=20)
    assert rc == 0, f"cardwatch feed exited {rc} after SIGTERM:\n{feed.log_text(30)}"

    timings = dict(result["timings"], feed_ready_s=round(t_feed_ready - t_start, 2),
                   test_s=round(time.monotonic() - t_start, 2))
    (ARTIFACTS / "triage-result.json").write_text(json.dumps(
        dict(result, timings=timings, page_bytes=len(body), csp=csp), indent=2) + "\n")


def _list_in_browser(url, token):
    """Signs in with tests/browser/triage_list.mjs: (rows top to bottom as
    [alert id, outcome cell text], the ids listed as unreviewed, the page's
    /v1/alerts requests, ms from sign-in to the loaded list)."""
    res = browser_run("triage_list.mjs", [url, token], "triage-list")
    return res["rows"], res["unreviewed"], res["requests"], res["ms"]


def test_triage_page_loads_a_large_feed_newest_first():
    """An issuer with thousands of alerts: the page asks for the newest
    first (order=newest, paging back with before=) and stops at 30 days
    or 5,000 alerts, instead of reading the feed from its start; then it
    follows new alerts from the newest cursor. Outcomes recorded earlier
    show in the list at once, and the Unreviewed filter leaves them out."""
    _need_browser()
    from test_feed import PREFIX, Feed, Store, _redis_only_ini, _stream
    from test_feed import TokenIssuer as FeedIssuer
    r = h.Redis()
    alpha = FeedIssuer("alpha", "GB", ["400000-400099"], token=secrets.token_urlsafe(32))
    feed = Feed(_redis_only_ini(r, [alpha]))
    url = f"http://127.0.0.1:{feed.port}/"
    store = Store(r)
    pans = CardMaker(4242).cards("400003", 4)
    # 40 alerts stored 40 days ago (stream ids are storage times), then 1,200 now
    old_ms = cw.wall_ms() - 40 * 86_400_000
    key = f"{PREFIX}:feed:alpha"
    for i in range(40):
        doc = store.synthetic("alpha", pans[i % 4])
        r.call("XADD", key, f"{old_ms}-{i}", "alert_id", doc["alert_id"],
               "alert", json.dumps(doc, separators=(",", ":")))
    for i in range(1200):
        store.record("alpha", store.synthetic("alpha", pans[i % 4]))
    want = [aid for _sid, aid, _a in _stream(r, "alpha")][::-1]
    labels = {"confirmed_fraud": "Confirmed fraud", "legitimate": "Legitimate",
              "card_blocked": "Card blocked"}
    outcome = {}
    for n, aid in enumerate(want[:1200:97]):   # reported earlier, by someone else
        o = list(labels)[n % 3]
        st, _hd, _b = feed.request("POST", f"/v1/alerts/{aid}/outcome", alpha.token,
                                   {"outcome": o})
        assert st == 201
        outcome[aid] = labels[o]
    rows, unreviewed, reqs, ms = _list_in_browser(url, alpha.token)
    assert [a for a, _o in rows] == want[:1200], \
        f"the page shows {len(rows)} rows, not the 1,200 of the last 30 days"
    shown = {a: o for a, o in rows if o}
    assert shown == outcome, f"outcomes shown {len(shown)}, recorded {len(outcome)}"
    assert unreviewed == [a for a in want[:1200] if a not in outcome]
    loads = [q for q in reqs if "wait=" not in q]
    assert loads and all("order=newest" in q and "include=outcome" in q for q in loads), loads
    assert len(loads) == 2, loads   # 1,000 + the 240 that reach back past 30 days
    print(f"    1,200 recent + 40 old alerts: {len(loads)} requests, {ms} ms to the list")
    # over 5,000 recent alerts: the newest 5,000, and nothing older is read
    for i in range(4800):
        store.record("alpha", store.synthetic("alpha", pans[i % 4]))
    want = [aid for _sid, aid, _a in _stream(r, "alpha")][::-1]
    rows, _u, reqs, ms = _list_in_browser(url, alpha.token)
    assert [a for a, _o in rows] == want[:5000], \
        f"the page shows {len(rows)} rows, not the newest 5,000"
    loads = [q for q in reqs if "wait=" not in q]
    assert len(loads) == 5 and all("order=newest" in q for q in loads), loads
    newest = _stream(r, "alpha")[-1][0]
    polls = [q for q in reqs if "wait=" in q]
    assert polls and f"after={newest}&" in polls[0] + "&", (polls, newest)
    print(f"    6,040 alerts: the newest 5,000 in {len(loads)} requests, {ms} ms to the list")
    feed.stop()


def _chartjs_version():
    return json.loads((REPO / "web" / "package-lock.json").read_text())[
        "packages"]["node_modules/chart.js"]["version"]


def _chart_want(alerts, key, sev=None):
    """What the page's chart must show for alerts (dicts) on time axis key
    (event_time_ms or detected_at_ms), computed here from the alerts: bars
    per hour when they span 3 days or less, else per day, every hour/day
    from the first to the last; stacked by severity."""
    hour, day = 3_600_000, 86_400_000
    xs = [a for a in alerts if sev is None or a["severity"] == sev]
    ts = [a[key] for a in xs]
    step = hour if max(ts) - min(ts) <= 3 * day else day
    first, last = min(ts) // step, max(ts) // step
    fmt = "%Y-%m-%d %H:00" if step == hour else "%Y-%m-%d"
    labels = [time.strftime(fmt, time.gmtime(b * step / 1000)) for b in range(first, last + 1)]
    sets = {s: [0] * len(labels) for s in ("critical", "high", "medium", "low")}
    for a in xs:
        sets[a["severity"]][a[key] // step - first] += 1
    return {"labels": labels, "sets": sets}, ("hour" if step == hour else "day"), len(xs)


def _order(alerts, key, newest=True):
    return [a["alert_id"] for a in sorted(alerts, key=lambda a: a[key], reverse=newest)]


def _check_asset(feed, page):
    """GET /assets/chart-<version>.umd.js: no token, the pinned bytes,
    cacheable for good, 304 for its ETag; the page loads exactly that path."""
    path = f"/assets/chart-{_chartjs_version()}.umd.js"
    assert f'<script src="{path}"></script>'.encode() in page, "the page loads another Chart.js"
    want = (REPO / "web" / "node_modules" / "chart.js" / "dist" / "chart.umd.js").read_bytes()
    st, hd, body = feed.request("GET", path)
    assert st == 200, (st, body[:200])
    assert body == want, "the feed serves other bytes than web/node_modules/chart.js"
    assert hd["content-type"] == "text/javascript; charset=utf-8", hd
    assert hd["cache-control"] == "public, max-age=31536000, immutable", hd
    assert hd.get("x-content-type-options") == "nosniff", hd
    etag = hd.get("etag", "")
    assert re.fullmatch(r'"sha256-[A-Za-z0-9_-]{43}"', etag), hd
    st, hd2, body = feed.request("GET", path, headers={"If-None-Match": etag})
    assert (st, body, hd2.get("etag")) == (304, b"", etag), (st, hd2, body[:100])
    assert hd2["cache-control"] == "public, max-age=31536000, immutable", hd2
    st, _h, _b = feed.request("GET", path, headers={"If-None-Match": f'"other", W/{etag}'})
    assert st == 304, st
    st, _h, body = feed.request("GET", path, headers={"If-None-Match": '"sha256-other"'})
    assert st == 200 and body == want, st
    st, hd3, body = feed.request("HEAD", path)
    assert (st, body, hd3.get("content-length")) == (200, b"", str(len(want))), (st, hd3)
    st, hd4, _b = feed.request("POST", path, body="x")
    assert st == 405 and hd4.get("allow") == "GET, HEAD", (st, hd4)
    assert feed.request("GET", "/assets/chart-0.0.1.umd.js")[0] == 404
    assert feed.request("GET", path + "x")[0] == 404


def test_triage_page_chart_and_sort():
    """The triage page's chart and its sort orders, against alerts stored
    with known event and detection times (Store: as the ledger stores them)
    in an order that is neither: 24 alerts whose event times span 2.5 days
    (bars per hour) and detection times 6 days (bars per day). In Chromium:
    the list is by event time, newest first, by default; by detection time
    and oldest first on request; the chart (Chart.js, served by the feed)
    has exactly the buckets and per-severity counts computed here, follows
    the severity filter and the sort's time axis, and counts an alert
    stored while the page is open; no CSP violation, no console error.
    The Chart.js route answers without a token with the pinned bytes,
    long-lived caching and an ETag (304 when it matches)."""
    _need_browser()
    import random
    from test_feed import Feed, Store, _redis_only_ini
    from test_feed import TokenIssuer as FeedIssuer
    r = h.Redis()
    alpha = FeedIssuer("alpha", "GB", ["400000-400099"], token=secrets.token_urlsafe(32))
    feed = Feed(_redis_only_ini(r, [alpha]))
    url = f"http://127.0.0.1:{feed.port}/"
    _st, _hd, page = feed.request("GET", "/")
    _check_asset(feed, page)

    rnd = random.Random(15)
    hour, e0, d0 = 3_600_000, cw.day_ms("2024-05-01"), cw.day_ms("2024-05-10")
    pans = CardMaker(1515).cards("400007", 4)
    sevs = ["critical"] * 3 + ["high"] * 8 + ["medium"] * 6 + ["low"] * 7
    ev = rnd.sample(range(60), len(sevs))        # distinct hours in 2.5 days
    dt = rnd.sample(range(6 * 24), len(sevs))    # distinct hours in 6 days
    store, alerts = Store(r), []
    for i, sev in enumerate(sevs):
        a = store.synthetic("alpha", pans[i % 4], severity=sev,
                            event_time_ms=e0 + ev[i] * hour + rnd.randrange(hour))
        a["detected_at_ms"] = d0 + dt[i] * hour + rnd.randrange(hour)
        alerts.append(a)
    for a in rnd.sample(alerts, len(alerts)):    # stored in a third order
        assert store.record("alpha", a)[0] == 1
    assert _order(alerts, "event_time_ms") != _order(alerts, "detected_at_ms")
    live = store.synthetic("alpha", pans[0], severity="critical",
                           event_time_ms=e0 + 30 * hour + 5)
    live["detected_at_ms"] = d0 + 3 * hour

    out = h.tmpdir("triage-chart")
    def step(name):
        if name == "live-alert":
            assert store.record("alpha", live)[0] == 1
    res = browser_run("triage_chart.mjs", [url, alpha.token, out], "triage-chart", step)
    shot = out / "triage-chart.png"
    assert shot.is_file() and shot.stat().st_size > 10_000, "no screenshot"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "triage-chart.png")

    assert res["csp"] == [], f"CSP violations: {res['csp']}"
    assert res["errors"] == [], f"console errors: {res['errors']}"
    assert res["version"] == _chartjs_version(), res["version"]
    path = f"/assets/chart-{_chartjs_version()}.umd.js"
    assert [(x["path"], x["status"]) for x in res["assets"]] == [(path, 200)], res["assets"]
    st = {s["state"]: s for s in res["states"]}
    cases = [  # state, sort value, time axis, newest first, severity, alerts, header
        ("event", "event", "event_time_ms", True, None, alerts, "Event time (UTC)"),
        ("detected", "detected", "detected_at_ms", True, None, alerts, "Detected (UTC)"),
        ("event-asc", "event-asc", "event_time_ms", False, None, alerts, "Event time (UTC)"),
        ("high", "event", "event_time_ms", True, "high", alerts, "Event time (UTC)"),
        ("live", "event", "event_time_ms", True, None, alerts + [live], "Event time (UTC)"),
    ]
    for name, sort, key, newest, sev, xs, header in cases:
        s = st[name]
        assert s["sort"] == sort and s["header"] == header, (name, s["sort"], s["header"])
        listed = [a for a in xs if sev is None or a["severity"] == sev]
        assert s["rows"] == _order(listed, key, newest), f"{name}: rows in another order"
        assert s["times"] == [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(
            a[key] // 1000)) for a in sorted(listed, key=lambda a: a[key], reverse=newest)], name
        want, unit, n = _chart_want(xs, key, sev)
        assert not s["hidden"] and s["chart"] == want, \
            f"{name}: chart {s['chart']}\nexpected {want}"
        assert f"Alerts per {unit} by {'event' if key == 'event_time_ms' else 'detection'} time" \
            in s["title"] and f"{n} alerts" in s["title"], (name, s["title"])
        assert s["drawn"] > 1000, f"{name}: the chart canvas is blank ({s['drawn']} pixels)"
    feed.stop()
