"""cardwatch-specific helpers for the end-to-end tests (not a test module).

What it offers
  Issuer, Breach                  test-side model of the config's issuers and
                                  of a loaded breach (dates -> window ms)
  CardMaker                       synthetic Luhn-valid test cards under a prefix
  txn()                           one transaction as the JSON-lines dict
  route(), expected_alerts(),     what cardwatch must produce, computed here
  outcomes()                      from the inputs alone (independent of the C
                                  code): routing, windows, ids, fingerprints
  Stack                           Redis + embedded Kafka + key file + config;
                                  .load(), .send(), .send_async(), .run(),
                                  .metrics(), .ready(),
                                  .alerts() (decoded Alert messages of every
                                  alert topic), .dead_letters()
  check_alert(), check_alerts()   compare decoded alerts with the expectation
  parse_summary()                 the table `cardwatch run` prints at the end

Test cards are generated here and only exist under tests/: random digits
under a prefix, Luhn check digit appended. No real card number is used.
"""

import calendar
import concurrent.futures
import datetime
import hashlib
import hmac
import json
import os
import random
import re
import signal
from pathlib import Path

import harness as h

KEY_ID = "e2e-k1"
# Fixed test key (a hash of a label, not a secret): 32 bytes = 64 hex.
KEY_HEX = hashlib.sha256(b"cardwatch e2e fingerprint key").hexdigest()
FALLBACK_TOPIC = "cardwatch.alerts.unrouted"
DEAD_LETTER_TOPIC = "cardwatch.deadletter"
TXN_TOPIC = "cardwatch.transactions"
ALERT_PREFIX = "cardwatch.alerts."
RULE = "exposed-card-use"
RULESET = "builtin-1"
# Canonical order of breach elements (as cardwatch lists them).
ELEMENTS = ["pan", "expiry", "cvv2", "name", "address", "phone", "email"]
# Every dead-letter reason (txn_status_name in processor/txn.c).
REASONS = ["undecodable", "txn_id", "pan", "luhn", "expiry", "amount", "currency", "mcc",
           "merchant", "country", "channel", "entry_mode", "response", "event_time"]
# [replay] topic_suffix default: a replay without --output writes here.
REPLAY_SUFFIX = ".replay"
# A dead-letter reason only a replay file can give (a line over the limit).
REASON_TOO_LONG = "too_long"
# Dated too far ahead of the wall clock ([rules] max_future_skew_ms).
REASON_FUTURE = "event_time_future"


def day_ms(date, end_of_day=False):
    """'YYYY-MM-DD' (UTC) -> ms since the epoch of its first (or last) ms."""
    d = datetime.date.fromisoformat(date)
    ms = calendar.timegm(d.timetuple()) * 1000
    return ms + 86_400_000 - 1 if end_of_day else ms


def wall_ms():
    return int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)


def alert_id(txn_id):
    return hashlib.sha256(b"cardwatch.alert.v1:" + txn_id.encode()).hexdigest()[:32]


def fingerprint(pan, key_id=KEY_ID, key_hex=KEY_HEX):
    mac = hmac.new(bytes.fromhex(key_hex), pan.encode(), hashlib.sha256).hexdigest()
    return f"{key_id}:{mac[:32]}"


# The card data model in Redis (processor/rmodel.h): card records live in
# hash buckets <p>:cards:<kid>:<n>, field = the 16-byte fingerprint; the
# bucket comes from linear hashing over the layout <p>:layout:<kid>.
def card_bucket(fp_bin, level, split):
    """rmodel_bucket() in Python: the bucket number of a fingerprint."""
    h = int.from_bytes(fp_bin[:4], "big")
    n = h % (1 << level)
    if n < split:
        n = h % (1 << (level + 1))
    return n


def card_field(client, pan_or_fp, prefix="cw", key_id=KEY_ID):
    """Where the record of a card number or of a "kid:hex" fingerprint
    lives: (its bucket key, its field - the 16-byte fingerprint)."""
    fp = pan_or_fp if ":" in pan_or_fp else fingerprint(pan_or_fp, key_id)
    kid, hexfp = fp.split(":")
    level, split = client.call("HMGET", f"{prefix}:layout:{kid}", "level", "split")
    b = card_bucket(bytes.fromhex(hexfp), int(level or 0), int(split or 0))
    return f"{prefix}:cards:{kid}:{b}", bytes.fromhex(hexfp)


