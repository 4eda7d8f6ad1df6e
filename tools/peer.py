#!/usr/bin/python3
"""peer.py - a straightforward exposed-card checker, the peer that make
bench runs beside `cardwatch run` (scripts/bench.sh) so that the ratio of
the two is tracked.

What a team would write with the usual Python clients: confluent-kafka to
consume the transactions topic (batch consume, consumer group), a small
protobuf reader for cardwatch.v1.Transaction, the card fingerprint
HMAC-SHA256(key, PAN digits) with the key from cardwatch's key file
("<key_id> <hex key>", '#' and blank lines ignored), one pipelined redis-py
lookup of the batch's cards (card_lookup: the only function that knows
cardwatch's Redis data model, processor/rmodel.h), and an alert as JSON to
an alert topic for each transaction on an exposed card (the built-in rule:
any use of an exposed card).

    /usr/bin/python3 tools/peer.py --brokers B --topic T --redis HOST:PORT
        --key-file KEY --alert-topic A --expect N [--group G]
        [--prefix cw] [--batch 1000] [--timeout 300]

Runs until N transactions were processed (or --timeout seconds without
reaching them: exit 3), flushes the alerts and prints one JSON line
{"events":N,"alerts":N,"seconds":F,"rate":F}; seconds run from the first
message taken to the last alert flushed (the group join is left out, as
cardwatch's rate leaves it out). Debian's python3-confluent-kafka and
python3-redis (scripts/install-deps.sh); run it with /usr/bin/python3.
"""
import argparse
import hashlib
import hmac
import json
import sys
import time

import redis
from confluent_kafka import Consumer, KafkaError, Producer


def load_key(path):
    """(key_id, key bytes) from a cardwatch key file."""
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                kid, hexkey = line.split()
                return kid, bytes.fromhex(hexkey)
    raise SystemExit(f"peer: {path}: no key line")


def varint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, i
        shift += 7


# cardwatch.v1.Transaction field numbers (proto/cardwatch.proto)
STR_FIELDS = {1: "txn_id", 2: "pan", 3: "expiry", 5: "currency",
              7: "merchant_id", 8: "merchant_country"}
INT_FIELDS = {4: "amount_minor", 6: "mcc", 9: "channel", 10: "entry_mode",
              11: "cvv2_presented", 12: "response", 13: "event_time_ms"}


def decode_txn(buf):
    """A Transaction as a dict (unknown fields skipped); None if broken."""
    t = {}
    i, n = 0, len(buf)
    try:
        while i < n:
            tag, i = varint(buf, i)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                v, i = varint(buf, i)
                if field in INT_FIELDS:
                    t[INT_FIELDS[field]] = v
            elif wire == 2:
                ln, i = varint(buf, i)
                if field in STR_FIELDS:
                    t[STR_FIELDS[field]] = buf[i:i + ln].decode()
                i += ln
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            else:
                return None
    except (IndexError, UnicodeDecodeError):
        return None
    return t


def luhn_ok(pan):
    if not (13 <= len(pan) <= 19 and pan.isdigit()):
        return False
    total = 0
    for k, ch in enumerate(reversed(pan)):
        d = ord(ch) - 48
        if k % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_lookup(r, prefix, kid, fps):
    """The exposure of each fingerprint: a list of breach ids (empty when
    the card is clean), in the order of fps. cardwatch's data model
    (processor/rmodel.h): records "breach=exptag;..." are fields (the
    16-byte fingerprint) of hash buckets <p>:cards:<kid>:<n>, the bucket
    found by linear hashing over <p>:layout:<kid> (level, split); an entry
    ending in '!' is retired (no longer exposed to the rules). Two
    pipelined round trips per batch: the layout, then one HGET per card."""
    level, split = r.hmget(f"{prefix}:layout:{kid}", "level", "split")
    level, split = int(level or 0), int(split or 0)
    pipe = r.pipeline(transaction=False)
    for fp in fps:
        b = bytes.fromhex(fp)
        h = int.from_bytes(b[:4], "big")
        n = h % (1 << level)
        if n < split:
            n = h % (1 << (level + 1))
        pipe.hget(f"{prefix}:cards:{kid}:{n}", b)
    records = pipe.execute()
    out = []
    for rec in records:
        if not rec:
            out.append([])
            continue
        out.append([e.split(b"=", 1)[0].decode() for e in rec.split(b";")
                    if e and not e.endswith(b"!")])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--redis", required=True, help="HOST:PORT")
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--alert-topic", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--group", default=f"peer-{int(time.time())}")
    ap.add_argument("--prefix", default="cw")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()

    kid, key = load_key(a.key_file)
    host, port = a.redis.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    consumer = Consumer({"bootstrap.servers": a.brokers, "group.id": a.group,
                         "auto.offset.reset": "earliest",
                         "enable.auto.commit": True})
    producer = Producer({"bootstrap.servers": a.brokers, "linger.ms": 5,
                         "enable.idempotence": True})
    consumer.subscribe([a.topic])
    events = alerts = 0
    t0 = None
    deadline = time.monotonic() + a.timeout
    while events < a.expect and time.monotonic() < deadline:
        msgs = consumer.consume(num_messages=a.batch, timeout=0.1)
        if not msgs:
            continue
        if t0 is None:
            t0 = time.monotonic()
        txns, fps = [], []
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    print(f"peer: {m.error()}", file=sys.stderr)
                continue
            events += 1
            t = decode_txn(m.value())
            if (t is None or not luhn_ok(t.get("pan", ""))
                    or not t.get("txn_id")):
                continue  # a real service would dead-letter it
            pan = t.pop("pan")
            mac = hmac.new(key, pan.encode(), hashlib.sha256)
            fps.append(mac.hexdigest()[:32])
            t["pan_masked"] = pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
            txns.append(t)
        if not fps:
            continue
        found = card_lookup(r, a.prefix, kid, fps)
        for t, fp, breaches in zip(txns, fps, found):
            if not breaches:
                continue
            alert = {"alert_id": t["txn_id"], "txn_id": t["txn_id"],
                     "card_fingerprint": f"{kid}:{fp}",
                     "pan_masked": t["pan_masked"],
                     "event_time_ms": t.get("event_time_ms", 0),
                     "amount_minor": t.get("amount_minor", 0),
                     "currency": t.get("currency", ""),
                     "merchant_id": t.get("merchant_id", ""),
                     "rule": "exposed-card-use", "severity": "high",
                     "breaches": breaches,
                     "detected_at_ms": int(time.time() * 1000)}
            while True:
                try:
                    producer.produce(a.alert_topic, json.dumps(alert).encode(),
                                     key=f"{kid}:{fp}")
                    break
                except BufferError:
                    producer.poll(0.01)
            alerts += 1
        producer.poll(0)
    left = producer.flush(60)
    secs = time.monotonic() - t0 if t0 is not None else 0.0
    consumer.close()
    print(json.dumps({"events": events, "alerts": alerts,
                      "seconds": round(secs, 6),
                      "rate": round(events / secs, 1) if secs > 0 else 0.0}))
    if left:
        print(f"peer: {left} alert(s) not delivered", file=sys.stderr)
        return 1
    return 0 if events >= a.expect else 3


if __name__ == "__main__":
    sys.exit(main())
