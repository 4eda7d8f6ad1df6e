"""`cardwatch replay --from TIME [--to TIME]` over the transactions topic,
end to end: real redis-server, the embedded Kafka and real cardwatch
processes.

What a replay must do (`cardwatch replay --help`): the same pipeline as the
live `cardwatch run` (same alert ids, hits, severity, breaches), per
partition from the first message stamped >= --from to the first stamped
>= --to (the mock broker has no time index: cardwatch searches message
timestamps), without touching the live service: no commit to the live
group, live issuer topics untouched (unless --deliver, and then an alert
that was delivered before is not sent again), window state in Redis under
"<prefix>:rp-<12 hex>:*" and removed at the end. Alerts go to an --output
file (JSON lines, ordered by partition then offset, as `cardwatch tail`
prints them, mode "replay") or to "<issuer topic>.replay"; dead letters to
cardwatch.deadletter.replay or a --dead-letter file.

Transactions are produced here as protobuf keyed by card (one card's events
stay in one partition, so window rules see them in the same order live and
in a replay), with the event time as message timestamp, through
tools/produce_file --timestamps. Expectations come from the test inputs
(cwstack), from the live service's own output, or from the message
timestamps chosen here - never from the replay itself; the alert set, hits
and severity of the default pack also from its model (oracle.py), so a
live run and a replay that agree on a wrong answer still fail."""

import hashlib
import json
import random
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn
from oracle import pack_expected

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PACK = REPO / "rules" / "default.rules"
PREFIX = "cw"                                  # [redis] prefix default
REPLAY_SUFFIX = ".replay"                      # [replay] topic_suffix default
REPLAY_DL_TOPIC = "cardwatch.deadletter.replay"  # [replay] dead_letter_topic default
MIN = 60_000
DAY = 86_400_000
WINDOW_RULES = {"card-testing", "velocity", "declined-burst", "spend-spike"}
SCHEMA = h.ProtoSchema()


# --------------------------------------------------------------------------
# inputs

def _frame(v):
    if v is None:
        return struct.pack(">I", 0xFFFFFFFF)
    if isinstance(v, str):
        v = v.encode()
    return struct.pack(">I", len(v)) + v


def produce_stamped(kafka, topic, records, partition=None):
    """Produce (timestamp_ms, key, value) records in order, each with its
    message timestamp (tools/produce_file --timestamps)."""
    records = list(records)
    data = b"".join(struct.pack(">q", ts) + _frame(k) + _frame(v) for ts, k, v in records)
    args = [h.tool("produce_file"), "--brokers", kafka.bootstraps, "--topic", topic,
            "--timestamps", "--timeout", "30"]
    if partition is not None:
        args += ["--partition", str(partition)]
    res = h.run_tool(args, input=data, timeout=90, check=False)
    out = res.stdout.decode().strip()
    assert res.returncode == 0 and out == str(len(records)), \
        f"produce to {topic}: {out} of {len(records)} delivered (exit {res.returncode}): " \
        f"{res.stderr.decode(errors='replace')}"


def card_key(pan):
    """Message key of a card's transactions (not the PAN itself)."""
    return "card-" + hashlib.sha256(pan.encode()).hexdigest()[:16]


def encode(t):
    return SCHEMA.encode("Transaction", cw.to_proto(t))


def publish(s, txns, topic=cw.TXN_TOPIC):
    """Transactions as protobuf keyed by card, stamped with their event time."""
    produce_stamped(s.kafka, topic,
                    [(t["event_time_ms"], card_key(t["pan"]), encode(t)) for t in txns])


def stream(seed, tag, n_exposed=18, n_clean=8, per_card=10):
    """Three issuers (+ unrouted cards), two overlapping breaches and bursts
    of transactions per card: small amounts minutes apart (card testing),
    declines, big spends, card-not-present at home and abroad, some before
    a window started. Sorted by event time, so every partition's message
    timestamps never decrease."""
    issuers = cw.three_issuers()
    mk = CardMaker(seed)
    exposed = mk.cards(["400001", "4000501", "510000", "52000042", "999999", "400077"],
                       n_exposed)
    clean = mk.cards(["400002", "4000509", "52000007", "371234"], n_clean)
    third = n_exposed // 3
    b1 = Breach(f"{tag}-shop", "2024-01-01", "2024-03-31", ["pan", "expiry", "cvv2"],
                exposed[:2 * third])
    b2 = Breach(f"{tag}-clinic", "2024-02-15", "2024-05-31", ["pan", "name", "email"],
                exposed[third:])
    rnd = random.Random(seed)
    txns = []
    for pan in exposed + clean:
        at = cw.day_ms("2024-02-10") + rnd.randrange(-45, 60) * DAY + rnd.randrange(DAY)
        for _ in range(per_card):
            at += rnd.choice([1, 2, 2, 3, 4, 7, 30, 300]) * MIN
            r = rnd.random()
            amount = (rnd.randrange(50, 201) if r < 0.45 else
                      rnd.randrange(1000, 30000) if r < 0.85 else rnd.randrange(100000, 260000))
            txns.append(txn(f"{tag}-{len(txns):05d}", pan, at, rnd, amount_minor=amount,
                            response="declined" if rnd.random() < 0.35 else "approved"))
    txns.sort(key=lambda t: (t["event_time_ms"], t["txn_id"]))
    return issuers, [b1, b2], txns


def stack_with(issuers, breaches, rules=DEFAULT_PACK, partitions=4, extra_ini="", **kw):
    extra = (f"[rules]\npath = {rules}\n" if rules else "") + extra_ini
    s = cw.Stack(issuers, partitions=partitions, extra_ini=extra, **kw)
    for b in breaches:
        s.load(b)
    return s


