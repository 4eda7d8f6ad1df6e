"""`cardwatch cpp`: common-point-of-purchase analysis on a simulated year
(`cardwatch gen history`): the injected merchant ranks first with its
window, the suspected breach's cards are exactly those that used it in the
window and load as a suspected breach into a real Redis; no suspect
without a breach; the same ranking from a file, from the topic and from
the feed's confirmed_fraud outcomes; errors that name the place."""
import csv
import datetime
import json

import harness as h
import cwstack as cw

DAY = 86_400_000
# a simulated year small enough for a test, large enough for ~90 skimmed
# cards and ~45 of them defrauded (seed 7: M000551, 2024-04-01..05-30)
SIM = ["--count", "300000", "--cards", "5000", "--merchants", "1000", "--seed", "7"]


def _ms(text):
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _day(text):
    return _ms(text + "T00:00:00Z") // DAY


# no breach: half the size does (only the absence of a suspect is checked)
QUIET = ["--count", "150000", "--cards", "2500", "--merchants", "500", "--seed", "7"]


def _gen(s, name, *extra, sim=SIM):
    hist, frauds, truth = (s.dir / f"{name}.jsonl", s.dir / f"{name}-frauds.csv",
                           s.dir / f"{name}-truth.json")
    res = h.run_tool([h.tool("cardwatch"), "gen", "history", "--config", s.config, *sim, *extra,
                      "--format", "json", "--output", hist, "--frauds", frauds,
                      "--truth", truth], check=False)
    assert res.returncode == 0, res.stderr.decode()
    return hist, frauds, json.loads(truth.read_text())


def _cpp(s, *args, rc=0):
    res = s.cardwatch("cpp", *args, check=False)
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == rc, (res.returncode, out, err)
    assert not h.text_card_numbers(out + err), "a card number in cpp's output"
    return out, err


def _suspects(report):
    return [(x["merchant"], x["cases"], x["cards"], x["significant"], x["window_start"],
             x["window_end"]) for x in json.loads(report.read_text())["suspects"]]


def test_cpp_finds_the_injected_breach_and_monitors_it():
    s = cw.Stack(cw.three_issuers(), partitions=4)
    hist, frauds, truth = _gen(s, "year")
    m = truth["merchant"]
    rep, emit = s.dir / "cpp.json", s.dir / "suspected.csv"
    out, err = _cpp(s, "--frauds", frauds, "--report", rep, "--emit-breach", emit, hist)
    doc = json.loads(rep.read_text())
    top = doc["suspects"][0]
    assert top["merchant"] == m and top["significant"], (truth, out)
    assert not any(x["significant"] for x in doc["suspects"][1:]), out
    # the estimate within a few days of the truth
    d0, d1 = _day(top["window_start"]), _day(top["window_end"])
    t0, t1 = _day(truth["window_start"]), _day(truth["window_end"])
    assert abs(d0 - t0) <= 7 and abs(d1 - t1) <= 7, (top, truth)
    assert f"  1  {m} " in out and " yes " in out, out
    print(f"    {m}: {top['cases']} cases of {doc['cases']}, p {top['p_corrected']:.1e}; window "
          f"{top['window_start']}..{top['window_end']} (truth {truth['window_start']}.."
          f"{truth['window_end']})")

    # the suspected breach: exactly the cards that used m inside the window
    want = set()
    lo, hi = d0 * DAY, (d1 + 1) * DAY
    with open(hist) as f:
        for line in f:
            t = json.loads(line)
            if t["merchant_id"] == m and lo <= t["event_time_ms"] < hi:
                want.add(cw.fingerprint(t["pan"]))
    rows = [r for r in emit.read_text().splitlines()[1:] if not r.startswith("#")]
    assert set(rows) == want and len(rows) == len(want), (len(rows), len(want))
    assert emit.read_text().startswith("fingerprint\n")
    assert "cardwatch load --suspected" in out, out

    # ... loads as a suspected breach and is monitored
    s.cardwatch("load", "--suspected", "--breach", "cpp-suspect", "--window-start",
                top["window_start"], "--window-end", top["window_end"], "--elements", "pan", emit)
    listed = [json.loads(x) for x in s.cardwatch("breaches", "--json").stdout.decode().splitlines()]
    b = [x for x in listed if x["breach_id"] == "cpp-suspect"]
    assert b and b[0]["suspected"] is True and b[0]["cards"] == len(want), listed

    # the same ranking from the topic (by message timestamp) ...
    rep_topic = s.dir / "cpp-topic.json"
    s.cardwatch("send", "--input", hist, "--topic", cw.TXN_TOPIC, timeout=180)
    _cpp(s, "--frauds", frauds, "--report", rep_topic, "--from", "2023-01-01", "--to", "2026-01-01")
    assert _suspects(rep_topic) == _suspects(rep)

    # ... and from the feed's confirmed_fraud outcomes: each defrauded card
    # an alert with that outcome at its first fraud; other outcomes and
    # another key's cards are left out
    r = s.redis.client()
    with open(frauds) as f:
        for i, row in enumerate(csv.DictReader(f)):
            alert = {"alert_id": f"a{i}", "card_fingerprint": cw.fingerprint(row["pan"]),
                     "event_time_ms": _ms(row["first_fraud"])}
            r.call("HSET", f"cw:alert:a{i}", "issuer", "alpha", "alert", json.dumps(alert),
                   "outcome", "confirmed_fraud")
    noise = {"alert_id": "n1", "card_fingerprint": cw.fingerprint(row["pan"]),
             "event_time_ms": 1}
    r.call("HSET", "cw:alert:n1", "alert", json.dumps(noise), "outcome", "legitimate")
    other = dict(noise, card_fingerprint="other-key:" + "ab" * 16)
    r.call("HSET", "cw:alert:n2", "alert", json.dumps(other), "outcome", "confirmed_fraud")
    rep_feed = s.dir / "cpp-feed.json"
    out, err = _cpp(s, "--from-feed", "--report", rep_feed, hist)
    assert _suspects(rep_feed) == _suspects(rep)
    assert "1 confirmed_fraud alert(s) in the feed name a card under another key id" in err, err

    # --as-of: before the first linked fraud nothing points at m
    first = datetime.datetime.fromtimestamp(truth["first_linked_fraud_ms"] / 1000,
                                            datetime.timezone.utc).strftime("%Y-%m-%d")
    rep_early = s.dir / "cpp-early.json"
    _cpp(s, "--frauds", frauds, "--as-of", first, "--report", rep_early, hist)
    assert not any(x[3] for x in _suspects(rep_early))


