"""The default rule pack modelled in Python (not a test module): what
rules/default.rules must fire for a stream of transactions, computed from
the inputs alone (its windows and facts as docs/rules.md defines them),
independently of the C code. Shared by the replay scenarios and the chaos
suite's checker (tests/chaos/checker.py).

What it offers
  PACK, SEV_ORDER, WINDOW_RULES   the pack's rules (id, severity) in file
                                  order; severities low..critical; the
                                  rules that read windows
  pack_version()                  "default.rules@<sha256 prefix>", as
                                  alerts record it
  pack_hits()                     txn_id -> rule ids that fire
  pack_expected()                 alert_id -> the alert the live service
                                  must produce (cwstack.expected_alerts
                                  shape, decoded-protobuf field values)
"""

import bisect
import hashlib
from pathlib import Path

import cwstack as cw

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PACK = REPO / "rules" / "default.rules"
MIN = 60_000
DAY = 86_400_000

PACK = [  # (rule id, severity), in file order
    ("cnp-use", "high"), ("card-testing", "high"), ("high-risk-mcc", "high"),
    ("velocity", "medium"), ("cross-border-cnp", "medium"), ("declined-burst", "medium"),
    ("spend-spike", "high")]
SEV_ORDER = ["low", "medium", "high", "critical"]
WINDOW_RULES = {"card-testing", "velocity", "declined-burst", "spend-spike"}


def pack_version(path=DEFAULT_PACK):
    return f"{Path(path).name}@{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]}"


def pack_hits(txns, breaches, issuers):
    """txn_id -> [rule ids that fire] for the valid transactions `txns` in
    input order, for cards listed by `breaches`. Windows hold the card's
    transactions received so far with event time in (T - W, T], the current
    one included. A txn_id seen before is a redelivery of the same event:
    it counts once in the windows and keeps the hits of its first
    occurrence (windows.h: "a transaction id seen before is a redelivery").
    Only listed cards reach the rules; the test data keeps every listed
    card's transactions after its breach window start (or more than 24 h
    before any later one), and out-of-order events within the allowed
    lateness, so windows need no exposure or pruning rule."""
    table = cw.route_table(issuers)
    hist = {}  # pan -> sorted [(event_time, amount, declined)]
    out = {}
    seen = set()
    for t in txns:
        if t["txn_id"] in seen:
            continue
        seen.add(t["txn_id"])
        listed = [b for b in breaches if t["pan"] in b.card_set]
        if not listed:
            continue
        T = t["event_time_ms"]
        active = [b for b in listed if b.start_ms <= T]
        cur = (T, t["amount_minor"], t["response"] == "declined")
        items = hist.setdefault(t["pan"], [])

        def window(w):
            lo = bisect.bisect_right(items, (T - w, float("inf"), True))
            hi = bisect.bisect_right(items, (T, float("inf"), True))
            return items[lo:hi] + [cur]
        fired = []
        if active:
            cnp = t["channel"] in ("ecommerce", "moto")
            iss = cw.route(t["pan"], table)
            home = iss.home_country if iss else ""
            w10m, w1h, w24h = window(10 * MIN), window(60 * MIN), window(DAY)
            if cnp and any("expiry" in b.elements for b in active):
                fired.append("cnp-use")
            if t["amount_minor"] <= 200 and len(w10m) >= 3:
                fired.append("card-testing")
            if t["mcc"] in (4829, 5967, 6051, 7995):
                fired.append("high-risk-mcc")
            if len(w1h) >= 5:
                fired.append("velocity")
            if cnp and home != "" and t["merchant_country"] != home:
                fired.append("cross-border-cnp")
            if sum(1 for x in w1h if x[2]) >= 3:
                fired.append("declined-burst")
            if sum(x[1] for x in w24h) >= 300_000:
                fired.append("spend-spike")
        bisect.insort(items, cur)
        if fired:
            out[t["txn_id"]] = fired
    return out


def pack_expected(txns, breaches, issuers, rules_path=DEFAULT_PACK):
    """alert_id -> {"topic", "key", "alert"} that a live run with the
    default pack must produce for the valid transactions `txns` (input
    order; redeliveries allowed, see pack_hits): the alert fields as
    ProtoSchema.decode() gives them, like cwstack.expected_alerts, with the
    pack's hits (file order), the highest severity and its version."""
    hits = pack_hits(txns, breaches, issuers)
    first = {}
    for t in txns:
        first.setdefault(t["txn_id"], t)
    sev = dict(PACK)
    version = pack_version(rules_path)
    out = {}
    want = [first[tid] for tid in hits]
    base = cw.expected_alerts(want, breaches, issuers)
    for t in want:
        aid = cw.alert_id(t["txn_id"])
        e = base[aid]
        rules = hits[t["txn_id"]]
        a = dict(e["alert"])
        a["hits"] = [{"rule_id": r, "severity": "SEVERITY_" + sev[r].upper()} for r in rules]
        a["severity"] = "SEVERITY_" + max((sev[r] for r in rules),
                                          key=SEV_ORDER.index).upper()
        a["ruleset_version"] = version
        out[aid] = dict(e, alert=a)
    return out