def positions(s, topic=cw.TXN_TOPIC):
    """txn_id -> (partition, offset) of every decodable message of topic."""
    out = {}
    for m in s.kafka.consume(topic):
        t = SCHEMA.decode("Transaction", m.value)
        out[t.get("txn_id", "")] = (m.partition, m.offset)
    return out


# --------------------------------------------------------------------------
# running

def live_run(s, expect_events):
    summary = cw.parse_summary(s.finish(s.run("--exit-at-end"), timeout=120))
    assert summary["events"] == expect_events, (summary, expect_events)
    return summary


def replay(s, *args, expect_rc=0, timeout=120):
    """cardwatch replay ARGS --no-progress; asserts the exit status and that
    no sanitizer or crash report is in the output. Returns CompletedProcess."""
    res = s.cardwatch("replay", *args, "--no-progress", check=False, timeout=timeout)
    err = res.stderr.decode(errors="replace")
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer", "Segmentation",
                "core dumped"):
        assert bad not in err, f"replay {args}: {bad}:\n{err}"
    assert res.returncode == expect_rc, \
        f"replay {' '.join(map(str, args))} exited {res.returncode}, expected {expect_rc}:\n" \
        f"{err}\n{res.stdout.decode(errors='replace')}"
    return res


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_report(path):
    return json.loads(Path(path).read_text())


_VOLATILE = re.compile(r'"mode":"[a-z]+"|"detected_at_ms":-?\d+')


def stable(line):
    """A JSON alert line without its mode and detected_at_ms."""
    return _VOLATILE.sub("", line)


def live_alerts(s):
    """{alert_id: (topic, Message, decoded Alert)} of the live issuer and
    fallback topics; asserts there are no duplicates."""
    out = {}
    for topic, m, a in s.alerts():
        assert a["alert_id"] not in out, f"live alert {a['alert_id']} twice"
        out[a["alert_id"]] = (topic, m, a)
    return out


def topic_names(s):
    """Every topic of the cluster (listing them all creates none)."""
    md = h.run_tool(["kcat", "-L", "-J", "-b", s.kafka.bootstraps], timeout=30)
    return {t["topic"] for t in json.loads(md.stdout).get("topics", [])}


def written(s, match):
    """Names of the existing topics for which match(name) holds that have
    messages (only those that exist are consumed: consuming creates)."""
    return sorted(n for n in topic_names(s) if match(n) and s.kafka.consume(n))


def replay_topics_written(s):
    return written(s, lambda n: n.endswith(REPLAY_SUFFIX))


def alerts_of(snapshot):
    """{alert_id: (topic, message tuple, decoded Alert)} of a
    topic_snapshot(); asserts no alert id is there twice."""
    out = {}
    for topic, msgs in snapshot.items():
        for m in msgs:
            a = SCHEMA.decode("Alert", m[3])
            assert a["alert_id"] not in out, f"alert {a['alert_id']} twice on the live topics"
            out[a["alert_id"]] = (topic, m, a)
    return out


def topic_snapshot(s, topics):
    """topic -> [(partition, offset, key, value, headers)] (everything)."""
    return {t: [(m.partition, m.offset, m.key, m.value, m.headers)
                for m in s.kafka.consume(t)] for t in topics}


def sev(name):
    return "SEVERITY_" + name.upper()


def json_as_proto(j):
    """A JSON alert line in the terms of a decoded protobuf Alert (enum
    names, window bounds in ms), without mode and detected_at_ms."""
    a = {k: j[k] for k in ("alert_id", "issuer_id", "txn_id", "card_fingerprint",
                           "pan_masked", "event_time_ms", "amount_minor", "currency", "mcc",
                           "merchant_id", "merchant_country", "ruleset_version")}
    a["channel"] = "CHANNEL_" + j["channel"].upper()
    a["severity"] = sev(j["severity"])
    a["hits"] = [{"rule_id": x["rule_id"], "severity": sev(x["severity"])} for x in j["hits"]]
    a["breaches"] = sorted(({"breach_id": b["breach_id"], "window_start": b["window_start_ms"],
                             "window_end": b["window_end_ms"], "elements": b["elements"]}
                            for b in j["breaches"]), key=lambda b: b["breach_id"])
    return a


def proto_view(a):
    """A decoded Alert with proto3 defaults filled in, without mode and
    detected_at_ms."""
    a = cw._norm(a)
    a.pop("mode", None)
    a.pop("detected_at_ms", None)
    return a


def rp_keys(s):
    return [k for k in s.redis.call("KEYS", f"{PREFIX}:rp-*")]


def rp_namespace_logged(res):
    """The replay's window-state namespace and the number of keys it
    removed, from its log line."""
    text = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    m = re.search(r"replay state (\w+):(rp-[0-9a-f]+):\* removed \((\d+) key", text)
    assert m, f"no 'replay state ... removed' line:\n{text}"
    assert m.group(1) == PREFIX and re.fullmatch(r"rp-[0-9a-f]{12}", m.group(2)), m.group(0)
    return m.group(2), int(m.group(3))


# --------------------------------------------------------------------------
# 1. faithful