def card_record(client, pan_or_fp, prefix="cw", key_id=KEY_ID):
    """The card record ("breach=exptag;...") of a card number or of a
    "kid:hex" fingerprint, or None when Redis holds none."""
    rec = client.call("HGET", *card_field(client, pan_or_fp, prefix, key_id))
    return rec.decode() if rec is not None else None


def delete_card_record(client, pan_or_fp, prefix="cw", key_id=KEY_ID):
    """Deletes a card's record from its bucket (HDEL of its field: what
    Redis losing it looks like; counts are left as they were). Returns the
    record it held, or None."""
    key, field = card_field(client, pan_or_fp, prefix, key_id)
    rec = client.call("HGET", key, field)
    client.call("HDEL", key, field)
    return rec.decode() if rec is not None else None


def put_card_record(client, pan_or_fp, record, prefix="cw", key_id=KEY_ID):
    """Writes a card's record into its bucket (HSET of its field), e.g. to
    put back what delete_card_record took."""
    client.call("HSET", *card_field(client, pan_or_fp, prefix, key_id), record)


def card_records(client, prefix="cw", key_id=KEY_ID):
    """Every card record of the key id: {"kid:hex": record}."""
    out = {}
    for key in client.call("KEYS", f"{prefix}:cards:{key_id}:*"):
        flat = client.call("HGETALL", key)
        for f, v in zip(flat[::2], flat[1::2]):
            out[f"{key_id}:{f.hex()}"] = v.decode()
    return out


# Dead letters carry a keyed MAC of their payload, not a plain hash (a hash
# of a bare card number is found by trying the numbers of a BIN): HMAC-SHA256
# under a key derived from the fingerprint key with this label (README).
DEAD_LETTER_MAC_LABEL = b"cardwatch dead-letter v1"


def dead_letter_mac(payload, key_id=KEY_ID, key_hex=KEY_HEX):
    """The payload_mac of a dead letter: "<key id>:<64 hex>"."""
    sub = hmac.new(bytes.fromhex(key_hex), DEAD_LETTER_MAC_LABEL, hashlib.sha256).digest()
    return f"{key_id}:{hmac.new(sub, payload, hashlib.sha256).hexdigest()}"


def mask(pan):
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def luhn_complete(body):
    """body + the check digit that makes it Luhn-valid."""
    for c in "0123456789":
        if h.luhn_valid(body + c):
            return body + c
    raise AssertionError("unreachable")


def luhn_break(pan):
    """The same number with a wrong check digit."""
    return pan[:-1] + str((int(pan[-1]) + 1) % 10)


class CardMaker:
    """Distinct synthetic test cards: random digits after a prefix."""

    def __init__(self, seed):
        self.rnd = random.Random(seed)
        self.made = set()

    def card(self, prefix, length=16):
        while True:
            body = prefix + "".join(self.rnd.choice("0123456789")
                                    for _ in range(length - len(prefix) - 1))
            pan = luhn_complete(body)
            if pan not in self.made:
                self.made.add(pan)
                return pan

    def cards(self, prefixes, n, length=16):
        """n cards, prefixes taken in turn (a list, or one string)."""
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        return [self.card(prefixes[i % len(prefixes)], length) for i in range(n)]


class Issuer:
    """One [issuer ID] section. bins: list of prefixes and "lo-hi" ranges."""

    def __init__(self, id, home_country, bins, name=None, topic=None):
        self.id = id
        self.home_country = home_country
        self.bins = list(bins)
        self.name = name
        self.topic = topic or ALERT_PREFIX + id

    def prefixes(self):
        out = set()
        for b in self.bins:
            if "-" in b:
                lo, hi = b.split("-")
                out.update(str(x).zfill(len(lo)) for x in range(int(lo), int(hi) + 1))
            else:
                out.add(b)
        return out

    def ini(self):
        lines = [f"[issuer {self.id}]", f"home_country = {self.home_country}",
                 f"bins = {', '.join(self.bins)}"]
        if self.name:
            lines.append(f"name = {self.name}")
        if self.topic != ALERT_PREFIX + self.id:
            lines.append(f"topic = {self.topic}")
        return "\n".join(lines) + "\n"


