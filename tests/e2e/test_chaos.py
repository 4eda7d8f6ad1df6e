"""The chaos suite in the end-to-end run, and what it relies on.

test_send_key_card_keeps_a_card_on_one_partition: `cardwatch send --key
card` keys every message by the card's keyed fingerprint (never the card
number), so all of a card's transactions land on one partition in input
order (what the chaos checker's exact window oracle needs); --key txn (the
default) keys by txn_id; a line without a card number is keyed by its
txn_id; a bad --key value and an unusable key file are refused.

test_chaos_short_storm: the short chaos run (tests/chaos/chaos.py, profile
"short"): 3 brokers, Redis master + replica + 3 sentinels, 3 instances,
the feed, a stream with exposed cards, redeliveries, out-of-order and
invalid events, and at least 125 faults of every kind, checked by the
independent checker. The seed changes per run (CHAOS_SEED fixes it) and
is printed first; any failure replays with
`python3 tests/chaos/chaos.py --seed S --profile short --duration 30
--faults 125`.
"""

import json
import os
import sys
import time
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import CardMaker, txn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))


def test_send_key_card_keeps_a_card_on_one_partition():
    issuers = cw.three_issuers()
    mk = CardMaker(4711)
    cards = mk.cards(["400001", "510000", "999999"], 6)
    base = cw.day_ms("2024-03-01")
    txns = [txn(f"key-{i:03d}", cards[i % len(cards)], base + i * 60_000) for i in range(60)]
    no_pan = txn("key-nopan", cards[0], base)
    del no_pan["pan"]
    s = cw.Stack(issuers, partitions=8)
    path = s.dir / "by-card.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in txns + [no_pan]))
    out = s.cardwatch("send", "--input", path, "--key", "card")
    assert b"61 transactions sent" in out.stderr, out.stderr
    schema = h.ProtoSchema()
    msgs = s.kafka.consume(cw.TXN_TOPIC, expect_count=61)
    assert len(msgs) == 61, len(msgs)
    where = {}   # pan -> partition
    seen = []    # (pan, partition, offset) in topic order per partition
    for m in msgs:
        t = schema.decode("Transaction", m.value)
        if t["txn_id"] == "key-nopan":
            assert m.key == b"key-nopan", m.key
            continue
        assert m.key == cw.fingerprint(t["pan"]).encode(), (t["txn_id"], m.key)
        assert t["pan"].encode() not in m.key
        where.setdefault(t["pan"], m.partition)
        assert where[t["pan"]] == m.partition, f"{t['txn_id']}: a card on two partitions"
        seen.append((t["pan"], m.partition, m.offset, t["txn_id"]))
    assert len(set(where.values())) > 1, "all cards on one partition: keys are not spread"
    for pan in cards:
        ids = [x[3] for x in sorted(x for x in seen if x[0] == pan)]
        assert ids == [t["txn_id"] for t in txns if t["pan"] == pan], \
            f"{cw.mask(pan)}: partition order differs from input order"

    # --key txn (the default): the txn_id
    s2 = s
    s.kafka.create_topics({"cardwatch.keytest": 8})
    p2 = s2.dir / "by-txn.jsonl"
    p2.write_text("".join(json.dumps(t) + "\n" for t in txns[:10]))
    s2.cardwatch("send", "--input", p2, "--topic", "cardwatch.keytest")
    for m in s2.kafka.consume("cardwatch.keytest", expect_count=10):
        assert m.key == schema.decode("Transaction", m.value)["txn_id"].encode()

    # refusals: a bad value (usage, exit 2), an unusable key file (exit 1)
    bad = s2.cardwatch("send", "--input", p2, "--key", "pan", check=False)
    assert bad.returncode == 2, bad
    assert b"--key: use txn or card" in bad.stderr, bad.stderr
    cfg = s2.dir / "nokey.ini"
    cfg.write_text(s2.config.read_text().replace(f"key_file = {s2.key_file}",
                                                 f"key_file = {s2.dir / 'missing.key'}"))
    res = h.run_tool([h.tool("cardwatch"), "send", "--config", cfg, "--input", p2,
                      "--key", "card"], check=False)
    err = res.stderr.decode()
    assert res.returncode == 1 and "--key card" in err and "missing.key" in err, err
    for data in (out.stderr, out.stdout, res.stderr, bad.stderr):
        assert not h.text_card_numbers(data), "a card number in send's output"


def test_chaos_short_storm():
    if h.kafka_kind() != "apache":
        raise h.Skip("the chaos suite needs Apache Kafka (CARDWATCH_E2E_KAFKA=embedded)")
    import chaos
    seed = int(os.environ.get("CHAOS_SEED") or time.time() * 1000) % 1_000_000_000
    report = chaos.run(seed, duration=30, n_faults=125, profile="short")
    a, f = report["alerts"], report["faults"]
    print(f"    chaos seed {seed}: {f['total']} faults {f['by_kind']}; "
          f"{report['events']['messages']} events, {a['expected']} alerts expected, "
          f"{a['delivered']} delivered, {a['missing']} missing, {a['unexpected']} unexpected, "
          f"{a['wrong_rules']} wrong rules, {a['repeated_copies']} repeated copies; "
          f"longest stall {report['stall']['longest_s']} s; {report['runtime_s']} s")
    assert f["total"] >= 125, f["total"]
    assert report["pass"], (f"chaos seed {seed} failed (replay: python3 tests/chaos/chaos.py "
                            f"--seed {seed} --profile short --duration 30 --faults 125): "
                            + "; ".join(report["failures"]))