def test_replay_matches_live_alerts():
    issuers, breaches, txns = stream(101, "f1")
    expected = cw.expected_alerts(txns, breaches, issuers)  # every exposed use
    s = stack_with(issuers, breaches)
    publish(s, txns)
    pos = positions(s)
    assert len(pos) == len(txns) and {p for p, _ in pos.values()} == {0, 1, 2, 3}, \
        "test data: every partition used"
    live_sum = live_run(s, len(txns))
    live = live_alerts(s)
    # the scenario covers what it claims to
    rules_hit = {x["rule_id"] for _, _, a in live.values() for x in a.get("hits", [])}
    assert {"card-testing", "velocity", "declined-burst", "cnp-use"} <= rules_hit, rules_hit
    assert any(len(a.get("breaches", [])) == 2 for _, _, a in live.values())
    assert any(not a.get("issuer_id") for _, _, a in live.values()), "an unrouted alert"
    assert 20 <= len(live) < len(expected), (len(live), len(expected))
    assert set(live) <= set(expected), "live alerts on transactions of no exposed card"
    # the pack's model (oracle.py), from the inputs alone: the live run and
    # the replay must both give exactly its alerts, hits and severity
    model = pack_expected(txns, breaches, issuers)
    assert set(live) == set(model), \
        f"live alerts differ from the pack's model: only live {sorted(set(live) - set(model))[:5]}, " \
        f"only model {sorted(set(model) - set(live))[:5]}"

    d = h.tmpdir("out")
    out, rep = d / "alerts.jsonl", d / "report.json"
    replay(s, "--from", "1970-01-01", "--output", out, "--report", rep)
    lines = Path(out).read_text().splitlines()
    got = [json.loads(x) for x in lines]
    ids = [a["alert_id"] for a in got]
    assert len(ids) == len(set(ids)), "an alert twice in the output"
    assert set(ids) == set(live), \
        f"replay alerts differ from live: only replay {sorted(set(ids) - set(live))[:5]}, " \
        f"only live {sorted(set(live) - set(ids))[:5]}"

    problems = []
    for j in got:
        aid = j["alert_id"]
        want = proto_view(live[aid][2])
        have = json_as_proto(j)
        diff = {k: (have.get(k), want.get(k)) for k in set(have) | set(want)
                if have.get(k) != want.get(k)}
        if diff:
            problems.append(f"{j['txn_id']}: (replay, live) {diff}")
        # independent of both: card, routing, breaches, transaction fields,
        # and the pack's hits and severity from its model
        m = model[aid]["alert"]
        for k in ("hits", "severity", "ruleset_version"):
            if have.get(k) != m[k]:
                problems.append(f"{j['txn_id']}: {k} = {have.get(k)!r}, the model says {m[k]!r}")
        exp = dict(expected[aid]["alert"])
        for k in ("hits", "severity", "mode", "ruleset_version"):
            exp.pop(k)
        exp_b = {b["breach_id"]: b for b in exp.pop("breaches")}
        for k, v in exp.items():
            if have.get(k) != v:
                problems.append(f"{j['txn_id']}: {k} = {have.get(k)!r}, expected {v!r}")
        if {b["breach_id"]: b for b in have["breaches"]} != exp_b:
            problems.append(f"{j['txn_id']}: breaches {have['breaches']}, expected {exp_b}")
        for b in j["breaches"]:
            br = next(x for x in breaches if x.id == b["breach_id"])
            if (b["window_start"], b["window_end"]) != (br.start, br.end):
                problems.append(f"{j['txn_id']}: window dates {b}")
        if j["mode"] != "replay" or not isinstance(j["detected_at_ms"], int):
            problems.append(f"{j['txn_id']}: mode {j['mode']!r}, detected_at_ms "
                            f"{j['detected_at_ms']!r}")
    assert not problems, "\n".join(problems[:20])

    # ordered by partition, then offset
    order = [pos[a["txn_id"]] for a in got]
    assert order == sorted(order), "output not in (partition, offset) order"

    # the lines are what `cardwatch tail` prints for the live alerts, apart
    # from mode and detected_at_ms (one topic: tail takes a second a topic)
    topic = max(cw.alert_topics(issuers),
                key=lambda t: sum(1 for x, _, _ in live.values() if x == t))
    tailed = s.cardwatch("tail", topic, "--exit-at-end", timeout=60).stdout.decode().splitlines()
    mine = [x for x, a in zip(lines, got) if live[a["alert_id"]][0] == topic]
    assert len(tailed) == len(mine) >= 5, (len(tailed), len(mine))
    assert sorted(stable(x) for x in mine) == sorted(stable(x) for x in tailed), \
        f"replay lines differ from `cardwatch tail {topic}` of the live alerts"

    # the report
    r = read_report(rep)
    exposed = sum(1 for t in txns if any(t["pan"] in b.card_set for b in breaches))
    by_rule, by_sev, by_issuer = {}, {}, {}
    for _, _, a in live.values():
        for x in a["hits"]:
            by_rule[x["rule_id"]] = by_rule.get(x["rule_id"], 0) + 1
        k = a["severity"][len("SEVERITY_"):].lower()
        by_sev[k] = by_sev.get(k, 0) + 1
        k = a.get("issuer_id") or "unrouted"
        by_issuer[k] = by_issuer.get(k, 0) + 1
    assert r["events"] == len(txns), r
    assert r["exposed_transactions"] == exposed == live_sum["exposed"] + live_sum["alerted"], \
        (r["exposed_transactions"], exposed, live_sum)
    assert r["alerts"] == len(live) and r["dead_letters"] == 0, r
    assert r["misused_cards"] == len({a["card_fingerprint"] for _, _, a in live.values()}), r
    assert r["alerts_by_rule"] == by_rule, (r["alerts_by_rule"], by_rule)
    assert {k: v for k, v in r["alerts_by_severity"].items() if v} == by_sev, \
        (r["alerts_by_severity"], by_sev)
    assert r["alerts_by_issuer"] == by_issuer, (r["alerts_by_issuer"], by_issuer)
    per_part = {}
    for p, _ in pos.values():
        per_part[p] = per_part.get(p, 0) + 1
    assert r["input"]["topic"] == cw.TXN_TOPIC and r["input"]["from_ms"] == 0 \
        and r["input"]["to_ms"] is None, r["input"]
    assert r["input"]["partitions"] == [{"partition": p, "start": 0, "end": per_part[p]}
                                        for p in range(4)], r["input"]["partitions"]
    assert "already_delivered" not in r, r