def route_table(issuers):
    """prefix -> Issuer (a prefix belongs to one issuer only)."""
    table = {}
    for iss in issuers:
        for p in iss.prefixes():
            assert p not in table, f"test config: prefix {p} given twice"
            table[p] = iss
    return table


def route(pan, table):
    """The issuer owning the longest matching prefix (8, 7, then 6 digits),
    or None. table: route_table(issuers)."""
    for n in (8, 7, 6):
        if pan[:n] in table:
            return table[pan[:n]]
    return None


class Breach:
    def __init__(self, id, start, end, elements, cards, description=None):
        self.id = id
        self.start, self.end = start, end
        self.start_ms = day_ms(start)
        self.end_ms = day_ms(end, end_of_day=True)
        self.elements = [e for e in ELEMENTS if e in elements]
        self.cards = list(cards)
        self.card_set = set(cards)
        self.description = description


_TXN_N = [0]


def txn(txn_id, pan, event_time_ms, rnd=None, **fields):
    """A valid transaction dict (the JSON-lines field names); `fields`
    override (None removes a field)."""
    rnd = rnd or random.Random(txn_id)
    t = {
        "txn_id": txn_id,
        "pan": pan,
        "expiry": rnd.choice(["2612", "2701", "2712", "2809"]),
        "amount_minor": rnd.randrange(1, 500_000),
        "currency": rnd.choice(["EUR", "GBP", "USD"]),
        "mcc": rnd.choice([5411, 5999, 4829, 7995, 6011]),
        "merchant_id": f"merch-{rnd.randrange(1000):04d}",
        "merchant_country": rnd.choice(["DE", "GB", "US", "NL"]),
        "channel": rnd.choice(["card_present", "ecommerce", "moto", "recurring", "atm"]),
        "entry_mode": rnd.choice(["chip", "contactless", "magstripe", "keyed", "on_file"]),
        "cvv2_presented": rnd.random() < 0.5,
        "response": rnd.choice(["approved", "declined"]),
        "event_time_ms": event_time_ms,
    }
    for k, v in fields.items():
        if v is None:
            t.pop(k, None)
        else:
            t[k] = v
    return t


# Commands that never talk to Kafka (anything else starts the broker).
_NO_KAFKA = {"load", "unload", "breaches", "check", "rules", "token", "feed"}


def needs_kafka(args):
    """Whether `cardwatch ARGS` talks to Kafka: a file replay with file
    outputs does not (as app_replay.c decides)."""
    if args[0] in _NO_KAFKA:
        return False
    if args[0] == "gen":
        return "--topic" in args
    if args[0] == "cpp":         # a topic range (--from), else files
        return "--from" in args
    if args[0] == "replay":
        return "--output" not in args or ("--input" not in args and "--dead-letter" not in args)
    return True


def stream(seed, n, prefix, exposed, clean, base_day="2024-03-10", share=0.06,
           days=20):
    """n transactions "<prefix>-<i>" (seeded): a share on the exposed
    cards, the rest on the clean ones, at random times over `days` days
    from base_day."""
    rnd = random.Random(seed)
    base = day_ms(base_day)
    return [txn(f"{prefix}-{i:06d}",
                rnd.choice(exposed) if rnd.random() < share else rnd.choice(clean),
                base + rnd.randrange(0, days * 86_400_000), rnd)
            for i in range(n)]


