"""The chaos suite's independent checker: what the run must have produced,
computed from the inputs alone, against what Kafka, the issuer feeds and
Redis hold at the end. It never reads the service's own counters.

  1. Inputs: every message of the transactions topic, classified with the
     stream's registry (tests/chaos/stream.py): valid (first copy or a
     redelivery of a txn_id), invalid JSON (its reason), raw invalid
     payloads (their reason). What a failed or repeated delivery of the
     producer put there is taken as it is.
  2. Expected alerts: the default pack's model (tests/e2e/oracle.py) over
     the valid events in partition order (all of a card's events are on
     one partition, in sending order: `cardwatch send --key card`).
     Expected dead letters: one per invalid message, at its position.
  3. Completion: waits until every expected alert id is on the alert
     topics and every expected dead letter is there, or until nothing new
     arrived for settle_s seconds.
  4. Alert topics: every copy decoded (harness.ProtoSchema) and compared
     with its expectation: missing, unexpected, wrong rules, other fields
     wrong, repeated copies (counted, allowed).
  5. Feeds: each issuer's GET /v1/alerts with its token, all pages: every
     expected id of the issuer present, none repeated, none unexpected,
     the same rules.
  6. Dead letters: by source position and reason.
  7. Longest stall: the longest time with no new alert delivered while
     one was due (its transaction was on the topic), from the brokers'
     LogAppendTime stamps of the transactions and the alerts; the faults
     during it are named.
  8. Luhn scan of every log, the alert and dead-letter topics, the feeds'
     answers and a dump of every Redis key: a test card number anywhere,
     or any 14-19 digit run that passes the Luhn check (13-digit runs are
     epoch-millisecond timestamps here; the test cards are 16 digits and
     are looked for exactly).

check() returns the report (a dict); print_report() prints it as tables.
Pass = 0 missing, 0 unexpected, 0 wrong rules, 0 wrong fields, feeds
exact, dead letters exact, 0 card numbers, every fault recovered, no
process died unasked.
"""

import collections
import json
import os
import re
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import harness as h
import cwstack as cw
import oracle

SCHEMA = h.ProtoSchema()


def say(msg):
    print(f"chaos: {msg}", flush=True)


# --------------------------------------------------------------------------
# reading

def consume_many(bootstraps, topics, timeout=60):
    """{topic: [Message]} read side by side (one consume_all each)."""
    out, errors = {}, []

    def one(t):
        try:
            out[t] = h.consume(bootstraps, t, timeout=timeout)
        except BaseException as e:  # noqa: BLE001
            errors.append((t, e))
    ths = [threading.Thread(target=one, args=(t,)) for t in topics]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    if errors:
        raise AssertionError(f"reading {errors[0][0]}: {errors[0][1]}")
    return out


def _same_txn(d, t):
    """A decoded Transaction equals the generated JSON-lines dict t."""
    want = cw.to_proto(t)
    for k, v in want.items():
        got = d.get(k)
        if got is None:   # proto3 default omitted
            got = {bool: False, int: 0, str: ""}.get(type(v))
            if k in ("channel", "entry_mode", "response"):
                got = None
        if got != v:
            return False
    return True


def _first_txn_id(value):
    """The txn_id (field 1) when it is the message's first field, else
    None: a quick look before a full decode."""
    try:
        num, wt, v = next(h.pb_fields(value[:100]))
        return v.decode() if num == 1 and wt == h.LEN else None
    except (StopIteration, ValueError, UnicodeDecodeError):
        return None