# --------------------------------------------------------------------------
# 2. isolated

def test_replay_leaves_the_live_service_alone():
    issuers, breaches, txns = stream(202, "i2", n_exposed=9, n_clean=3)
    s = stack_with(issuers, breaches)
    publish(s, txns)
    live_run(s, len(txns))
    live_topics = cw.alert_topics(issuers) + [cw.DEAD_LETTER_TOPIC]
    before_topics = topic_snapshot(s, live_topics)
    n_live = sum(len(v) for v in before_topics.values())
    assert n_live >= 10, n_live
    # Events the live group has not consumed yet (clean cards: no alerts):
    # a replay that committed anything to the live group would change how
    # many of them the next live run reads.
    mk = CardMaker(2020)
    late = [txn(f"i2-late-{i:03d}", mk.card("400002"), cw.day_ms("2024-07-01") + i * MIN)
            for i in range(23)]
    publish(s, late)
    before = s.redis.dump()
    live_keys = [k for k, *_ in before if k.startswith(f"{PREFIX}:live:".encode())]
    assert live_keys, "test data: the live service keeps window state"
    assert not rp_keys(s)

    d = h.tmpdir("out")
    removed = []
    res = replay(s, "--from", "1970-01-01", "--output", d / "a.jsonl")
    removed.append(rp_namespace_logged(res))
    # to the replay topics; from a date: only the events stamped >= it
    res = replay(s, "--from", "2024-01-01", "--report", d / "r.json")
    removed.append(rp_namespace_logged(res))
    since = sum(1 for t in txns + late if t["event_time_ms"] >= cw.day_ms("2024-01-01"))
    assert 0 < since < len(txns) + len(late) and read_report(d / "r.json")["events"] == since, \
        (since, len(txns), read_report(d / "r.json"))
    assert removed[0][0] != removed[1][0], f"two replays, one namespace: {removed}"
    assert all(n > 0 for _, n in removed), f"window state was kept in the namespace: {removed}"
    assert read_report(d / "r.json")["alerts"] > 0

    # no replay state left, everything else byte-identical
    assert not rp_keys(s), f"replay keys left: {rp_keys(s)[:5]}"
    after = s.redis.dump()
    rp = f"{PREFIX}:rp-".encode()
    diff = sorted(set(e[0] for e in before if not e[0].startswith(rp))
                  ^ set(e[0] for e in after if not e[0].startswith(rp)))
    assert not diff, f"keys added or removed: {diff[:10]}"
    changed = [b[0] for b, a in zip(before, after) if b != a]
    assert not changed, f"keys changed by the replays: {changed[:10]}"
    # live topics untouched
    assert topic_snapshot(s, live_topics) == before_topics, "live topics changed"
    # the live group's offsets: the next run reads exactly the new events
    again = live_run(s, len(late))
    assert again["by_issuer"] == {}, again


# --------------------------------------------------------------------------
# 3. deterministic

def test_replay_output_is_deterministic():
    issuers, breaches, txns = stream(303, "d3", n_exposed=24, n_clean=12, per_card=12)
    s = stack_with(issuers, breaches)
    publish(s, txns)
    # invalid events too: the dead-letter file is ordered like the alerts
    mk = CardMaker(3030)
    bad = [txn(f"d3-bad-{i}", mk.card("400001"), cw.day_ms("2024-02-20") + i, currency="eur")
           for i in range(6)]
    for i, t in enumerate(bad):
        produce_stamped(s.kafka, cw.TXN_TOPIC, [(t["event_time_ms"], card_key(t["pan"]),
                                                 encode(t))], partition=i % 4)
    # the second replay takes tiny batches with little in flight, so the
    # partitions interleave differently inside the pipeline: the output
    # must not care
    small = s.dir / "small-batches.ini"
    small.write_text(s.config.read_text() + "\n[pipeline]\nbatch_size = 3\nmax_in_flight = 5\n")
    d = h.tmpdir("out")
    outs = []
    for n, extra in enumerate([(), ("--config", small)]):
        o, dl = d / f"alerts-{n}.jsonl", d / f"dead-{n}.jsonl"
        replay(s, "--from", "1970-01-01", "--output", o, "--dead-letter", dl, *extra)
        outs.append((Path(o).read_text(), Path(dl).read_text()))
    a0 = outs[0][0].splitlines()
    assert len(a0) >= 30, len(a0)
    assert len(outs[0][1].splitlines()) == len(bad), outs[0][1]
    assert all(json.loads(x)["mode"] == "replay" for x in a0)
    for n, (a, dl) in enumerate(outs[1:], 1):
        assert [stable(x) for x in a.splitlines()] == [stable(x) for x in a0], \
            f"replay {n}: alerts differ from replay 0 beyond detected_at_ms/mode"
        assert a.endswith("\n") and outs[0][0].endswith("\n")
        strip = lambda text: [re.sub(r'"detected_at_ms":\d+', "", x) for x in text.splitlines()]
        assert strip(dl) == strip(outs[0][1]), f"replay {n}: dead letters differ"
    # and the order is partition, then offset
    pos = positions(s)
    order = [pos[json.loads(x)["txn_id"]] for x in a0]
    assert order == sorted(order)
    order = [(json.loads(x)["source"]["partition"], json.loads(x)["source"]["offset"])
             for x in outs[0][1].splitlines()]
    assert order == sorted(order)