def expected_alerts(txns, breaches, issuers):
    """alert_id -> the alert cardwatch must produce for these valid
    transactions: {"topic", "key", "alert": {field: value}} with the Alert
    fields as ProtoSchema.decode() gives them (proto3 defaults omitted)."""
    out = {}
    table = route_table(issuers)
    for t in txns:
        active = [b for b in breaches
                  if t["pan"] in b.card_set and b.start_ms <= t["event_time_ms"]]
        if not active:
            continue
        iss = route(t["pan"], table)
        fp = fingerprint(t["pan"])
        a = {
            "alert_id": alert_id(t["txn_id"]),
            "issuer_id": iss.id if iss else "",
            "txn_id": t["txn_id"],
            "card_fingerprint": fp,
            "pan_masked": mask(t["pan"]),
            "event_time_ms": t["event_time_ms"],
            "amount_minor": t["amount_minor"],
            "currency": t["currency"],
            "mcc": t["mcc"],
            "merchant_id": t["merchant_id"],
            "merchant_country": t["merchant_country"],
            "channel": "CHANNEL_" + t["channel"].upper(),
            "severity": "SEVERITY_HIGH",
            "hits": [{"rule_id": RULE, "severity": "SEVERITY_HIGH"}],
            "breaches": [{"breach_id": b.id, "window_start": b.start_ms,
                          "window_end": b.end_ms, "elements": b.elements}
                         for b in sorted(active, key=lambda b: b.id)],
            "mode": "MODE_LIVE",
            "ruleset_version": RULESET,
        }
        assert a["alert_id"] not in out, f"test data: txn_id {t['txn_id']} used twice"
        out[a["alert_id"]] = {"topic": iss.topic if iss else FALLBACK_TOPIC,
                              "key": fp.encode(), "alert": a}
    return out


def outcomes(txns, breaches):
    """Counts of the outcomes cardwatch reports for valid transactions:
    {"clean": card in no breach, "exposed": listed but no breach window had
    started at the event time, "alerted": the rest}."""
    out = {"clean": 0, "exposed": 0, "alerted": 0}
    for t in txns:
        listed = [b for b in breaches if t["pan"] in b.card_set]
        if not listed:
            out["clean"] += 1
        elif any(b.start_ms <= t["event_time_ms"] for b in listed):
            out["alerted"] += 1
        else:
            out["exposed"] += 1
    return out


def alert_topics(issuers):
    return [i.topic for i in issuers] + [FALLBACK_TOPIC]


# --------------------------------------------------------------------------
# checking

def _norm(alert):
    """A decoded Alert with proto3 defaults filled in and breaches sorted."""
    a = dict(alert)
    a.setdefault("issuer_id", "")
    a["breaches"] = sorted(a.get("breaches", []), key=lambda b: b.get("breach_id", ""))
    return a


def check_alert(topic, msg, alert, exp, min_detected_ms=None, max_detected_ms=None):
    """One decoded alert against its expectation (see expected_alerts)."""
    where = f"alert {alert.get('alert_id')} (txn {alert.get('txn_id')}) on {topic}"
    assert topic == exp["topic"], f"{where}: expected on {exp['topic']}"
    assert msg.key == exp["key"], f"{where}: message key {msg.key!r}, expected {exp['key']!r}"
    got = _norm(alert)
    detected = got.pop("detected_at_ms", None)
    want = exp["alert"]
    diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
    assert not diff, f"{where}: fields differ (got, expected): {diff}"
    assert isinstance(detected, int) and detected > 0, f"{where}: detected_at_ms {detected!r}"
    if min_detected_ms is not None:
        assert min_detected_ms <= detected <= max_detected_ms, \
            f"{where}: detected_at_ms {detected} outside the run " \
            f"[{min_detected_ms}, {max_detected_ms}]"


def check_alerts(got, expected, exact_once=True, **kw):
    """got: list of (topic, Message, decoded alert) from Stack.alerts().
    Every expected alert is present with the expected content; no other
    alert exists; exact_once: no duplicates; otherwise every duplicate
    equals the first copy apart from detected_at_ms. Returns
    {alert_id: copies}."""
    copies = {}
    first = {}
    for topic, msg, a in got:
        aid = a.get("alert_id")
        assert aid in expected, (f"unexpected alert {aid} (txn {a.get('txn_id')}, issuer "
                                 f"{a.get('issuer_id', '')!r}) on {topic}")
        check_alert(topic, msg, a, expected[aid], **kw)
        copies[aid] = copies.get(aid, 0) + 1
        body = dict(a)
        body.pop("detected_at_ms", None)
        if aid in first:
            assert first[aid] == (topic, msg.key, body), \
                f"duplicate of alert {aid} differs: {first[aid]} vs {(topic, msg.key, body)}"
        else:
            first[aid] = (topic, msg.key, body)
    missing = sorted(set(expected) - set(copies))
    assert not missing, (f"{len(missing)} expected alert(s) missing, e.g. txn "
                         f"{[expected[m]['alert']['txn_id'] for m in missing[:5]]}")
    if exact_once:
        dups = {k: n for k, n in copies.items() if n > 1}
        assert not dups, f"{len(dups)} alert(s) produced more than once: {list(dups.items())[:5]}"
    assert set(copies) == set(expected)
    return copies


