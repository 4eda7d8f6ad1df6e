"""The chaos suite's input: a seeded scenario (issuers, test cards, one
breach) and an endless, seeded stream of transactions with what makes a
live stream hard:

  - ~5% of the valid events on exposed cards (routed to three issuers, and
    a BIN no issuer owns), in bursts that make the default pack's window
    rules fire (card testing, velocity, declined bursts, spend spikes);
  - redeliveries: a transaction sent before is sent again later (the same
    txn_id and content, as an at-least-once upstream does);
  - out-of-order events: an event time up to 5 minutes earlier than the
    card's previous event;
  - invalid events: cwstack.invalid_events (JSON, through `cardwatch
    send`), and raw payloads produced as they are (cwstack.invalid_protobuf
    and cwstack.garbage).

Every event time lies in 2024 (well before the wall clock, and after the
breach window start). Each valid event's card is listed or not from the
start, so the default pack's model (tests/e2e/oracle.py) applies.

The registry (Stream.valid, Stream.invalid_json, Stream.invalid_raw)
lets the checker classify every message it reads back from the
transactions topic; the checker computes everything from what is on the
topic, so a delivery that failed (or went twice) in a fault is accounted
for as it happened.
"""

import collections
import json
import random

import cwstack as cw
from cwstack import Breach, CardMaker, txn

SEC = 1000
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000

EXPOSED_PREFIXES = ["400001", "400077", "4000503", "510000", "52000042", "999999"]
CLEAN_PREFIXES = ["400002", "400090", "4000501", "510000", "52000007", "371234"]


class Scenario:
    """Issuers, cards and the breach of one seed."""

    def __init__(self, seed, n_exposed=48, n_clean=600):
        self.seed = seed
        self.issuers = cw.three_issuers()
        mk = CardMaker(seed)
        self.exposed = mk.cards(EXPOSED_PREFIXES, n_exposed)
        self.clean = mk.cards(CLEAN_PREFIXES, n_clean)
        self.cards = set(self.exposed) | set(self.clean)
        self.breach = Breach(f"chaos-{seed}", "2024-01-01", "2024-12-31",
                             ["pan", "expiry", "cvv2"], self.exposed,
                             description="chaos suite")


class Stream:
    """Seeded event generator. next_batch(n) -> (json lines for `cardwatch
    send`, raw payloads to produce as they are). Shares of the traffic:
    exposed (of the new valid events), redeliver, out_of_order (of the
    exposed cards' events), invalid_json and invalid_raw (of all events)."""

    def __init__(self, sc, seed, exposed=0.05, redeliver=0.02, out_of_order=0.10,
                 invalid_json=0.004, invalid_raw=0.001):
        self.sc = sc
        self.rnd = random.Random(f"chaos-stream-{seed}")
        self.shares = dict(exposed=exposed, redeliver=redeliver, out_of_order=out_of_order,
                           invalid_json=invalid_json, invalid_raw=invalid_raw)
        base = cw.day_ms("2024-03-01")
        self.clock = {p: base + self.rnd.randrange(0, 20 * DAY) for p in sc.cards}
        self.valid = {}          # txn_id -> txn dict (every valid event generated)
        self.invalid_json = {}   # cwstack.input_key -> reason
        self.invalid_raw = {}    # payload bytes -> reason
        self.recent = collections.deque(maxlen=3000)   # txn_ids for redeliveries
        self.recent_exposed = collections.deque(maxlen=500)
        self.n = 0
        self.n_bad = 0
        self.counts = collections.Counter()

    # -- one event ------------------------------------------------------
    def _time(self, pan, exposed):
        last = self.clock[pan]
        r = self.rnd
        if exposed and r.random() < self.shares["out_of_order"]:
            # earlier than the card's previous event, by up to 5 minutes;
            # the card's clock stays where it was
            self.counts["out_of_order"] += 1
            return last - r.randrange(SEC, 5 * MIN + 1)
        if exposed:
            step = r.choice([15 * SEC, 40 * SEC, MIN, 2 * MIN, 3 * MIN, 4 * MIN, 7 * MIN,
                             20 * MIN, HOUR, 5 * HOUR, DAY])
        else:
            step = r.choice([MIN, 30 * MIN, 3 * HOUR, DAY])
        self.clock[pan] = last + step + r.randrange(0, SEC)
        return self.clock[pan]

    def _valid(self):
        r = self.rnd
        exposed = r.random() < self.shares["exposed"]
        pan = r.choice(self.sc.exposed if exposed else self.sc.clean)
        tid = f"cx{self.sc.seed % 100000}-{self.n:07d}"
        self.n += 1
        at = self._time(pan, exposed)
        x = r.random()
        amount = (r.randrange(50, 201) if x < 0.4 else
                  r.randrange(1000, 30000) if x < 0.85 else r.randrange(100000, 260000))
        t = txn(tid, pan, at, r, amount_minor=amount,
                response="declined" if r.random() < 0.3 else "approved")
        self.valid[tid] = t
        self.recent.append(tid)
        if exposed:
            self.recent_exposed.append(tid)
            self.counts["exposed"] += 1
        self.counts["valid"] += 1
        return t

    def _redelivery(self):
        pool = self.recent_exposed if self.recent_exposed and self.rnd.random() < 0.5 \
            else self.recent
        self.counts["redeliveries"] += 1
        return self.valid[self.rnd.choice(pool)]

    def _invalid_json(self):
        self.n_bad += 1
        tag = f"cx{self.sc.seed % 100000}-b{self.n_bad}"
        t, reason = self.rnd.choice(cw.invalid_events(self.rnd.choice(self.sc.exposed), tag))
        key = cw.input_key(t)
        self.invalid_json[key] = reason
        self.counts["invalid_json"] += 1
        return t

    def _invalid_raw(self):
        self.n_bad += 1
        tag = f"cx{self.sc.seed % 100000}-r{self.n_bad}"
        pan = self.rnd.choice(self.sc.exposed)
        if self.rnd.random() < 0.5:
            payload, _t, reason = self.rnd.choice(cw.invalid_protobuf(pan, tag))
        else:
            payload, reason = self.rnd.choice(cw.garbage(pan)), "undecodable"
            # garbage() is the same few payloads each time: a unique tail
            # would make it decodable, so repeats share one registry entry
        self.invalid_raw[payload] = reason
        self.counts["invalid_raw"] += 1
        return payload

    def next_batch(self, n):
        """n events: JSON lines (str, newline-terminated) and raw payloads."""
        lines, raw = [], []
        s = self.shares
        for _ in range(n):
            x = self.rnd.random()
            if x < s["invalid_raw"]:
                raw.append(self._invalid_raw())
            elif x < s["invalid_raw"] + s["invalid_json"]:
                lines.append(json.dumps(self._invalid_json()) + "\n")
            elif x < s["invalid_raw"] + s["invalid_json"] + s["redeliver"] and self.recent:
                lines.append(json.dumps(self._redelivery()) + "\n")
            else:
                lines.append(json.dumps(self._valid()) + "\n")
        return lines, raw