def test_cpp_without_a_breach_and_its_errors():
    s = cw.Stack(cw.three_issuers(), partitions=1)
    hist, frauds, truth = _gen(s, "quiet", "--no-breach", sim=QUIET)
    assert truth["merchant"] is None
    emit, rep = s.dir / "none.csv", s.dir / "none.json"
    out, err = _cpp(s, "--frauds", frauds, "--report", rep, "--emit-breach", emit, hist, rc=1)
    doc = json.loads(rep.read_text())
    assert doc["cases"] > 10 and not any(x["significant"] for x in doc["suspects"]), doc
    assert "no merchant is significant" in out and "no significant suspect" in err, (out, err)
    assert not emit.exists()

    # a bad first_fraud is reported by line and skipped; the rest counts
    lines = frauds.read_text().splitlines()
    bad = s.dir / "bad.csv"
    bad.write_text("\n".join(lines[:2] + [lines[2].split(",")[0] + ",yesterday"] + lines[3:]) + "\n")
    out, err = _cpp(s, "--frauds", bad, hist)
    assert "bad.csv:3: rejected: first_fraud" in err and "rejected 1" in err, err

    # fingerprints under another key can never match: refused by line
    fp = s.dir / "fp.csv"
    fp.write_text("fingerprint,first_fraud\n" + cw.fingerprint(lines[1].split(",")[0])
                  + ",2024-05-01\nother:" + "cd" * 16 + ",2024-05-02\n")
    out, err = _cpp(s, "--frauds", fp, hist, rc=1)
    assert "fp.csv:3: fingerprint under key id 'other'" in err and cw.KEY_ID in err, err

    # usage errors name the option
    for args, word in ((["--frauds", frauds], "give the history"),
                       ([hist], "--frauds FILE or --from-feed"),
                       (["--frauds", frauds, "--lookback", "0", hist], "--lookback"),
                       (["--frauds", frauds, "--emit-breach", emit, "-"], "twice"),
                       (["--frauds", frauds, "--to", "2024-01-01", hist], "--from")):
        out, err = _cpp(s, *args, rc=2)
        assert word in err, (args, err)
    out, err = _cpp(s, "--frauds", s.dir / "missing.csv", hist, rc=1)
    assert "missing.csv" in err, err