_SUMMARY = re.compile(r"cardwatch run: (\d+) events in [\d.]+ s \([\d.]+/s\): (\d+) clean, "
                      r"(\d+) exposed without alert, (\d+) alerted, (\d+) dead letters")


def parse_summary(text):
    """{"events", "clean", "exposed", "alerted", "dead_letters",
    "by_issuer": {issuer: n}, "hits": {(issuer, rule): n}} from the stdout of
    `cardwatch run`."""
    m = _SUMMARY.search(text)
    assert m, f"no summary line in run output:\n{text}"
    out = dict(zip(["events", "clean", "exposed", "alerted", "dead_letters"],
                   map(int, m.groups())))
    out["by_issuer"], out["hits"] = {}, {}
    section = None
    for line in text[m.end():].splitlines():
        if line.startswith("Alerts by issuer:"):
            section = "issuer"
        elif line.startswith("Rule hits by issuer and rule:"):
            section = "hits"
        elif not line.strip() or line.strip() == "(no alerts)":
            continue
        elif section and line.startswith("  "):
            cols = line.split()
            if cols[-1] in ("alerts", "hits"):   # column headings
                continue
            if section == "issuer" and len(cols) == 2:
                out["by_issuer"][cols[0]] = int(cols[1])
            elif section == "hits" and len(cols) == 3:
                out["hits"][(cols[0], cols[1])] = int(cols[2])
            else:
                raise AssertionError(f"unexpected summary line {line!r}")
    return out


# --------------------------------------------------------------------------
# the stack

class HAMaster:
    """Stack.redis for a RedisHA: every attribute (call, port, dump, ...)
    is the one of the node the sentinels name as master at that moment."""

    def __init__(self, ha):
        self.ha = ha

    def __getattr__(self, name):
        return getattr(self.ha.master(), name)

    def __repr__(self):
        return f"<HAMaster of {self.ha!r}>"