# --------------------------------------------------------------------------
# 4. time range

RANGE_TOPIC = "e2e.replay.range"
T1 = cw.day_ms("2024-03-01")                 # 2024-03-01T00:00:00Z
T2 = T1 + 6 * 3_600_000 + 250                # 2024-03-01T06:00:00.250Z


def _range_layout():
    """Message timestamps per partition of a 5-partition topic: ties on both
    boundaries, a partition entirely before, one entirely at/after the end,
    an empty one and one entirely inside."""
    rnd = random.Random(4)
    p0 = sorted([T1 - 3 * DAY + rnd.randrange(DAY) for _ in range(7)] + [T1 - 1] * 3
                + [T1] * 5 + [T1 + 1]
                + [T1 + rnd.randrange(2, T2 - T1 - 1) for _ in range(9)]
                + [T2 - 1] * 3 + [T2] * 4 + [T2 + 1]
                + [T2 + rnd.randrange(DAY) for _ in range(4)])
    p1 = sorted([T1 - rnd.randrange(1, 5 * DAY) for _ in range(11)] + [T1 - 1])
    p2 = sorted([T2] * 5 + [T2 + rnd.randrange(1, DAY) for _ in range(8)])
    p3 = []
    p4 = sorted([T1] + [T1 + rnd.randrange(1, T2 - T1) for _ in range(10)] + [T2 - 1])
    return [p0, p1, p2, p3, p4]


_SEEK_LOG = re.compile(r"offsets found in [\d.]+ s: (\d+) by the broker's time index, "
                       r"(\d+) by searching message timestamps")


def test_replay_time_range():
    """On Apache Kafka: the broker's time index (offsetsForTimes) answers
    every lookup; --force-search takes the fallback."""
    _replay_time_range(None)


def test_replay_time_range_on_the_mock_searches():
    """librdkafka's mock answers offsetsForTimes with -1: the binary search
    over message timestamps finds the same offsets."""
    _replay_time_range("embedded")


def _replay_time_range(kind):
    layout = _range_layout()
    mk = CardMaker(404)
    cards = mk.cards(["400001", "510000", "4000501", "999999"], 8)
    breach = Breach("r4-range", "2024-01-01", "2024-12-31", ["pan"], cards)
    issuers = cw.three_issuers()
    # builtin rule set: every transaction on an exposed card after the
    # window start alerts, so the alerts name exactly what was processed
    s = stack_with(issuers, [breach], rules=None, kafka_topics={RANGE_TOPIC: 5},
                   kafka_kind=kind)
    apache = s.kafka.apache
    ts_of = {}   # txn_id -> (partition, offset, message timestamp)
    for p, stamps in enumerate(layout):
        recs = []
        for off, ts in enumerate(stamps):
            # the event time is not the message timestamp: the range is by
            # message timestamp
            t = txn(f"r4-p{p}-{off:03d}", cards[(p + off) % len(cards)],
                    cw.day_ms("2024-02-01") + (p * 100 + off) * MIN)
            recs.append((ts, card_key(t["pan"]), encode(t)))
            ts_of[t["txn_id"]] = (p, off, ts)
        if recs:
            produce_stamped(s.kafka, RANGE_TOPIC, recs, partition=p)
    got = {(m.partition, m.offset): m.timestamp for m in s.kafka.consume(RANGE_TOPIC)}
    assert got == {(p, o): ts for p, o, ts in ts_of.values()}, "test data: timestamps kept"

    def first_at(stamps, t):
        return next((i for i, x in enumerate(stamps) if x >= t), len(stamps))

    cases = [
        # (--from, --to, extra args, from ms, to ms)
        ("2024-03-01T01:00:00+01:00", "2024-03-01T06:00:00.250Z", (), T1, T2),
        # ties the other way round: T1's are out, T2's are in
        (str(T1 + 1), str(T2 + 1), ("--force-search",), T1 + 1, T2 + 1),
    ]
    d = h.tmpdir("out")
    for n, (frm, to, extra, lo, hi) in enumerate(cases):
        out, rep = d / f"alerts-{n}.jsonl", d / f"report-{n}.json"
        args = ["--from", frm] + (["--to", to] if to else []) + \
            ["--topic", RANGE_TOPIC, "--output", out, "--report", rep, *extra]
        res = replay(s, *args)
        want = {tid for tid, (_, _, ts) in ts_of.items()
                if ts >= lo and (hi is None or ts < hi)}
        r = read_report(rep)
        where = f"case {n} {args}"
        seek = _SEEK_LOG.search(res.stderr.decode(errors="replace"))
        assert seek, f"{where}: no 'offsets found' line:\n{res.stderr.decode()[-1500:]}"
        by_broker, searched = map(int, seek.groups())
        # 5 partitions, --from and --to: 10 lookups (an empty partition
        # needs none)
        lookups = 2 * sum(1 for st in layout if st)
        if apache and "--force-search" not in extra:
            assert (by_broker, searched) == (lookups, 0), \
                f"{where}: {by_broker} answered by the broker, {searched} searched"
        else:
            assert searched > 0 and by_broker + searched == lookups, \
                f"{where}: {by_broker} answered by the broker, {searched} searched"
        assert r["input"]["topic"] == RANGE_TOPIC, (where, r["input"])
        assert (r["input"]["from_ms"], r["input"]["to_ms"]) == (lo, hi), (where, r["input"])
        want_parts = [{"partition": p,
                       "start": first_at(st, lo),
                       "end": len(st) if hi is None else first_at(st, hi)}
                      for p, st in enumerate(layout)]
        assert r["input"]["partitions"] == want_parts, \
            f"{where}: partitions {r['input']['partitions']}, expected {want_parts}"
        assert r["events"] == len(want), f"{where}: {r['events']} events, expected {len(want)}"
        alerts = read_jsonl(out)
        tids = [a["txn_id"] for a in alerts]
        assert sorted(tids) == sorted(want), \
            f"{where}: extra {sorted(set(tids) - want)[:8]}, missing {sorted(want - set(tids))[:8]}"
        order = [ts_of[t][:2] for t in tids]
        assert order == sorted(order), f"{where}: output order"