def classify_inputs(msgs, stream, exposed):
    """-> (valid [(Message, txn)] in (partition, offset) order, first
    copies and redeliveries alike; invalid [(Message, reason)]; unknown
    [Message]). A valid event on an exposed card (what the expectation
    depends on) is decoded in full and compared with what was generated;
    for the others the txn_id suffices (no invalid event reuses one)."""
    valid, invalid, unknown = [], [], []
    for m in msgs:
        reason = stream.invalid_raw.get(m.value)
        if reason is not None:
            invalid.append((m, reason))
            continue
        t = stream.valid.get(_first_txn_id(m.value or b""))
        if t is not None and t["pan"] not in exposed:
            valid.append((m, t))
            continue
        try:
            d = SCHEMA.decode("Transaction", m.value or b"")
        except Exception:  # noqa: BLE001 - not a Transaction at all
            unknown.append(m)
            continue
        t = stream.valid.get(d.get("txn_id", ""))
        if t is not None and _same_txn(d, t):
            valid.append((m, t))
            continue
        reason = stream.invalid_json.get(cw.input_key(d))
        if reason is not None:
            invalid.append((m, reason))
        else:
            unknown.append(m)
    return valid, invalid, unknown


class FeedReader:
    """GET /v1/alerts page by page with an issuer's token; every answer
    body is kept for the card-number scan."""

    def __init__(self, url):
        self.url = url
        self.bodies = []

    def get(self, path, token):
        req = urllib.request.Request(self.url + path,
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            with e:
                body, status = e.read(), e.code
        self.bodies.append(body)
        if status != 200:
            raise AssertionError(f"GET {path}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def all(self, token):
        out, cursor = [], None
        while True:
            page = self.get("/v1/alerts?limit=1000" + (f"&after={cursor}" if cursor else ""),
                            token)
            if not page["alerts"]:
                return out
            out.extend(it["alert"] for it in page["alerts"])
            cursor = page["next"]


# --------------------------------------------------------------------------
# waiting for the end

def wait_complete(sysm, expected, expected_dl, settle_s):
    """Reads the alert and dead-letter topics until everything expected is
    there or nothing new arrived for settle_s. Returns (topics dict, seconds
    waited)."""
    topics = cw.alert_topics(sysm.issuers) + [cw.DEAD_LETTER_TOPIC]
    t0 = time.monotonic()
    last_change, last_n = t0, -1
    want_ids = set(expected)
    want_dl = {(p, o) for p, o, _r in expected_dl}
    while True:
        got = consume_many(sysm.kafka.bootstraps, topics)
        ids = set()
        for t in topics[:-1]:
            for m in got[t]:
                try:
                    ids.add(SCHEMA.decode("Alert", m.value).get("alert_id"))
                except (ValueError, KeyError):
                    pass
        dls = {_dl_pos(m)[:2] for m in got[cw.DEAD_LETTER_TOPIC]}
        n = sum(len(v) for v in got.values())
        if want_ids <= ids and want_dl <= dls:
            return got, time.monotonic() - t0
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        elif time.monotonic() - last_change >= settle_s:
            return got, time.monotonic() - t0
        time.sleep(0.5)   # between two full reads of the topics (polling)


def _dl_pos(m):
    def num(name):
        v = m.header(name)
        try:
            return int(v.decode()) if v is not None else None
        except ValueError:
            return None
    r = m.header("reason")
    return num("source_partition"), num("source_offset"), r.decode() if r else None


# --------------------------------------------------------------------------
# card numbers

_RUN = re.compile(rb"[0-9]{13,}")
_HEX_LETTERS = frozenset(b"abcdefABCDEF")


def card_scan(data, cards, lengths):
    """(test card numbers found, other Luhn-valid 14-19 digit runs) in
    data, as masked strings. A digit run that touches a hex letter is part
    of a hexadecimal string (alert ids, fingerprints, MACs: 14 digits in a
    row occur in them now and then) and counts only if it holds a test
    card number."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    test, other = [], []
    for m in _RUN.finditer(data):
        run = m.group().decode()
        hexy = (m.start() > 0 and data[m.start() - 1] in _HEX_LETTERS) or \
            (m.end() < len(data) and data[m.end()] in _HEX_LETTERS)
        hit = None
        for L in lengths:
            for i in range(len(run) - L + 1):
                if run[i:i + L] in cards:
                    hit = run[i:i + L]
                    break
            if hit:
                break
        if hit:
            test.append(cw.mask(hit))
        elif not hexy and 14 <= len(run) <= 19 and h.luhn_valid(run):
            other.append(cw.mask(run))
    return test, other


def _log_files(root):
    """Every log-like file under root: *.log, *.stdout, *.out, but not
    Kafka's log segments (node-*/data/) - those hold the input."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "data" in dirnames and Path(dirpath).name.startswith("node-"):
            dirnames.remove("data")
        for f in filenames:
            if f.endswith((".log", ".stdout", ".out")):
                out.append(Path(dirpath) / f)
    return sorted(out)


def redis_dump(node):
    """Every key of db 0 with its value as GET/SMEMBERS/HGETALL/LRANGE/
    ZRANGE/XRANGE return it: [(key, type, value)], pipelined (harness
    Redis.dump() does the same one command at a time)."""
    c = node.client()
    try:
        keys, cursor = [], b"0"
        while True:
            cursor, batch = c.call("SCAN", cursor, "COUNT", 1000)
            keys.extend(batch)
            if cursor in (b"0", 0):
                break
        keys = sorted(set(keys))
        out = []
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            types = c.pipeline([("TYPE", k) for k in chunk])
            cmds, kept = [], []
            for k, t in zip(chunk, types):
                read = h.Redis._READ.get(t)
                if read:
                    cmds.append((read[0], k, *read[1:]))
                    kept.append((k, t))
            for (k, t), v in zip(kept, c.pipeline(cmds)):
                out.append((k, t, v if not isinstance(v, h.RespError) else None))
        return out
    finally:
        c.close()


# --------------------------------------------------------------------------
# the stall

def longest_stall(alerts):
    """alerts: [(produced ms, first delivered ms)] of the delivered expected
    alerts. The longest span with no new delivery while an alert was due:
    (seconds, from ms, to ms)."""
    if not alerts:
        return 0.0, None, None
    a = sorted(alerts, key=lambda x: x[1])
    suff = [0] * len(a)
    m = float("inf")
    for i in range(len(a) - 1, -1, -1):
        m = min(m, a[i][0])
        suff[i] = m
    best = (max(0, a[0][1] - suff[0]), suff[0], a[0][1])
    for i in range(len(a) - 1):
        start = max(a[i][1], suff[i + 1])
        gap = a[i + 1][1] - start
        if gap > best[0]:
            best = (gap, start, a[i + 1][1])
    return best[0] / 1000.0, best[1], best[2]


# --------------------------------------------------------------------------
# the check

def check(sysm, stream, records, run_info, settle_s=60):
    t0 = time.monotonic()
    phases, last = {}, [t0]

    def mark(name):
        now = time.monotonic()
        phases[name] = round(now - last[0], 1)
        last[0] = now
    failures = []
    sc = sysm.sc
    boot = sysm.kafka.bootstraps

    # 1. inputs
    inputs = h.consume(boot, cw.TXN_TOPIC, timeout=120)
    valid, invalid, unknown = classify_inputs(inputs, stream, sc.breach.card_set)
    first, produced_ms, redeliveries = [], {}, 0
    redelivered = set()      # txn_ids on the topic more than once
    last_time, out_of_order = {}, 0
    for m, t in valid:
        tid = t["txn_id"]
        if tid in produced_ms:
            redeliveries += 1
            redelivered.add(tid)
            continue
        produced_ms[tid] = m.timestamp
        first.append(t)
        pan = t["pan"]
        if pan in last_time and t["event_time_ms"] < last_time[pan]:
            out_of_order += 1
        last_time[pan] = max(last_time.get(pan, 0), t["event_time_ms"])
    exposed_n = sum(1 for t in first if t["pan"] in sc.breach.card_set)
    if unknown:
        failures.append(f"{len(unknown)} message(s) on the transactions topic not from "
                        "the stream")

    mark("read inputs")

    # 2. expectations
    expected = oracle.pack_expected([t for _m, t in valid], [sc.breach], sysm.issuers)
    expected_dl = [(m.partition, m.offset, r) for m, r in invalid]

    mark("oracle")

    # 3. completion
    got, waited = wait_complete(sysm, expected, expected_dl, settle_s)
    mark("completion")

    # 4. alert topics
    copies = collections.Counter()
    first_ms = {}
    wrong_rules, wrong_fields, unexpected = {}, {}, {}
    alert_msgs = []
    for topic in cw.alert_topics(sysm.issuers):
        for m in got[topic]:
            alert_msgs.append(m)
            a = SCHEMA.decode("Alert", m.value)
            aid = a.get("alert_id")
            copies[aid] += 1
            first_ms[aid] = min(first_ms.get(aid, m.timestamp), m.timestamp)
            e = expected.get(aid)
            if e is None:
                unexpected.setdefault(aid, {"txn_id": a.get("txn_id"), "topic": topic,
                                            "rules": [x.get("rule_id") for x in
                                                      a.get("hits", [])]})
                continue
            want = e["alert"]
            got_rules = [x.get("rule_id") for x in a.get("hits", [])]
            want_rules = [x["rule_id"] for x in want["hits"]]
            if got_rules != want_rules or a.get("hits") != want["hits"] or \
                    a.get("severity") != want["severity"]:
                wrong_rules.setdefault(aid, {"txn_id": want["txn_id"], "expected": want_rules,
                                             "got": got_rules, "topic": topic})
            norm = cw._norm(a)
            norm.pop("detected_at_ms", None)
            diff = sorted(k for k in set(norm) | set(want)
                          if k not in ("hits", "severity") and norm.get(k) != want.get(k))
            if topic != e["topic"]:
                diff.append("topic")
            if m.key != e["key"]:
                diff.append("key")
            if diff:
                wrong_fields.setdefault(aid, {"txn_id": want["txn_id"], "fields": diff})
    missing = sorted(set(expected) - set(copies))
    repeated = {k: n for k, n in copies.items() if n > 1}

    def window_only(d):
        return set(d["expected"]) ^ set(d["got"]) <= oracle.WINDOW_RULES

    def faults_before(ms, span_ms=5_000):
        """Faults under way in the span_ms before ms: "n:kind"."""
        if ms is None:
            return []
        return [f"{r['n']}:{r['kind']}" for r in records
                if r["t0_ms"] <= ms and r["t1_ms"] >= ms - span_ms]

    for aid, d in list(unexpected.items()) + list(wrong_rules.items()):
        d["redelivered"] = d["txn_id"] in redelivered
        d["faults_before"] = faults_before(first_ms.get(aid))

    # 5. feeds
    reader = FeedReader(sysm.feed_url)
    by_issuer = collections.defaultdict(set)
    for aid, e in expected.items():
        if e["alert"]["issuer_id"]:
            by_issuer[e["alert"]["issuer_id"]].add(aid)

    def read_feeds():
        out = {}
        for iss in sysm.issuers:
            out[iss.id] = reader.all(iss.token)
        return out
    feeds = {}
    t_feed = time.monotonic()
    last_n, last_change = -1, t_feed
    while True:
        try:
            feeds = read_feeds()
        except (OSError, AssertionError, ValueError) as e:
            feeds = {}
            failures.append(f"reading the feeds: {e}")
            break
        ids = {i: {a["alert_id"] for a in v} for i, v in feeds.items()}
        if all(by_issuer[i] <= ids[i] for i in ids):
            break
        n = sum(len(v) for v in feeds.values())
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        elif time.monotonic() - last_change >= 15:
            break
        time.sleep(0.5)   # between two full reads of the feeds (polling)
    mark("feeds")
    feed_rep = {}
    for iss in sysm.issuers:
        items = feeds.get(iss.id, [])
        ids = [a["alert_id"] for a in items]
        idset = set(ids)
        wr = 0
        for a in items:
            e = expected.get(a["alert_id"])
            if e is None:
                continue
            want = [(x["rule_id"], x["severity"].split("_", 1)[1].lower())
                    for x in e["alert"]["hits"]]
            if [(x.get("rule_id"), x.get("severity")) for x in a.get("hits", [])] != want:
                wr += 1
        feed_rep[iss.id] = {
            "expected": len(by_issuer[iss.id]), "got": len(idset),
            "missing": len(by_issuer[iss.id] - idset),
            "unexpected": len(idset - set(expected)),
            "wrong_issuer": sum(1 for a in items if a.get("issuer_id") != iss.id),
            "repeated": len(ids) - len(idset), "wrong_rules": wr,
            "missing_examples": [
                {"alert_id": a, "txn_id": expected[a]["alert"]["txn_id"],
                 "on_topic_at_ms": first_ms.get(a),
                 "faults_before": faults_before(first_ms.get(a))}
                for a in sorted(by_issuer[iss.id] - idset)[:5]]}

    # 6. dead letters
    dl_got = collections.Counter()
    dl_reason = {}
    for m in got[cw.DEAD_LETTER_TOPIC]:
        p, o, r = _dl_pos(m)
        dl_got[(p, o)] += 1
        dl_reason.setdefault((p, o), set()).add(r)
    want_dl = {(p, o): r for p, o, r in expected_dl}
    dl_rep = {
        "expected": len(want_dl), "got": len(dl_got),
        "missing": len(set(want_dl) - set(dl_got)),
        "unexpected": len(set(dl_got) - set(want_dl)),
        "wrong_reason": sum(1 for k, r in want_dl.items()
                            if k in dl_reason and dl_reason[k] != {r}),
        "repeated_copies": sum(n - 1 for n in dl_got.values()),
        "by_reason": dict(collections.Counter(want_dl.values())),
    }

    # 7. stall and latency
    pairs = [(produced_ms[expected[a]["alert"]["txn_id"]], first_ms[a])
             for a in expected if a in first_ms]
    stall_s, stall_from, stall_to = longest_stall(pairs)
    during = sorted({r["kind"] for r in records
                     if stall_from is not None and r["t0_ms"] <= stall_to
                     and r["t1_ms"] >= stall_from})
    waits = sorted(max(0, d - p) for p, d in pairs)

    # stop everything, then the scans see the complete logs
    sysm.stop()
    exits = {i.name: i.rc for i in sysm.gone}
    # SIGTERM means drain, commit and exit 0
    unclean = {i.name: i.rc for i in sysm.gone if i.asked == "term" and i.rc != 0}
    mark("stop")
    dump = redis_dump(sysm.ha.master())
    mark("Redis dump")

    # 8. card numbers
    cards = sc.cards
    lengths = sorted({len(p) for p in cards})
    luhn = {"test_cards": 0, "other": 0, "where": []}

    def scan(data, where):
        test, other = card_scan(data, cards, lengths)
        if test or other:
            luhn["test_cards"] += len(test)
            luhn["other"] += len(other)
            luhn["where"].append({"where": where, "test_cards": test[:5], "other": other[:5]})
    root = h.config.test_dir
    logs = _log_files(root)
    for f in logs:
        scan(f.read_bytes(), str(f.relative_to(root)))
    scan(h.blob(alert_msgs), "alert topics")
    scan(h.blob(got[cw.DEAD_LETTER_TOPIC]), "dead-letter topic")
    scan(h.blob(reader.bodies), "feed answers")
    scan(h.blob(dump), "Redis dump")
    mark("card-number scan")

    # the verdict
    kinds = collections.Counter(r["kind"] for r in records)
    rec_s = collections.defaultdict(list)
    for r in records:
        rec_s[r["kind"]].append(r["recovery_s"])
    if missing:
        failures.append(f"{len(missing)} expected alert(s) missing")
    if unexpected:
        failures.append(f"{len(unexpected)} unexpected alert id(s)")
    if wrong_rules:
        failures.append(f"{len(wrong_rules)} alert(s) with wrong rules "
                        f"({sum(1 for d in wrong_rules.values() if window_only(d))} differ "
                        "in window rules only)")
    if wrong_fields:
        failures.append(f"{len(wrong_fields)} alert(s) with other fields wrong")
    for i, f in feed_rep.items():
        if f["missing"] or f["unexpected"] or f["repeated"] or f["wrong_rules"] or \
                f["wrong_issuer"]:
            failures.append(f"feed of {i} not exact: " + ", ".join(
                f"{k} {v}" for k, v in f.items() if k != "missing_examples"))
    if dl_rep["missing"] or dl_rep["unexpected"] or dl_rep["wrong_reason"]:
        failures.append(f"dead letters not as expected: {dl_rep}")
    if luhn["test_cards"] or luhn["other"]:
        failures.append(f"card numbers found: {luhn['test_cards']} test card(s), "
                        f"{luhn['other']} other Luhn-valid run(s)")
    if sysm.crashes:
        failures.append(f"{len(sysm.crashes)} process(es) died unasked")
    if run_info.get("aborted"):
        failures.append(f"fault phase aborted: {run_info['aborted']}")
    if unclean:
        failures.append(f"instances exited uncleanly: {unclean}")
    if run_info["producer"]["rc"] != 0:
        failures.append(f"cardwatch send exited {run_info['producer']['rc']}")

    def examples(d, n=5):
        return [dict(v, alert_id=k) for k, v in list(d.items())[:n]]
    report = dict(run_info)
    report.update({
        "pass": not failures,
        "failures": failures,
        "events": {"messages": len(inputs), "valid": len(first), "exposed": exposed_n,
                   "redeliveries": redeliveries, "out_of_order": out_of_order,
                   "invalid": len(invalid), "unclassified": len(unknown)},
        "faults": {"total": len(records), "by_kind": dict(sorted(kinds.items())),
                   "recovery_s": {k: {"max": max(v), "mean": round(statistics.mean(v), 2)}
                                  for k, v in sorted(rec_s.items())},
                   "records": records},
        "alerts": {"expected": len(expected), "delivered": len(set(copies) & set(expected)),
                   "missing": len(missing), "unexpected": len(unexpected),
                   "wrong_rules": len(wrong_rules),
                   "wrong_rules_window_only": sum(1 for d in wrong_rules.values()
                                                  if window_only(d)),
                   "wrong_fields": len(wrong_fields),
                   "unexpected_or_wrong_of_redelivered_txns": sum(
                       1 for d in list(unexpected.values()) + list(wrong_rules.values())
                       if d["redelivered"]),
                   "repeated_ids": len(repeated),
                   "repeated_copies": sum(n - 1 for n in repeated.values()),
                   "by_rule": dict(sorted(collections.Counter(
                       x["rule_id"] for e in expected.values()
                       for x in e["alert"]["hits"]).items())),
                   "examples": {
                       "missing": [{"alert_id": a, "txn_id": expected[a]["alert"]["txn_id"],
                                    "rules": [x["rule_id"] for x in
                                              expected[a]["alert"]["hits"]]}
                                   for a in missing[:5]],
                       "unexpected": examples(unexpected),
                       "wrong_rules": examples(wrong_rules),
                       "wrong_fields": examples(wrong_fields)}},
        "feeds": feed_rep,
        "dead_letters": dl_rep,
        "stall": {"longest_s": round(stall_s, 2), "from_ms": stall_from, "to_ms": stall_to,
                  "faults_during": during},
        "latency_s": {"p50": round(waits[len(waits) // 2] / 1000, 2) if waits else None,
                      "p99": round(waits[int(len(waits) * 0.99)] / 1000, 2) if waits
                      else None,
                      "max": round(waits[-1] / 1000, 2) if waits else None},
        "luhn": {"scanned_logs": len(logs), **luhn},
        "processes": {"crashes": sysm.crashes, "exit_status": exits,
                      "feed_exit": sysm.feed_rc},
        "completion_wait_s": round(waited, 1),
        "check_s": round(time.monotonic() - t0, 1),
        "check_phases_s": phases,
    })
    return report


def print_report(r):
    line = "-" * 64
    print(line)
    print(f"chaos report  seed {r['seed']}  profile {r['profile']}  "
          f"{'PASS' if r['pass'] else 'FAIL'}")
    print(line)
    ev = r["events"]
    rows = [
        ("runtime", f"{r.get('runtime_s', 0):.0f} s (start-up {r['startup_s']:.0f} s, faults "
                    f"{r['fault_phase_s']:.0f} s, completion wait {r['completion_wait_s']:.0f} "
                    f"s, check {r['check_s']:.0f} s)"),
        ("events produced", f"{ev['messages']} messages: {ev['valid']} valid "
                            f"({ev['exposed']} on exposed cards, {ev['out_of_order']} out of "
                            f"order), {ev['redeliveries']} redeliveries, {ev['invalid']} "
                            f"invalid, {ev['unclassified']} unclassified"),
    ]
    rows.append(("check phases", ", ".join(f"{k} {v:g} s"
                                         for k, v in r.get("check_phases_s", {}).items())))
    for k, v in rows:
        print(f"{k:<22}{v}")
    print(line)
    f = r["faults"]
    print(f"{'faults':<22}{f['total']}")
    for k, n in f["by_kind"].items():
        rs = f["recovery_s"][k]
        print(f"  {k:<20}{n:>5}   recovery max {rs['max']:6.1f} s, mean {rs['mean']:5.1f} s")
    print(line)
    a = r["alerts"]
    for k in ("expected", "delivered", "missing", "unexpected", "wrong_rules",
              "wrong_rules_window_only", "wrong_fields",
              "unexpected_or_wrong_of_redelivered_txns", "repeated_ids", "repeated_copies"):
        print(f"{'alerts ' + k.replace('_', ' '):<44}{a[k]:>8}")
    print("expected hits by rule: " + ", ".join(f"{k} {v}" for k, v in a["by_rule"].items()))
    for kind, ex in a["examples"].items():
        for e in ex:
            print(f"  {kind}: {json.dumps(e, sort_keys=True)}")
    print(line)
    print(f"{'feed':<10}{'expected':>9}{'got':>7}{'missing':>9}{'unexp.':>8}{'repeat':>8}"
          f"{'rules':>7}")
    for i, fr in r["feeds"].items():
        print(f"{i:<10}{fr['expected']:>9}{fr['got']:>7}{fr['missing']:>9}"
              f"{fr['unexpected']:>8}{fr['repeated']:>8}{fr['wrong_rules']:>7}")
    for i, fr in r["feeds"].items():
        for e in fr["missing_examples"]:
            print(f"  missing in the feed of {i}: {json.dumps(e, sort_keys=True)}")
    print(line)
    d = r["dead_letters"]
    print(f"{'dead letters':<22}expected {d['expected']}, got {d['got']}, missing "
          f"{d['missing']}, unexpected {d['unexpected']}, wrong reason {d['wrong_reason']}, "
          f"repeated copies {d['repeated_copies']}")
    s = r["stall"]
    print(f"{'longest stall':<22}{s['longest_s']:.1f} s (faults during it: "
          f"{', '.join(s['faults_during']) or 'none'})")
    lat = r["latency_s"]
    print(f"{'alert latency':<22}p50 {lat['p50']} s, p99 {lat['p99']} s, max {lat['max']} s")
    lu = r["luhn"]
    print(f"{'card numbers':<22}{lu['test_cards']} test cards, {lu['other']} other Luhn-valid "
          f"runs ({lu['scanned_logs']} logs, topics, feeds, Redis dump scanned)")
    for w in lu["where"][:10]:
        print(f"  in {w['where']}: {w['test_cards']} {w['other']}")
    p = r["processes"]
    print(f"{'processes':<22}{len(p['crashes'])} died unasked; exit statuses "
          f"{json.dumps(p['exit_status'], sort_keys=True)}")
    print(line)
    for x in r["failures"]:
        print(f"FAIL: {x}")
    print(f"chaos: {'PASS' if r['pass'] else 'FAIL'} seed {r['seed']}", flush=True)