class Stack:
    """Redis, the embedded Kafka, a fingerprint key file (mode 0600) and a
    cardwatch config with the given issuers.

        s = Stack(issuers, partitions=8)
        s.load(breach)                   # cardwatch load (CSV written here)
        s.send(txns)                     # cardwatch send (JSON lines)
        p = s.run("--exit-at-end")       # cardwatch run, spawned
        s.metrics().get(...), s.ready() -> (status, body)
        s.alerts() -> [(topic, Message, decoded Alert)]

    A test's own Redis: Stack(issuers, redis=h.Redis(users=...) or
    h.RedisHA(...), redis_ini="username = cw\\npassword_file = ...\\n").

    Output of every short-lived cardwatch command is kept in a .log file
    in the test directory (self.logs) so that it can be scanned later.
    """

    def __init__(self, issuers, partitions=4, session_timeout_ms=6000, extra_ini="",
                 kafka_topics=None, kafka_brokers=1, kafka_kind=None, kafka_sasl=None,
                 redis=None, redis_ini="", kafka_props=None, kafka_faults=()):
        self.issuers = list(issuers)
        self.schema = h.ProtoSchema()
        self.dir = h.tmpdir("stack")
        # redis: a started h.Redis or h.RedisHA of the test's own (default: a
        # plain h.Redis). With a RedisHA the config names its sentinels and
        # master, self.ha is it and self.redis the current master (HAMaster).
        # redis_ini: more [redis] lines (username, password_file, tls...).
        self.ha = redis if isinstance(redis, h.RedisHA) else None
        if self.ha is not None:
            self.redis = HAMaster(self.ha)
            redis_lines = f"sentinels = {self.ha.sentinels}\nmaster_name = {self.ha.name}\n"
        else:
            self.redis = redis if redis is not None else h.Redis()
            redis_lines = f"address = 127.0.0.1:{self.redis.port}\n"
        if redis_ini and not redis_ini.endswith("\n"):
            redis_ini += "\n"
        # Every topic the config names, as an operator creates them (the
        # broker creates none on first use): live, replay and dead letters.
        topics = {TXN_TOPIC: partitions, DEAD_LETTER_TOPIC: 4,
                  DEAD_LETTER_TOPIC + REPLAY_SUFFIX: 4}
        for t in alert_topics(self.issuers):
            topics[t] = 4
            topics[t + REPLAY_SUFFIX] = 4
        topics.update(kafka_topics or {})
        # Started on first use (self.kafka): a file replay needs no broker.
        # kafka_props: extra broker properties (Apache Kafka only);
        # kafka_faults: request errors the mock arms on Stack.kafka.inject()
        self._kafka = h.Kafka(topics, brokers=kafka_brokers, kind=kafka_kind, start=False,
                              sasl=kafka_sasl, props=kafka_props, faults=kafka_faults)
        if not self._kafka.apache:
            self._kafka.start()     # the mock picks its ports when it starts
        # cardwatch talks to the SASL_SSL listeners when there are any
        boot = self._kafka.sasl_bootstraps if kafka_sasl else self._kafka.bootstraps
        self.key_file = self.dir / "fingerprint.key"
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{KEY_ID} {KEY_HEX}\n")
        os.chmod(self.key_file, 0o600)
        self.http_port = h.free_port()
        self.config = self.dir / "cardwatch.ini"
        self.config.write_text(
            "; written by tests/e2e/cwstack.py\n"
            "[kafka]\n"
            f"brokers = {boot}\n"
            "group = cardwatch-e2e\n"
            f"transactions_topic = {TXN_TOPIC}\n"
            f"dead_letter_topic = {DEAD_LETTER_TOPIC}\n"
            f"alert_topic_prefix = {ALERT_PREFIX}\n"
            f"fallback_topic = {FALLBACK_TOPIC}\n"
            f"session_timeout_ms = {session_timeout_ms}\n"
            "\n[redis]\n"
            + redis_lines + redis_ini +
            "\n[card]\n"
            f"key_file = {self.key_file}\n"
            "\n[http]\n"
            f"listen = 127.0.0.1:{self.http_port}\n"
            + extra_ini + "\n"
            + "\n".join(i.ini() for i in self.issuers))
        self.logs = []
        self._n = 0

    @property
    def kafka(self):
        """The Kafka cluster, started on first use."""
        return self._kafka.start()

    def prepare(self, args):
        """Start Kafka if `cardwatch ARGS` (ARGS[0] the command) will use it:
        for tests that run cardwatch on this stack's config themselves."""
        if needs_kafka([str(a) for a in args]):
            self.kafka

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def cardwatch(self, *args, check=True, timeout=120):
        """Run a short cardwatch command (config given) to completion; its
        stdout+stderr are kept in a log file. Returns CompletedProcess."""
        self._n += 1
        args = [str(a) for a in args]
        self.prepare(args)
        res = h.run_tool([h.tool("cardwatch"), args[0], "--config", self.config, *args[1:]],
                         timeout=timeout, check=False)
        log = self.dir / f"cmd-{self._n:02d}-{args[0]}.log"
        log.write_bytes(b"$ cardwatch " + " ".join(args).encode() + b"\n" + res.stdout
                        + b"\n--- stderr\n" + res.stderr)
        self.logs.append(log)
        if check and res.returncode != 0:
            raise AssertionError(f"cardwatch {' '.join(args)} exited {res.returncode}: "
                                 f"{res.stderr.decode(errors='replace').strip()}")
        return res

    def load(self, breach):
        """Write the breach's CSV (pan,expiry) and `cardwatch load` it."""
        csv = self.dir / f"breach-{breach.id}.csv"
        rnd = random.Random(breach.id)
        csv.write_text("pan,expiry\n" + "".join(
            f"{p},{rnd.choice(['2612', '2701', '2712', '2809'])}\n" for p in breach.cards))
        args = ["load", "--breach", breach.id, "--window-start", breach.start,
                "--window-end", breach.end, "--elements", ",".join(breach.elements)]
        if breach.description:
            args += ["--description", breach.description]
        res = self.cardwatch(*args, csv)
        out = res.stdout.decode() + res.stderr.decode()
        assert f"{len(breach.cards)} cards loaded" in out, out
        return res

    def _jsonl(self, txns, name):
        self._n += 1
        path = self.dir / f"{name}-{self._n:02d}.jsonl"
        with open(path, "w") as f:
            for t in txns:
                f.write((t if isinstance(t, str) else json.dumps(t)) + "\n")
        return path

    def send(self, txns, name="txns"):
        """Write the transactions as JSON lines and `cardwatch send` them."""
        path = self._jsonl(txns, name)
        res = self.cardwatch("send", "--input", path, "--topic", TXN_TOPIC)
        out = res.stdout.decode() + res.stderr.decode()
        assert f"{len(txns)} transactions sent" in out and " 0 skipped" in out, out
        return res

    def send_async(self, txns, name="txns"):
        """Like send(), in the background: returns the spawned Proc."""
        self.kafka
        path = self._jsonl(txns, name)
        self._n += 1
        log = self.dir / f"cmd-{self._n:02d}-send.log"
        self.logs.append(log)
        return h.spawn([h.tool("cardwatch"), "send", "--config", self.config, "--input", path,
                        "--topic", TXN_TOPIC], name="cardwatch-send", log=log)

    def run(self, *args, name="cardwatch-run"):
        """Spawn `cardwatch run --config ... --no-progress ARGS`; stdout goes
        to proc.stdout_path, stderr (the log) to proc.log."""
        self.kafka
        self._n += 1
        out = self.dir / f"{name}-{self._n:02d}.stdout"
        with open(out, "wb") as f:
            p = h.spawn([h.tool("cardwatch"), "run", "--config", self.config, "--no-progress",
                         *args], name=name, log=self.dir / f"{name}-{self._n:02d}.log",
                        stdout=f)
        p.stdout_path = out
        return p

    def finish(self, proc, timeout=90):
        """Wait for an --exit-at-end run; returns its stdout text."""
        try:
            rc = proc.wait(timeout)
        except Exception:
            proc.stop()
            raise AssertionError(f"cardwatch run did not finish within {timeout}s:\n"
                                 + proc.log_text(30)) from None
        assert rc == 0, f"cardwatch run exited {rc}:\n{proc.log_text(30)}"
        return Path(proc.stdout_path).read_text()

    def terminate(self, proc, timeout=30):
        """SIGTERM (drain and exit); asserts exit status 0; returns stdout."""
        rc = proc.stop(timeout=timeout, sig=signal.SIGTERM)
        assert rc == 0, f"cardwatch run exited {rc} after SIGTERM:\n{proc.log_text(30)}"
        return Path(proc.stdout_path).read_text()

    def metrics(self):
        return h.scrape(self.url + "/metrics")

    def ready(self):
        return h.http_get(self.url + "/readyz")

    def alerts(self, expect_count=None, timeout=30):
        """[(topic, Message, decoded Alert)] of every issuer topic and the
        fallback topic."""
        out = []
        topics = alert_topics(self.issuers)
        # one consume_all per topic, side by side: most of each is the
        # tool's start-up and metadata round trip (0.2 s), and some tests
        # read the alerts back dozens of times (test_oom_run: 90 times)
        with concurrent.futures.ThreadPoolExecutor(len(topics)) as pool:
            got = list(pool.map(lambda t: self.kafka.consume(t, timeout=timeout), topics))
        for topic, msgs in zip(topics, got):
            for m in msgs:
                out.append((topic, m, self.schema.decode("Alert", m.value)))
        if expect_count is not None:
            assert len(out) >= expect_count, f"{len(out)} alerts, expected {expect_count}"
        return out

    def dead_letters(self, expect_count=None, timeout=30):
        return self.kafka.consume(DEAD_LETTER_TOPIC, expect_count, timeout)

    def inputs(self):
        """Every message of the transactions topic."""
        return self.kafka.consume(TXN_TOPIC)