# --------------------------------------------------------------------------
# 5. replay topics

def test_replay_to_replay_topics():
    issuers = cw.three_issuers()
    mk = CardMaker(505)
    exposed = mk.cards(["400001", "4000501", "510000", "52000042", "999999"], 10)
    clean = mk.cards(["400002", "510000"], 6)
    b1 = Breach("t5-shop", "2024-01-01", "2024-03-31", ["pan", "expiry"], exposed)
    b2 = Breach("t5-clinic", "2024-03-01", "2024-04-30", ["pan", "email"], exposed[:4])
    rnd = random.Random(5)
    txns = [txn(f"t5-{i:04d}", rnd.choice(exposed if i % 3 else clean),
                cw.day_ms("2023-12-20") + rnd.randrange(120) * DAY + i, rnd) for i in range(90)]
    txns.sort(key=lambda t: t["event_time_ms"])
    expected = cw.expected_alerts(txns, [b1, b2], issuers)
    assert len(expected) >= 30 and len({e["topic"] for e in expected.values()}) == 4
    s = stack_with(issuers, [b1, b2], rules=None)   # builtin rule set
    publish(s, txns)
    live_topics = cw.alert_topics(issuers) + [cw.DEAD_LETTER_TOPIC]

    t0 = cw.wall_ms()
    rep = h.tmpdir("out") / "report.json"
    replay(s, "--from", "2023-01-01", "--report", rep)
    t1 = cw.wall_ms()
    want = {aid: {"topic": e["topic"] + REPLAY_SUFFIX, "key": e["key"],
                  "alert": dict(e["alert"], mode="MODE_REPLAY")}
            for aid, e in expected.items()}
    got = []
    for topic in cw.alert_topics(issuers):
        for m in s.kafka.consume(topic + REPLAY_SUFFIX):
            got.append((topic + REPLAY_SUFFIX, m, SCHEMA.decode("Alert", m.value)))
    cw.check_alerts(got, want, exact_once=True, min_detected_ms=t0, max_detected_ms=t1)
    r = read_report(rep)
    assert r["alerts"] == len(expected) and r["output"] == "replay topics", r
    # nothing on the live topics, nor on the replay dead-letter topic
    assert written(s, lambda n: n in live_topics + [REPLAY_DL_TOPIC]) == []


# --------------------------------------------------------------------------
# 6. --deliver

EXTRA_RULE = ("\n# test: every use of an exposed card\n"
              "rule any-exposed\n"
              "  severity: low\n"
              "  description: Any use of an exposed card (test rule)\n"
              "  when: exposed\n")


def test_replay_deliver_sends_each_alert_once():
    issuers, breaches, txns = stream(606, "v6", n_exposed=9, n_clean=3)
    s = stack_with(issuers, breaches)
    publish(s, txns)
    live_run(s, len(txns))
    live_topics = cw.alert_topics(issuers)
    before = topic_snapshot(s, live_topics)
    live = alerts_of(before)
    assert len(live) >= 10
    for aid in live:
        assert s.redis.call("EXISTS", f"{PREFIX}:delivered:{aid}") == 1, \
            f"the live service did not record delivering {aid}"
    d = h.tmpdir("out")

    # 1. the same rules: everything was delivered already
    replay(s, "--from", "1970-01-01", "--deliver", "--report", d / "r1.json")
    r1 = read_report(d / "r1.json")
    assert (r1["alerts"], r1["already_delivered"]) == (len(live), len(live)), r1
    assert topic_snapshot(s, live_topics) == before, "a delivered alert was sent again"

    # 2. a rule that fires on every exposed use: exactly the new ids, once
    rules = d / "deliver.rules"
    rules.write_text(DEFAULT_PACK.read_text() + EXTRA_RULE)
    all_exposed = set(cw.expected_alerts(txns, breaches, issuers))
    new = all_exposed - set(live)
    assert len(new) >= 10 and set(live) <= all_exposed, (len(new), len(live))
    replay(s, "--from", "1970-01-01", "--deliver", "--rules", rules, "--report", d / "r2.json")
    r2 = read_report(d / "r2.json")
    assert (r2["alerts"], r2["already_delivered"]) == (len(all_exposed), len(live)), r2
    snap = topic_snapshot(s, live_topics)
    after = alerts_of(snap)
    assert set(after) == all_exposed, \
        f"live topics: missing {sorted(all_exposed - set(after))[:5]}, " \
        f"extra {sorted(set(after) - all_exposed)[:5]}"
    for aid in live:   # the live copies are the ones there
        assert after[aid][:2] == live[aid][:2], aid
    exp = cw.expected_alerts(txns, breaches, issuers)
    for aid in new:
        topic, m, a = after[aid]
        assert topic == exp[aid]["topic"] and m[2] == exp[aid]["key"], (aid, topic, m[2])
        assert a["hits"] == [{"rule_id": "any-exposed", "severity": "SEVERITY_LOW"}] and \
            a["severity"] == "SEVERITY_LOW", a
        assert a["ruleset_version"].startswith("deliver.rules@"), a
        assert s.redis.call("EXISTS", f"{PREFIX}:delivered:{aid}") == 1, aid

    # 3. again: nothing new
    replay(s, "--from", "1970-01-01", "--deliver", "--rules", rules, "--report", d / "r3.json")
    r3 = read_report(d / "r3.json")
    assert (r3["alerts"], r3["already_delivered"]) == (len(all_exposed),) * 2, r3
    assert topic_snapshot(s, live_topics) == snap, "the third replay sent alerts again"
    # and no replay topic was written by any of them
    assert replay_topics_written(s) == []


