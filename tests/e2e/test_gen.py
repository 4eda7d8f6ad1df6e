"""`cardwatch gen history` (issue 16): a simulated transaction history
with an injected breach, the defrauded cards and the truth, checked
against the data it wrote - decoded here from the length-delimited
protobuf with h.ProtoSchema, independently of the C code.

No Kafka or Redis is used. The logic (order, skims, fraud delays,
popular merchants) is unit tested in tests/unit/test_sim.c; this checks
what the command writes and says. Other gen modes: test_app_branches.py,
test_cli_errors.py."""

import csv
import json
import re
import time
from collections import Counter

import harness as h
from test_cli_errors import _clean, _config, _cw, _table

DAY = 86400000
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _frames(data):
    """The messages of a length-delimited file."""
    i = 0
    while i < len(data):
        n, i = h.pb_read_varint(data, i)
        yield data[i:i + n]
        i += n


def _ms(rfc3339):
    """RFC 3339 UTC with milliseconds -> ms since the epoch."""
    from datetime import datetime, timezone
    d = datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(d.timestamp()) * 1000 + d.microsecond // 1000


def test_gen_history_truth_matches_the_data():
    """A small history (40,000 transactions of 2,000 cards at 200
    merchants over 120 days, every skimmed card defrauded): the data is in
    event-time order; the skimmed cards are exactly those used
    card-not-present at the truth's merchant in its window; each listed
    fraud is in the data from its first_fraud on, the linked ones 14-60
    days after the card's skim; the popular merchants are the five most
    used; stderr names no card. --no-breach lists no linked fraud; bad
    values are usage errors naming the option."""
    t0 = time.monotonic()
    d = h.tmpdir("genhist")
    C = ["--config", _config(d)]
    pb, frauds, truth = d / "h.pb", d / "frauds.csv", d / "truth.json"
    rc, out, err = _cw("gen", "history", *C, "--count", "40000", "--format", "protobuf",
                       "--output", pb, "--frauds", frauds, "--truth", truth,
                       "--cards", "2000", "--merchants", "200", "--days", "120",
                       "--fraud-share", "1", "--background-frauds", "20", "--seed", "5")
    assert rc == 0 and out == "", (rc, out, err)
    _clean("gen history", err)
    tr = json.loads(truth.read_text())
    assert f"{tr['transactions']} transactions written; breach at {tr['merchant']}" in err, err
    assert tr["transactions"] == 40000 and tr["seed"] == 5, tr
    assert tr["window_start"] == "2024-01-31" and tr["window_end"] == "2024-03-30", tr
    assert tr["window_end_ms"] - tr["window_start_ms"] == 60 * DAY - 1, tr

    schema = h.ProtoSchema()
    txns = [schema.decode("Transaction", m) for m in _frames(pb.read_bytes())]
    assert len(txns) == tr["transactions"]
    times = [t["event_time_ms"] for t in txns]
    assert times == sorted(times) and times[0] >= tr["period_start_ms"] \
        and times[-1] <= tr["period_end_ms"]

    # skimmed: card-not-present at the merchant inside the window
    skim = {}
    for t in txns:
        if (t["merchant_id"] == tr["merchant"]
                and t.get("channel") in ("CHANNEL_ECOMMERCE", "CHANNEL_MOTO")
                and tr["window_start_ms"] <= t["event_time_ms"] <= tr["window_end_ms"]):
            skim.setdefault(t["pan"], t["event_time_ms"])
    assert len(skim) == tr["skimmed"] > 0, (len(skim), tr)

    # the frauds: ordered, each in the data from its first_fraud on
    rows = list(csv.reader(frauds.open()))
    assert rows[0] == ["pan", "first_fraud"], rows[:2]
    rows = rows[1:]
    assert len(rows) == tr["defrauded"] + tr["background_frauds"] > 0, (len(rows), tr)
    assert all(RFC3339_MS.match(r[1]) for r in rows), rows[:3]
    firsts = [_ms(r[1]) for r in rows]
    assert firsts == sorted(firsts)
    fraud_times = {}
    for t in txns:
        if t["merchant_id"].startswith("F"):
            fraud_times.setdefault(t["pan"], []).append(t["event_time_ms"])
    assert set(fraud_times) == {r[0] for r in rows}
    linked = []
    for (pan, _), first in zip(rows, firsts):
        assert h.luhn_valid(pan) and min(fraud_times[pan]) == first
        if pan in skim and 14 * DAY <= first - skim[pan] <= 60 * DAY:
            linked.append(first)
    # with --fraud-share 1 every skimmed card whose fraud started by the
    # period's end is listed; a background card may also look linked
    assert tr["defrauded"] <= len(linked) <= tr["defrauded"] + tr["background_frauds"]
    assert tr["first_linked_fraud_ms"] in linked, tr

    # the popular merchants are the five most used, in order
    used = Counter(t["merchant_id"] for t in txns)
    assert [m for m, _ in used.most_common(5)] == tr["popular_merchants"], \
        (used.most_common(6), tr["popular_merchants"])

    # no breach: background frauds only, JSON lines to stdout
    rc, out, err = _cw("gen", "history", *C, "--count", "3000", "--output", "-",
                       "--frauds", d / "f2.csv", "--truth", d / "t2.json", "--no-breach",
                       "--cards", "500", "--background-frauds", "50")
    t2 = json.loads((d / "t2.json").read_text())
    assert rc == 0 and len(out.splitlines()) == 3000, (rc, err)
    assert t2["merchant"] is None and t2["defrauded"] == 0 and t2["skimmed"] == 0, t2
    assert t2["first_linked_fraud_ms"] is None and 0 < t2["background_frauds"] <= 50, t2
    assert "no breach; " in err, err
    _clean("gen history --no-breach", err)

    # usage errors: exit 2, one line naming the option
    G = ["gen", "history", *C, "--count", "10", "--output", d / "x", "--frauds", d / "y"]
    cases = [
        ([*G, "--breach-start", "2023-12-31"], ["breach window", "--breach-start"]),
        ([*G, "--breach-start", "2024-11-15"], ["breach window", "--breach-days"]),
        ([*G, "--days", "30"], ["breach window"]),   # default 60-day window
        ([*G, "--no-breach", "--breach-days", "5"], ["--no-breach"]),
        ([*G, "--fraud-share", "1.5"], ["--fraud-share"]),
        ([*G, "--merchants", "9"], ["--merchants"]),
        ([*G, "--cards", "100", "--background-frauds", "101"], ["--background-frauds"]),
        ([*G, "--breach-start", "2024-02-30"], ["--breach-start"]),
        ([*G, "--days", "0"], ["--days"]),
        (["gen", "history", *C, "--count", "10", "--output", d / "x"], ["--frauds"]),
        ([*G, "--topic", "t"], ["unknown option '--topic'"]),
    ]
    _table([(args, [*words, "cardwatch gen:"]) for args, words in cases], 2)
    print(f"    {len(txns)} transactions, {tr['skimmed']} skimmed, {tr['defrauded']} "
          f"defrauded, {tr['background_frauds']} background; {len(cases)} usage errors "
          f"in {time.monotonic() - t0:.1f} s")