# --------------------------------------------------------------------------
# scenarios shared by the tests

def three_issuers():
    """alpha owns 400000-400099 except 40005000-40005049 (gamma's longer
    prefixes win); beta owns 510000 and 52000000-52000099. Anything else
    (e.g. 371234, 999999) is unrouted."""
    return [Issuer("alpha", "GB", ["400000-400099"], name="Alpha Bank (test)"),
            Issuer("beta", "US", ["510000", "52000000-52000099"]),
            Issuer("gamma", "NL", ["40005000-40005049"])]


def invalid_events(pan, tag):
    """One JSON transaction per decodable failure reason (a single bad field
    each, on top of a valid exposed card `pan`), plus one with two bad
    fields (the first rule in txn.c's order wins). Returns [(txn, reason)];
    every txn is told apart by its txn_id, or by merchant_id when it has
    no valid txn_id."""
    t0 = day_ms("2024-02-10")

    def bad(n, reason, **over):
        t = txn(f"{tag}-bad-{n:02d}", pan, t0 + n, merchant_id=f"{tag}-m{n:02d}")
        for k, v in over.items():
            if v is None:
                del t[k]
            else:
                t[k] = v
        return t, reason
    return [
        bad(1, "txn_id", txn_id=None),
        bad(2, "txn_id", txn_id="x" * 65),
        bad(3, "pan", pan=pan[:10]),
        bad(4, "pan", pan=pan[:4] + " " + pan[4:]),
        bad(5, "luhn", pan=luhn_break(pan)),
        bad(6, "expiry", expiry="2713"),
        bad(7, "expiry", expiry="27-1"),
        bad(8, "amount", amount_minor=-5),
        bad(9, "currency", currency="eur"),
        bad(11, "merchant", merchant_id=""),
        bad(12, "country", merchant_country="DEU"),
        bad(13, "channel", channel="teleport"),
        bad(14, "entry_mode", entry_mode="telepathy"),
        bad(15, "response", response="maybe"),
        bad(16, "event_time", event_time_ms=0),
        bad(17, "event_time", event_time_ms=None),
        bad(18, "luhn", pan=luhn_break(pan), channel="teleport", currency="eur"),
    ]