# --------------------------------------------------------------------------
# 7. dead letters

def test_replay_dead_letters_point_at_the_inputs():
    issuers = cw.three_issuers()
    mk = CardMaker(707)
    exposed = mk.cards(["400001", "4000501", "510000"], 6)
    b1 = Breach("dl7", "2024-01-01", "2024-12-31", ["pan"], exposed)
    s = stack_with(issuers, [b1], rules=None)
    invalid = cw.invalid_events(exposed[0], "dl7")        # sent as they are
    invalid_pb = cw.invalid_protobuf(exposed[1], "dl7")
    junk = cw.garbage(exposed[2])
    rnd = random.Random(7)
    valid = [txn(f"dl7-ok-{i:03d}", rnd.choice(exposed), cw.day_ms("2024-02-01") + i * MIN, rnd)
             for i in range(40)]
    s.send(valid[:20], name="valid")
    s.send([t for t, _ in invalid], name="invalid")
    for p, payload in enumerate(junk + [raw for raw, _, _ in invalid_pb]):
        h.produce(s.kafka.bootstraps, cw.TXN_TOPIC, [(None, payload)], partition=p % 4)
    s.send(valid[20:], name="valid")
    invalid += [(t, reason) for _, t, reason in invalid_pb]

    reason_of = {cw.input_key(t): reason for t, reason in invalid}
    junk_set = set(junk)
    inputs = {(m.partition, m.offset): m for m in s.inputs()}
    want_at = {}
    for where, m in inputs.items():
        if m.value in junk_set:
            want_at[where] = "undecodable"
            continue
        key = cw.input_key(SCHEMA.decode("Transaction", m.value))
        if key in reason_of:
            want_at[where] = reason_of[key]
    n_invalid = len(invalid) + len(junk)
    assert len(want_at) == n_invalid and len(inputs) == n_invalid + len(valid)

    d = h.tmpdir("out")
    replay(s, "--from", "1970-01-01", "--output", d / "a.jsonl", "--report", d / "r.json")
    r = read_report(d / "r.json")
    assert r["dead_letters"] == n_invalid and r["events"] == len(inputs), r
    assert r["alerts"] == len(read_jsonl(d / "a.jsonl")) == len(valid), r

    dls = s.kafka.consume(REPLAY_DL_TOPIC, expect_count=n_invalid)
    seen = {}
    bodies = {}
    for dm in dls:
        body = json.loads(dm.value)
        src = body.get("source", {})
        where = (src.get("partition"), src.get("offset"))
        ctx = f"dead letter {dm.partition}/{dm.offset}: {body}"
        assert src.get("topic") == cw.TXN_TOPIC, ctx
        assert where in want_at, f"{ctx}: points at a valid input or nowhere"
        assert body["reason"] == want_at[where], f"{ctx}: expected {want_at[where]}"
        tid = "" if want_at[where] in ("undecodable", "txn_id") else \
            SCHEMA.decode("Transaction", inputs[where].value)["txn_id"]
        assert body.get("txn_id") == tid, ctx
        hd = dict(dm.headers)
        if hd:
            assert hd.get("reason") == body["reason"].encode() and \
                hd.get("source_partition") == str(where[0]).encode() and \
                hd.get("source_offset") == str(where[1]).encode(), (ctx, hd)
        raw = h.blob(dm)
        for pan in exposed:
            assert pan.encode() not in raw, f"{ctx}: holds a test card number"
        seen[where] = seen.get(where, 0) + 1
        bodies[where] = body
    assert seen == {w: 1 for w in want_at}, "every invalid input: exactly one dead letter"
    assert written(s, lambda n: n == cw.DEAD_LETTER_TOPIC) == [], \
        "the live dead-letter topic was written"

    # --dead-letter FILE: the same dead letters as JSON lines, none to Kafka
    replay(s, "--from", "1970-01-01", "--output", d / "b.jsonl", "--dead-letter", d / "dl.jsonl")
    lines = read_jsonl(d / "dl.jsonl")
    assert len(lines) == n_invalid, len(lines)
    for body in lines:
        where = (body["source"]["partition"], body["source"]["offset"])
        a, b = dict(body), dict(bodies[where])
        a.pop("detected_at_ms", None)
        b.pop("detected_at_ms", None)
        assert a == b, f"file {a} vs topic {b}"
    assert len(s.kafka.consume(REPLAY_DL_TOPIC)) == n_invalid, \
        "with --dead-letter FILE dead letters went to Kafka too"


# --------------------------------------------------------------------------
# 8. errors

def _no_crash(res):
    err = res.stderr.decode(errors="replace")
    for bad in ("AddressSanitizer", "runtime error:", "Segmentation", "core dumped"):
        assert bad not in err, err
    return err