def invalid_protobuf(pan, tag):
    """Invalid transactions that `cardwatch send` cannot publish as they
    are (it replaces an out-of-range mcc by 0), as protobuf bytes encoded
    here: [(bytes, txn dict, reason)]."""
    schema = h.ProtoSchema()
    out = []
    for n, mcc in ((30, 10000), (31, 4_294_967_295)):
        t = txn(f"{tag}-bad-{n:02d}", pan, day_ms("2024-02-10") + n, merchant_id=f"{tag}-m{n}",
                mcc=mcc)
        out.append((schema.encode("Transaction", to_proto(t)), t, "mcc"))
    return out


def to_proto(t):
    """A JSON-lines transaction dict as ProtoSchema.encode() values."""
    p = dict(t)
    for field, prefix in (("channel", "CHANNEL_"), ("entry_mode", "ENTRY_MODE_"),
                          ("response", "RESPONSE_")):
        if field in p:
            p[field] = prefix + p[field].upper()
    return p


def garbage(pan):
    """Raw payloads that are not a protobuf Transaction (reason undecodable);
    one carries the digits of `pan` inside binary noise."""
    return [
        b"\x0a\xff\x01abc",                       # field 1: length 255, 3 bytes there
        b"\xff" * 10 + b"\x01",                   # tag varint longer than 64 bits
        b"\x00\x01noise " + pan.encode() + b" \xfe\xff",  # field number 0
        b"\x0a\x03\xff\xfe\xfd",                  # txn_id not UTF-8
    ]


def input_key(t):
    """Identity of an input transaction (see invalid_events): a JSON-lines
    dict or the same decoded from protobuf."""
    tid = t.get("txn_id", "")
    return tid if tid and tid.isprintable() and len(tid) <= 64 else \
        "merchant:" + t.get("merchant_id", "")