def test_replay_unknown_topic_fails():
    s = cw.Stack(cw.three_issuers(), partitions=4)
    d = h.tmpdir("out")
    res = s.cardwatch("replay", "--from", "1970-01-01", "--topic", "e2e.no.such.topic",
                      "--output", d / "a.jsonl", "--no-progress", check=False, timeout=60)
    err = _no_crash(res)
    assert res.returncode == 1, f"exit {res.returncode}:\n{err}"
    assert "e2e.no.such.topic" in err, err
    assert not (d / "a.jsonl").exists(), "an output file for a failed replay"
    assert "e2e.no.such.topic" not in topic_names(s), \
        "the replay created the topic it was asked for"


def test_replay_to_before_from_is_a_usage_error():
    s = cw.Stack(cw.three_issuers(), partitions=4)
    for frm, to in (("2024-03-02", "2024-03-01"),
                    ("2024-03-01T00:00:00.001Z", "1709251200000")):
        res = s.cardwatch("replay", "--from", frm, "--to", to, "--no-progress", check=False,
                          timeout=30)
        err = _no_crash(res)
        assert res.returncode == 2, f"--from {frm} --to {to}: exit {res.returncode}:\n{err}"
        assert "--to" in err, err


def test_replay_without_redis_fails_fast():
    issuers = cw.three_issuers()
    mk = CardMaker(808)
    cards = mk.cards(["400001"], 3)
    # [replay] redis_wait_s (default 15) bounds the wait
    s = stack_with(issuers, [Breach("e8", "2024-01-01", "2024-12-31", ["pan"], cards)],
                   extra_ini="[replay]\nredis_wait_s = 2\n")
    publish(s, [txn(f"e8-{i}", cards[i % 3], cw.day_ms("2024-02-01") + i * MIN)
                for i in range(12)])
    s.redis.stop()
    out = h.tmpdir("out") / "a.jsonl"
    t0 = time.monotonic()
    res = s.cardwatch("replay", "--from", "1970-01-01", "--output", out, "--no-progress",
                      check=False, timeout=60)
    secs = time.monotonic() - t0
    err = _no_crash(res)
    assert res.returncode == 1, f"exit {res.returncode}:\n{err}"
    assert 2 <= secs <= 10, f"took {secs:.1f} s with redis_wait_s = 2"
    assert "Redis" in err and str(s.redis.port) in err and "within 2 s" in err, err
    assert not out.exists(), "an output file was left behind"


# --------------------------------------------------------------------------
# 9. SIGTERM

def test_sigterm_stops_a_topic_replay_within_a_second():
    """SIGTERM stops a topic replay in full swing within a second: exit
    status 143, the summary, a message naming the signal, no output file
    and no *.partial left. (With the fetched messages queued, the replay
    once saw no signal and no timer - not even its progress bar - until
    the range was read to its end.)"""
    issuers = cw.three_issuers()
    mk = CardMaker(909)
    cards = mk.cards(["400001"], 3)
    s = stack_with(issuers, [Breach("e9", "2024-01-01", "2024-12-31", ["pan"], cards)],
                   rules=None, partitions=2)
    clean = mk.cards(["400002", "52000007"], 50)
    rnd = random.Random(909)
    recs = [encode(txn(f"e9-{i:03d}", rnd.choice(clean), cw.day_ms("2024-02-01") + i * MIN,
                       rnd)) for i in range(200)]
    n = 1_000_000            # a few seconds of replay: far more than needed
    one = b"".join(struct.pack(">I", 0xFFFFFFFF) + _frame(r) for r in recs)
    res = h.run_tool([h.tool("produce_file"), "--brokers", s.kafka.bootstraps, "--topic",
                      cw.TXN_TOPIC, "--timeout", "240", "-X", "linger.ms=100",
                      "-X", "compression.type=lz4"],
                     input=one * (n // len(recs)), timeout=300, check=False)
    assert res.returncode == 0 and res.stdout.decode().strip() == str(n), res.stderr.decode()
    d = h.tmpdir("sig")
    s._n += 1
    log = s.dir / f"replay-sig-{s._n:02d}.log"
    out = d / "summary.txt"
    with open(out, "wb") as f:
        p = h.spawn([h.tool("cardwatch"), "replay", "--config", s.config, "--from", "1970-01-01",
                     "--output", d / "a.jsonl", "--dead-letter", d / "dl.jsonl", "--progress"],
                    name="replay-sig", log=log, stdout=f)
    s.logs += [log, out]
    # a bar with events read: the replay is in full swing (the first bar,
    # drawn before the first fetch, shows 0)
    bar = re.compile(r"\[[#-]{24}\] +\d+\.\d%  [1-9][\d,]* events")
    h.wait_until(lambda: bar.search(p.log_text()) or not p.alive, 120,
                 "the replay to report progress")
    assert p.alive, f"the replay ended before it could be interrupted:\n{p.log_text(20)}"
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM, group=False)
    try:
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError("the replay still runs 30 s after SIGTERM") from None
    secs = time.monotonic() - t0
    text = p.log_text()
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer", "Segmentation"):
        assert bad not in text, text[-3000:]
    assert rc == 128 + signal.SIGTERM, f"exit {rc}:\n{text[-2000:]}"
    assert secs <= 3.0, f"exit {secs:.2f} s after SIGTERM:\n{text[-2000:]}"
    assert "interrupted by SIGTERM" in text, text[-2000:]
    summary = out.read_text()
    assert "cardwatch replay (FAILED: interrupted by SIGTERM" in summary, summary
    left = sorted(x.name for x in d.iterdir() if x.name != out.name)
    assert left == [], f"files left behind: {left}"
    assert rp_keys(s) == [], "window state left behind"
    print(f"    topic replay: stopped {secs:.2f} s after SIGTERM")
