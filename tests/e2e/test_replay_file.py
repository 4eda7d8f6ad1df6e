"""`cardwatch replay --input FILE`, end to end: a real redis-server (the
exposed set, the replay's window state), the embedded Kafka (replay topics)
and real `cardwatch` processes. What each replay must write is computed
here from the inputs alone: cwstack.expected_alerts for the built-in rule
set, and a small Python model of rules/default.rules (its windows and
facts as docs/rules.md defines them) for the default pack.

Covered: exact alerts and dead letters of a JSON-lines file; the same input
as protobuf, gzip (several members), stdin and forced --format giving
byte-identical output; determinism; window rules with two replays running
at once in their own Redis namespaces, the live namespace untouched;
--report; --breach; replay topics without --output; errors (exit status,
messages, no output file left); a line over the 1 MiB record limit; the
progress bar on a terminal; no card number in any file or log; the caps
on dead letters (a gzip bomb, the share, [replay] keys and flags);
SIGTERM / SIGINT stopping a replay within a second."""

import datetime
import gzip
import json
import os
import random
import re
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn
from oracle import PACK, SEV_ORDER
from oracle import pack_hits as _pack_hits, pack_version as _pack_version

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PACK = REPO / "rules" / "default.rules"
PREFIX = "cw"              # [redis] prefix (the Stack does not set it)
SUFFIX = ".replay"         # [replay] topic_suffix default
REPLAY_DL_TOPIC = "cardwatch.deadletter.replay"
DAY = 86_400_000
MIN = 60_000
NS_RE = re.compile(rb"^" + PREFIX.encode() + rb":(rp-[0-9a-f]{12}):")
# The order of the keys of an alert as `cardwatch tail` and --output print it.
ALERT_KEYS = ["alert_id", "issuer_id", "txn_id", "card_fingerprint", "pan_masked",
              "event_time_ms", "amount_minor", "currency", "mcc", "merchant_id",
              "merchant_country", "channel", "severity", "hits", "breaches", "mode",
              "detected_at_ms", "ruleset_version"]
SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation fault")


# --------------------------------------------------------------------------
# running replay

def _log_cmd(s, label, args, out, err):
    s._n += 1
    log = s.dir / f"cmd-{s._n:02d}-{label}.log"
    log.write_bytes(b"$ cardwatch " + " ".join(map(str, args)).encode() + b"\n" + out
                    + b"\n--- stderr\n" + err)
    s.logs.append(log)
    return log


def _replay(s, *args, rc=0, stdin=None, timeout=180):
    """Run `cardwatch replay --config ... ARGS` to completion; asserts its
    exit status (rc=None: any) and that no sanitizer spoke. The output is
    kept in s.logs for the card-number scans."""
    args = [str(a) for a in args]
    s.prepare(["replay", *args])
    res = h.run_tool([h.tool("cardwatch"), "replay", "--config", s.config, *args],
                     input=stdin, timeout=timeout, check=False)
    _log_cmd(s, "replay", ["replay", *args], res.stdout, res.stderr)
    err = res.stderr.decode(errors="replace")
    for bad in SANITIZER_WORDS:
        assert bad not in err, f"replay {args}: {bad}:\n{err[-4000:]}"
    if rc is not None:
        assert res.returncode == rc, (f"cardwatch replay {' '.join(args)} exited "
                                      f"{res.returncode}, expected {rc}:\n{err[-3000:]}")
    return res


def _spawn_replay(s, *args, name="replay"):
    """`cardwatch replay` in the background (stdout to .stdout, stderr to
    .log, both in s.logs)."""
    s.prepare(["replay", *args])
    s._n += 1
    base = s.dir / f"{name}-{s._n:02d}"
    out = Path(f"{base}.stdout")
    with open(out, "wb") as f:
        p = h.spawn([h.tool("cardwatch"), "replay", "--config", s.config, *args], name=name,
                    log=Path(f"{base}.log"), stdout=f)
    p.stdout_path = out
    s.logs += [Path(p.log), out]
    return p


def _finish(p, timeout=180, rc=0):
    try:
        got = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.stop()
        raise AssertionError(f"{p.name} did not finish within {timeout}s:\n{p.log_text(30)}")
    text = p.log_text()
    for bad in SANITIZER_WORDS:
        assert bad not in text, f"{p.name}: {bad}:\n{text[-4000:]}"
    assert got == rc, f"{p.name} exited {got}, expected {rc}:\n{p.log_text(30)}"
    return Path(p.stdout_path).read_text()


def _gen_txns(s, out, count, exposed_csv, share, seed, fmt="json"):
    """`cardwatch gen txns` into a file (synthetic cards of the stack's
    issuers, --exposed-share of them on the listed cards)."""
    args = ["gen", "txns", "--count", count, "--exposed", exposed_csv, "--exposed-share", share,
            "--invalid-share", "0.001", "--start", "2024-02-01", "--days", "3", "--seed", seed,
            "--output", out, "--format", fmt]
    res = h.run_tool([h.tool("cardwatch"), *map(str, args), "--config", s.config], timeout=120,
                     check=False)
    _log_cmd(s, "gen", args, res.stdout, res.stderr)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return out


def _load_csv(s, breach, csv):
    res = s.cardwatch("load", "--breach", breach.id, "--window-start", breach.start,
                      "--window-end", breach.end, "--elements", ",".join(breach.elements), csv)
    assert f"{len(breach.cards)} cards loaded" in (res.stdout + res.stderr).decode()


# --------------------------------------------------------------------------
# files

def _pb_file(records):
    """Length-delimited protobuf: varint length + message, per record."""
    return b"".join(h.pb_varint(len(r)) + r for r in records)


def _read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


_VOLATILE = re.compile(rb'"detected_at_ms":-?\d+|"mode":"[a-z]*"')


def _stable(data):
    """Output bytes without what may differ between runs and formats."""
    return _VOLATILE.sub(b"<volatile>", data)


def _no_leftovers(d, *names):
    """None of FILE / FILE.partial exists in d, and no .partial at all."""
    left = sorted(p.name for p in Path(d).iterdir()
                  if p.name in names or p.name.endswith(".partial"))
    assert not left, f"files left behind in {d}: {left}"


def _replay_keys(redis):
    return [k for k in redis.client().call("KEYS", f"{PREFIX}:rp-*")]


# --------------------------------------------------------------------------
# what replay must write, computed here

def _date(ms):
    return datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc).date().isoformat()


def _sev(name):
    return name.split("_", 1)[1].lower()


def _alert_doc(e, mode="replay"):
    """An expected_alerts() entry as the JSON line replay writes (key order
    included; detected_at_ms None: it is checked apart)."""
    a = e["alert"]
    return {
        "alert_id": a["alert_id"], "issuer_id": a["issuer_id"], "txn_id": a["txn_id"],
        "card_fingerprint": a["card_fingerprint"], "pan_masked": a["pan_masked"],
        "event_time_ms": a["event_time_ms"], "amount_minor": a["amount_minor"],
        "currency": a["currency"], "mcc": a["mcc"], "merchant_id": a["merchant_id"],
        "merchant_country": a["merchant_country"],
        "channel": a["channel"][len("CHANNEL_"):].lower(),
        "severity": _sev(a["severity"]),
        "hits": [{"rule_id": x["rule_id"], "severity": _sev(x["severity"])} for x in a["hits"]],
        "breaches": [{"breach_id": b["breach_id"], "window_start": _date(b["window_start"]),
                      "window_end": _date(b["window_end"]),
                      "window_start_ms": b["window_start"], "window_end_ms": b["window_end"],
                      "elements": b["elements"]} for b in a["breaches"]],
        "mode": mode,
        "detected_at_ms": None,
        "ruleset_version": a["ruleset_version"],
    }


def _check_alert_lines(path, want, t0=None, t1=None, sort_hits=False):
    """The alert file holds exactly `want` (list of _alert_doc), in order."""
    raw = Path(path).read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), f"{path}: last line not terminated"
    got = [json.loads(line) for line in raw.splitlines()]
    got_ids = [g.get("txn_id") for g in got]
    want_ids = [w["txn_id"] for w in want]
    assert got_ids == want_ids, (f"{path}: alerts (by txn_id, in order) differ:\n got  "
                                 f"{got_ids[:20]}...\n want {want_ids[:20]}... "
                                 f"({len(got_ids)} vs {len(want_ids)})")
    for g, w in zip(got, want):
        where = f"{path}: alert for {w['txn_id']}"
        assert list(g) == ALERT_KEYS, f"{where}: keys {list(g)}"
        det = g["detected_at_ms"]
        assert isinstance(det, int) and det > 0, f"{where}: detected_at_ms {det!r}"
        if t0 is not None:
            assert t0 <= det <= t1, f"{where}: detected_at_ms {det} outside [{t0}, {t1}]"
        g = dict(g, detected_at_ms=None)
        if sort_hits:
            g["hits"] = sorted(g["hits"], key=lambda x: x["rule_id"])
            w = dict(w, hits=sorted(w["hits"], key=lambda x: x["rule_id"]))
        diff = {k: (g.get(k), w.get(k)) for k in ALERT_KEYS if g.get(k) != w.get(k)}
        assert not diff, f"{where}: fields differ (got, expected): {diff}"
    return got


def _check_dead_letters(path, want, t0=None, t1=None):
    got = _read_jsonl(path)
    assert len(got) == len(want), (f"{path}: {len(got)} dead letters, expected {len(want)}:\n"
                                   f"got  {[(g['source'], g['reason']) for g in got]}\nwant "
                                   f"{[(w['source'], w['reason']) for w in want]}")
    for g, w in zip(got, want):
        det = g.pop("detected_at_ms", None)
        assert isinstance(det, int) and det > 0, g
        if t0 is not None:
            assert t0 <= det <= t1, f"dead letter {w['source']}: detected_at_ms {det}"
        assert g == w, f"{path}: dead letter differs:\n got  {g}\n want {w}"
    return got


# --- the default pack, modelled (docs/rules.md, rules/default.rules): the
# model is shared with the chaos checker (oracle.py) ---

def _pack_alerts(txns, breaches, issuers):
    """[_alert_doc] the default pack must write, in input order."""
    hits = _pack_hits(txns, breaches, issuers)
    exp = cw.expected_alerts(txns, breaches, issuers)  # every exposed txn, built-in rule
    sev = dict(PACK)
    want = []
    for t in txns:
        if t["txn_id"] not in hits:
            continue
        doc = _alert_doc(exp[cw.alert_id(t["txn_id"])])
        doc["hits"] = [{"rule_id": r, "severity": sev[r]} for r in hits[t["txn_id"]]]
        doc["severity"] = max((sev[r] for r in hits[t["txn_id"]]), key=SEV_ORDER.index)
        doc["ruleset_version"] = _pack_version()
        want.append(doc)
    return want


# --------------------------------------------------------------------------
# scenario: one breach, three issuers, a few hundred transactions, invalid
# events of every kind, blank and CRLF lines

def _enum_or_99(schema, enum, value):
    return value if value in schema.enums[enum] else 99  # an unknown enum value


def _proto(schema, t):
    """A transaction dict (valid or not) as a protobuf Transaction."""
    p = cw.to_proto(t)
    for field, enum in (("channel", "Channel"), ("entry_mode", "EntryMode"),
                        ("response", "Response")):
        if field in p:
            p[field] = _enum_or_99(schema, enum, p[field])
    return schema.encode("Transaction", p)


def _scenario(seed=2024):
    """Returns dict: issuers, breach, cards (every test card number), valid
    (valid transactions in input order) and items: the input, one entry per
    JSON line, each {"json": line text or None, "pb": record bytes or None
    (JSON lines only: blank lines), "reason": dead-letter reason or None,
    "txn": the valid transaction or None, "txn_id": id in the dead letter}."""
    issuers = cw.three_issuers()
    schema = h.ProtoSchema()
    mk = CardMaker(seed)
    exposed = [mk.card("400001"), mk.card("400099", 19), mk.card("4000507"), mk.card("4000501"),
               mk.card("4000504", 13), mk.card("510000", 19), mk.card("52000042"),
               mk.card("52000099", 15), mk.card("371234", 15), mk.card("999999")]
    exposed += mk.cards(["400001", "4000501", "510000", "999999"], 8)
    clean = mk.cards(["400002", "4000502", "510000", "52000010", "601100", "999998"], 24)
    b1 = Breach("e2e-replay-q1", "2024-01-01", "2024-03-31",
                ["pan", "expiry", "cvv2", "name"], exposed)
    rnd = random.Random(seed)

    # The first record is 123 bytes long: its protobuf length prefix is
    # 0x7b, '{', which must not make the protobuf file look like JSON lines.
    first = txn("rp-first", exposed[0], b1.start_ms + 5 * DAY, random.Random(1),
                merchant_id="m", cvv2_presented=False)
    pad = 123 - len(_proto(schema, first))
    assert 0 <= pad <= 100, pad
    first["merchant_id"] = "m" * (1 + min(pad, 50))
    first["txn_id"] += "-" * max(0, pad - 50)
    assert len(_proto(schema, first)) == 123

    valid = [first]
    for i in range(320):
        pan = rnd.choice(exposed) if i % 3 == 0 else rnd.choice(clean)
        when = b1.start_ms + rnd.randrange(-40, 200) * DAY + rnd.randrange(DAY)
        valid.append(txn(f"rp-{i:04d}", pan, when, rnd))
    valid.append(txn("rp-at-start", exposed[3], b1.start_ms, rnd))      # first ms: alert
    valid.append(txn("rp-before", exposed[3], b1.start_ms - 1, rnd))    # last ms before: none

    def v(t, crlf=False):
        return {"json": json.dumps(t) + ("\r" if crlf else ""), "pb": _proto(schema, t),
                "reason": None, "txn": t, "txn_id": t["txn_id"]}

    def bad(t, reason):
        return {"json": json.dumps(t), "pb": _proto(schema, t), "reason": reason,
                "txn": None, "txn_id": "" if reason == "txn_id" else t["txn_id"]}
    invalid = [bad(t, r) for t, r in cw.invalid_events(exposed[0], "rp")]
    invalid.append(bad(txn("rp-bad-mcc", exposed[1], b1.start_ms + DAY, mcc=10000), "mcc"))
    crlf_bad = bad(txn("rp-bad-crlf", exposed[2], b1.start_ms + DAY, currency="usd"), "currency")
    crlf_bad["json"] += "\r"
    invalid.append(crlf_bad)
    junk = cw.garbage(exposed[4])
    raw_lines = ["not json at all",
                 '{"txn_id": "rp-trunc", "pan": "%s", "amount_minor": 1' % exposed[5],
                 "[1, 2, 3]",
                 "}{"]
    for line, pb in zip(raw_lines, junk):
        invalid.append({"json": line, "pb": pb, "reason": "undecodable", "txn": None,
                        "txn_id": ""})
    invalid.append({"json": "{}", "pb": b"", "reason": "txn_id", "txn": None, "txn_id": ""})

    items = [{"json": "", "pb": None}]           # line 1 blank: JSON-lines detection skips it
    items.append(v(valid[0]))
    rest = [v(t, crlf=(i % 17 == 5)) for i, t in enumerate(valid[1:])]
    for it in invalid:
        rest.insert(rnd.randrange(len(rest) + 1), it)
    for blank in ("", "   ", "\t \r", ""):
        rest.insert(rnd.randrange(len(rest) + 1), {"json": blank, "pb": None})
    items += rest
    items.append(v(txn("rp-last", exposed[6], b1.start_ms + 9 * DAY, rnd)))
    for it in items:
        it.setdefault("reason", None)
        it.setdefault("txn", None)
    valid = [it["txn"] for it in items if it["txn"] is not None]
    return {"issuers": issuers, "breach": b1, "valid": valid, "items": items,
            "cards": set(mk.made), "exposed": exposed, "clean": clean}


def _jsonl_bytes(items):
    # the last line has no '\n': it is a record too
    return "\n".join(it["json"] for it in items).encode()


def _pb_bytes(items):
    return _pb_file([it["pb"] for it in items if it["pb"] is not None])


def _expected_dead_letters(items, fmt, name):
    out, pos = [], 0
    for it in items:
        if fmt == "protobuf" and it["pb"] is None:
            continue
        pos += 1
        if it["reason"] is None:
            continue
        payload = it["pb"] if fmt == "protobuf" else it["json"].encode()
        if fmt == "jsonl" and payload.endswith(b"\r"):
            payload = payload[:-1]  # one trailing CR is not part of the line
        out.append({"reason": it["reason"],
                    "source": {"file": name, "line" if fmt == "jsonl" else "record": pos},
                    "txn_id": it["txn_id"],
                    "payload_mac": cw.dead_letter_mac(payload),
                    "payload_bytes": len(payload)})
    return out


def _setup(sc, extra_ini=""):
    s = cw.Stack(sc["issuers"], partitions=2, extra_ini=extra_ini)
    s.load(sc["breach"])
    return s


def _no_test_cards(s, cards, extra=()):
    """No test card number in any log of the stack's commands, nor in the
    given files / blobs."""
    sources = {str(p): Path(p).read_bytes() for p in s.logs if Path(p).exists()}
    for x in extra:
        if isinstance(x, (str, Path)):
            sources[str(x)] = Path(x).read_bytes()
        else:
            sources[f"blob #{len(sources)}"] = h.blob(x)
    for name, data in sources.items():
        for pan in cards:
            assert pan.encode() not in data, f"{name} holds test card number {cw.mask(pan)}"


_SUMMARY_ROWS = {"events read": "events", "exposed-card transactions": "exposed_transactions",
                 "alerts": "alerts", "dead letters": "dead_letters",
                 "exposed cards with an alert": "misused_cards",
                 "repeated (alert written once)": "repeated_alerts"}


def _parse_summary(text):
    """The summary replay prints on stdout, as the report's keys."""
    m = re.search(r"^cardwatch replay(?: \(FAILED[^)]*\))?: (.*)$", text, re.M)
    assert m, f"no replay summary in:\n{text}"
    out = {"input": m.group(1), "alerts_by_severity": {}, "alerts_by_rule": {},
           "alerts_by_issuer": {}}
    section = None
    for line in text[m.end():].splitlines():
        if not line.strip() or line.strip() == "(no alerts)":
            continue
        if line.startswith("Alerts by severity"):
            section = "alerts_by_severity"
        elif line.startswith("Alerts by rule"):
            section = "alerts_by_rule"
        elif line.startswith("Alerts by issuer"):
            section = "alerts_by_issuer"
        elif line.startswith("  "):
            mm = re.match(r"^  (.+?)\s+([\d,.]+)(?:\s+\(([\d,]+) events/s\))?$", line)
            assert mm, f"summary line {line!r}"
            label, value = mm.group(1), mm.group(2)
            if section is None:
                if label == "seconds":
                    out["seconds"] = float(value)
                else:
                    assert label in _SUMMARY_ROWS, f"summary line {line!r}"
                    out[_SUMMARY_ROWS[label]] = int(value.replace(",", ""))
            else:
                out[section][label] = int(value.replace(",", ""))
        else:
            raise AssertionError(f"unexpected summary line {line!r}")
    return out


# --------------------------------------------------------------------------
# 1. exact alerts and dead letters

def test_replay_jsonl_exact_alerts_and_dead_letters():
    sc = _scenario()
    issuers, b1, items = sc["issuers"], sc["breach"], sc["items"]
    expected = cw.expected_alerts(sc["valid"], [b1], issuers)
    want = [_alert_doc(expected[cw.alert_id(t["txn_id"])]) for t in sc["valid"]
            if cw.alert_id(t["txn_id"]) in expected]
    # the scenario covers what it claims: every issuer and unrouted cards
    # alert, some exposed cards are used before the window, clean cards
    issuers_hit = {w["issuer_id"] for w in want}
    assert issuers_hit == {"alpha", "beta", "gamma", ""}, issuers_hit
    counts = cw.outcomes(sc["valid"], [b1])
    assert counts["exposed"] >= 5 and counts["clean"] >= 150 and len(want) >= 60, counts
    reasons = {it["reason"] for it in items if it["reason"]}
    assert reasons == set(cw.REASONS), reasons

    s = _setup(sc)
    d = h.tmpdir("replay")
    src = d / "txns.jsonl"
    src.write_bytes(_jsonl_bytes(items))
    t0 = cw.wall_ms()
    res = _replay(s, "--input", src, "--output", d / "alerts.jsonl",
                  "--dead-letter", d / "dead.jsonl")
    t1 = cw.wall_ms()
    _check_alert_lines(d / "alerts.jsonl", want, t0, t1)
    _check_dead_letters(d / "dead.jsonl", _expected_dead_letters(items, "jsonl", str(src)), t0, t1)
    _no_leftovers(d)

    summary = _parse_summary(res.stdout.decode())
    n_dead = sum(1 for it in items if it["reason"])
    assert summary["input"] == str(src), summary
    assert (summary["events"], summary["alerts"], summary["dead_letters"],
            summary["exposed_transactions"]) == \
        (len(sc["valid"]) + n_dead, len(want), n_dead, counts["exposed"] + counts["alerted"]), \
        summary
    # with --dead-letter, invalid events are not logged one by one
    assert "invalid event" not in res.stderr.decode(), res.stderr.decode()
    _no_test_cards(s, sc["cards"], [d / "alerts.jsonl", d / "dead.jsonl"])


def test_a_transaction_twice_in_the_input_is_one_alert():
    """An input that holds a transaction twice (the same txn_id: a
    producer retry, a re-sent batch) gets its alert written once, at its
    first copy, and counted once; the repeats are counted apart (summary
    and report). Copies right after the first, far after it, and copies
    of transactions that raise no alert are all in the input."""
    sc = _scenario()
    valid = sc["valid"]
    expected = cw.expected_alerts(valid, [sc["breach"]], sc["issuers"])
    alerting = [t for t in valid if cw.alert_id(t["txn_id"]) in expected]
    quiet = [t for t in valid if cw.alert_id(t["txn_id"]) not in expected]
    assert len(alerting) >= 20 and len(quiet) >= 20, (len(alerting), len(quiet))
    near, far, quiet_again = alerting[:6], alerting[10:14], quiet[:5]
    txns = []
    for t in valid:
        txns.append(t)
        if t in near or t in quiet_again:
            txns.append(t)          # the copy right after the first
    txns += far                     # copies long after the first
    want = [_alert_doc(expected[cw.alert_id(t["txn_id"])]) for t in alerting]

    s = _setup(sc)
    d = h.tmpdir("replay-twice")
    src = d / "twice.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in txns))
    res = _replay(s, "--input", src, "--output", d / "alerts.jsonl",
                  "--report", d / "report.json")
    _check_alert_lines(d / "alerts.jsonl", want)
    repeats = len(near) + len(far)
    summary = _parse_summary(res.stdout.decode())
    rep = json.loads((d / "report.json").read_text())
    for got in (summary, rep):
        assert (got["events"], got["alerts"], got["repeated_alerts"]) == \
            (len(txns), len(want), repeats), got
        assert sum(got["alerts_by_issuer"].values()) == len(want), got["alerts_by_issuer"]
        assert got["misused_cards"] == len({w["card_fingerprint"] for w in want}), got


# --------------------------------------------------------------------------
# 2. other input formats, stdin, determinism

def test_replay_formats_and_stdin_give_identical_output():
    sc = _scenario()
    items = sc["items"]
    s = _setup(sc)
    d = h.tmpdir("formats")
    jsonl, pb = _jsonl_bytes(items), _pb_bytes(items)
    assert pb[:1] == b"{" and pb[1:2] == b"\x0a", "test data: the protobuf file must start '{'"
    cut_j, cut_p = len(jsonl) // 3, len(pb) // 2
    files = {
        "plain.jsonl": jsonl,
        "plain.pb": pb,
        "gz-jsonl.dat": gzip.compress(jsonl),                          # no telling name
        "gz-pb.gz": gzip.compress(pb[:cut_p]) + gzip.compress(pb[cut_p:]),  # two members
        "gz3.jsonl.gz": (gzip.compress(jsonl[:cut_j]) + gzip.compress(jsonl[cut_j:2 * cut_j])
                         + gzip.compress(jsonl[2 * cut_j:])),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    fmt_of = {"plain.jsonl": "jsonl", "plain.pb": "protobuf", "gz-jsonl.dat": "jsonl",
              "gz-pb.gz": "protobuf", "gz3.jsonl.gz": "jsonl"}
    runs = []  # (label, input arg, stdin, format, extra args)
    for name in files:
        runs.append((name, d / name, None, fmt_of[name], []))
    runs.append(("again.jsonl", d / "plain.jsonl", None, "jsonl", []))
    runs.append(("forced.jsonl", d / "plain.jsonl", None, "jsonl", ["--format", "jsonl"]))
    runs.append(("forced.pb", d / "gz-pb.gz", None, "protobuf", ["--format", "protobuf"]))
    runs.append(("stdin.jsonl", "-", jsonl, "jsonl", []))
    runs.append(("stdin-gz.pb", "-", files["gz-pb.gz"], "protobuf", []))

    outputs = {}
    for label, inp, stdin, fmt, extra in runs:
        out, dead, rep = (d / f"out-{label}.out", d / f"dead-{label}.out",
                          d / f"report-{label}.json")
        _replay(s, "--input", inp, "--output", out, "--dead-letter", dead, "--report", rep,
                *extra, stdin=stdin)
        outputs[label] = out.read_bytes()
        name = "stdin" if inp == "-" else str(inp)
        _check_dead_letters(dead, _expected_dead_letters(items, fmt, name))
        report = json.loads(rep.read_text())
        assert report["input"] == {"file": name, "format": fmt}, (label, report["input"])
        assert report["ok"] is True, report

    ref = outputs["plain.jsonl"]
    assert ref.count(b"\n") >= 60
    for label, data in outputs.items():
        assert _stable(data) == _stable(ref), \
            f"{label}: output differs from plain.jsonl (beyond detected_at_ms and mode)"
    assert outputs["again.jsonl"] != b"" and _stable(outputs["again.jsonl"]) == _stable(ref)
    # and it is the right output
    expected = cw.expected_alerts(sc["valid"], [sc["breach"]], sc["issuers"])
    _check_alert_lines(d / "out-gz-pb.gz.out", [_alert_doc(expected[cw.alert_id(t["txn_id"])])
                                             for t in sc["valid"]
                                             if cw.alert_id(t["txn_id"]) in expected])
    _no_leftovers(d)
    _no_test_cards(s, sc["cards"], list(d.glob("out-*")) + list(d.glob("dead-*")))


# --------------------------------------------------------------------------
# 3. the default pack: windows in a namespace of the replay's own

def _window_stream(mk, seed, n_cards, per_card, tag):
    """Exposed cards used in bursts (1-6 transactions, minutes apart), in
    event-time order with a few delivered late, plus clean traffic.
    Returns (exposed cards, clean cards, transactions)."""
    rnd = random.Random(seed)
    prefixes = ["400001", "400077", "4000503", "510000", "52000042", "999999"]
    exposed = mk.cards(prefixes, n_cards)
    clean = mk.cards(["400002", "510000", "4000509", "999998"], max(8, n_cards // 4))
    base = cw.day_ms("2024-04-02")
    events = []
    for pan in exposed:
        n = 0
        while n < per_card:
            at = base + rnd.randrange(0, 12 * DAY)
            for _ in range(rnd.choice([1, 2, 3, 3, 4, 4, 5, 6])):
                events.append((at, pan))
                n += 1
                at += rnd.choice([0, 1, 30_000, MIN, 2 * MIN, 3 * MIN, 10 * MIN, 10 * MIN + 1,
                                  15 * MIN, 60 * MIN, 60 * MIN - 1])
    for _ in range(len(events) // 6):
        events.append((base + rnd.randrange(0, 12 * DAY), rnd.choice(clean)))
    events.sort()
    for _ in range(len(events) // 50):  # late deliveries
        i = rnd.randrange(len(events) - 5)
        j = i + rnd.randrange(1, 5)
        events[i], events[j] = events[j], events[i]
    txns = []
    for k, (at, pan) in enumerate(events):
        txns.append({
            "txn_id": f"{tag}-{k:06d}", "pan": pan, "expiry": "2612",
            "amount_minor": rnd.randrange(1, 201) if rnd.random() < 0.35
            else rnd.randrange(1000, 160_000),
            "currency": rnd.choice(["EUR", "GBP", "USD"]),
            "mcc": rnd.choice([5411, 5411, 5999, 6011, 4829, 7995, 5967, 6051, 5812]),
            "merchant_id": f"m-{rnd.randrange(50):02d}",
            "merchant_country": rnd.choice(["GB", "GB", "US", "NL", "DE"]),
            "channel": rnd.choice(["card_present", "ecommerce", "moto", "recurring", "atm"]),
            "entry_mode": rnd.choice(["chip", "contactless", "keyed", "on_file"]),
            "cvv2_presented": rnd.random() < 0.5,
            "response": "declined" if rnd.random() < 0.25 else "approved",
            "event_time_ms": at})
    return exposed, clean, txns


def _boundary_cases(mk):
    """Hand-computed cases (as in test_rules.py) to check the model itself."""
    base = cw.day_ms("2024-04-20") + 12 * 3_600_000
    a, b = mk.card("400001"), mk.card("510000")

    def t(i, pan, at, **kw):
        d = {"txn_id": i, "pan": pan, "expiry": "2612", "amount_minor": 5000, "currency": "EUR",
             "mcc": 5411, "merchant_id": "m-1", "merchant_country": "GB",
             "channel": "card_present", "entry_mode": "chip", "cvv2_presented": False,
             "response": "approved", "event_time_ms": at}
        d.update(kw)
        return d
    us = dict(channel="ecommerce", amount_minor=100, merchant_country="US")
    txns = [
        t("BA1", a, base),
        t("BA2", a, base + 1 * MIN, channel="ecommerce", amount_minor=150),
        t("BA3", a, base + 2 * MIN, channel="ecommerce", amount_minor=120),
        t("BA4", a, base + 3 * MIN, amount_minor=90, response="declined"),
        t("BA5", a, base + 4 * MIN, amount_minor=20000, mcc=7995, merchant_country="US",
          response="declined"),
        t("BA6", a, base + 5 * MIN, channel="moto", entry_mode="keyed", amount_minor=250000,
          merchant_country="US", response="declined"),
        t("BA7", a, base + 120 * MIN, amount_minor=30000),
        t("BB1", b, base, **us),
        t("BB2", b, base + 10 * MIN, **us),
        t("BB3", b, base + 10 * MIN + 1, **us),
        t("BB4", b, base + 10 * MIN + 2, **us),
    ]
    hits = {"BA2": ["cnp-use"], "BA3": ["card-testing", "cnp-use"], "BA4": ["card-testing"],
            "BA5": ["high-risk-mcc", "velocity"],
            "BA6": ["cnp-use", "cross-border-cnp", "declined-burst", "velocity"],
            "BA7": ["spend-spike"], "BB1": ["cnp-use"], "BB2": ["cnp-use"],
            "BB3": ["cnp-use"], "BB4": ["card-testing", "cnp-use"]}
    return [a, b], txns, hits


def _window_scenario(seed, n_cards, per_card, tag):
    issuers = cw.three_issuers()
    mk = CardMaker(seed)
    exposed, _clean, txns = _window_stream(mk, seed, n_cards, per_card, tag)
    bcards, btxns, bhits = _boundary_cases(mk)
    breach = Breach(f"e2e-{tag}", "2024-01-01", "2024-03-31", ["pan", "expiry", "cvv2"],
                    exposed + bcards)
    txns = btxns + txns
    model = _pack_hits(btxns, [breach], issuers)
    assert {k: sorted(v) for k, v in model.items()} == bhits, f"the model is wrong: {model}"
    return issuers, breach, txns, mk


def test_default_pack_windows_concurrent_replays_and_namespaces():
    issuers, breach, txns, mk = _window_scenario(31, 80, 110, "win")
    want = _pack_alerts(txns, [breach], issuers)
    fired = {}
    for w in want:
        for x in w["hits"]:
            fired[x["rule_id"]] = fired.get(x["rule_id"], 0) + 1
    # every rule of the pack fires, windows included, and not on everything
    assert set(fired) == {r for r, _ in PACK}, fired
    assert 0.2 * len(txns) < len(want) < 0.95 * len(txns), (len(want), len(txns))

    s = cw.Stack(issuers, partitions=1, extra_ini=f"[rules]\npath = {DEFAULT_PACK}\n")
    s.load(breach)
    # live window state for the very same cards, made by the live service
    # (rules from [rules] path), plus a sentinel under the live namespace
    live_txns = [dict(t, txn_id="live-" + t["txn_id"]) for t in txns[:40]]
    s.send(live_txns, name="live")
    summary = cw.parse_summary(s.finish(s.run("--exit-at-end"), timeout=120))
    assert summary["events"] == len(live_txns), summary
    # the live service and the model agree (the model is right, and replay
    # below is held to the live answer)
    live_want = _pack_alerts(live_txns, [breach], issuers)
    assert len(live_want) >= 8
    live_got = {(a["txn_id"], tuple(sorted(x["rule_id"] for x in a["hits"])),
                 _sev(a["severity"])) for _, _, a in s.alerts()}
    assert live_got == {(w["txn_id"], tuple(sorted(x["rule_id"] for x in w["hits"])),
                         w["severity"]) for w in live_want}, live_got
    live_keys = s.redis.client().call("KEYS", f"{PREFIX}:live:*")
    assert any(b":win:" in k for k in live_keys), f"no live window keys: {live_keys}"
    s.redis.call("SET", f"{PREFIX}:live:e2e-sentinel", b"untouched \x00\xff")
    s.redis.call("HSET", f"{PREFIX}:live:win:e2e-sentinel", "n", "1")
    before = s.redis.dump()

    d = h.tmpdir("windows")
    src = d / "win.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in txns))
    rules = ["--rules", DEFAULT_PACK]
    t0 = cw.wall_ms()
    _replay(s, "--input", src, "--output", d / "solo-1.jsonl", *rules)
    _replay(s, "--input", src, "--output", d / "solo-2.jsonl", *rules)
    t1 = cw.wall_ms()
    _check_alert_lines(d / "solo-1.jsonl", want, t0, t1, sort_hits=True)
    one, two = (d / "solo-1.jsonl").read_bytes(), (d / "solo-2.jsonl").read_bytes()
    assert _stable(one) == _stable(two), "two replays of the same input differ"
    assert _replay_keys(s.redis) == [], "replay state left in Redis"
    # the live service's input, replayed: the live answer
    live_src = d / "live.jsonl"
    live_src.write_text("".join(json.dumps(t) + "\n" for t in live_txns))
    _replay(s, "--input", live_src, "--output", d / "live-replayed.jsonl", *rules)
    _check_alert_lines(d / "live-replayed.jsonl", live_want, sort_hits=True)

    # two at once on the same input, each in its own namespace; a breach
    # loaded while they run is not in the exposed set they copied
    clean = sorted({t["pan"] for t in txns} - breach.card_set)
    late = Breach("e2e-late", "2024-01-01", "2024-12-31", ["pan", "expiry"], clean[:6])
    assert any(t["pan"] in late.card_set for t in txns)
    # Each reads a named pipe the test feeds: the first half at once, then
    # a few lines at a time (a replay reads its input on its loop thread,
    # so a pipe left empty would stop it) until both hold window state and
    # the late breach is loaded, then the rest. Window state kept in
    # process made a replay of this input take under a second: from a
    # plain file the two no longer reliably overlap.
    fifos = [d / f"both-{i}.fifo" for i in (1, 2)]
    for f in fifos:
        os.mkfifo(f)
    procs = [_spawn_replay(s, "--input", fifos[i - 1], "--output", d / f"both-{i}.jsonl",
                           *rules, "--no-progress", name=f"replay-{i}") for i in (1, 2)]
    lines = src.read_bytes().splitlines(keepends=True)
    loaded = threading.Event()

    def feed(path):
        with open(path, "wb", buffering=0) as w:   # opens once the replay reads
            i = len(lines) // 2
            w.write(b"".join(lines[:i]))
            while i < len(lines) and not loaded.is_set():
                w.write(b"".join(lines[i:i + 5]))    # input pacing, not a wait
                i += 5
                time.sleep(0.05)
            w.write(b"".join(lines[i:]))
    feeders = [threading.Thread(target=feed, args=(f,), daemon=True) for f in fifos]
    for t in feeders:
        t.start()
    seen_together = set()
    seen = set()

    def poll():
        keys = _replay_keys(s.redis)
        spaces = {NS_RE.match(k).group(1).decode() for k in keys if NS_RE.match(k)}
        assert len(spaces) == len({k.split(b":")[1] for k in keys}), \
            f"replay keys outside <prefix>:rp-<12 hex>: {keys[:5]}"
        seen.update(spaces)
        if len(spaces) >= 2:
            seen_together.update(spaces)
        return all(not p.alive for p in procs)
    h.wait_until(lambda: poll() or len(seen_together) == 2, 120, "both replays under way",
                 interval=0.005)
    s.load(late)
    alive_after_load = [p.alive for p in procs]
    loaded.set()
    for t in feeders:
        t.join(60)
    h.wait_until(poll, 180, "both concurrent replays to finish", interval=0.005)
    for p in procs:
        _finish(p)
    # test validity: they really ran at the same time, the load in between
    assert len(seen_together) == 2, (f"the two replays never held window state at the same "
                                     f"time (namespaces seen: {seen})")
    assert all(alive_after_load), "a replay ended before the late breach was loaded"
    for i in (1, 2):
        _check_alert_lines(d / f"both-{i}.jsonl", want, sort_hits=True)
        assert _stable((d / f"both-{i}.jsonl").read_bytes()) == _stable(one)
    logged = set()
    for p in procs:
        m = re.search(r"replay state cw:(rp-[0-9a-f]{12}):\* removed \((\d+) key", p.log_text())
        assert m, f"no clean-up line in {p.log}"
        assert int(m.group(2)) > 0
        logged.add(m.group(1))
    assert logged == seen_together, (logged, seen_together)

    # nothing of the replays is left; everything else is as it was
    assert _replay_keys(s.redis) == []
    # (card records: compared record by record, wherever their bucket is)
    after_dump = s.redis.dump()
    recs_before, recs_after = _card_records(before), _card_records(after_dump)
    late_fps = {cw.fingerprint(p) for p in late.cards}
    assert set(recs_after) == set(recs_before) | late_fps, set(recs_after) ^ set(recs_before)
    for fp, rec in recs_after.items():
        ids = sorted(e.split("=")[0] for e in rec.split(";"))
        was = sorted(e.split("=")[0] for e in recs_before.get(fp, "").split(";") if e)
        assert ids == sorted(was + [late.id] if fp in late_fps else was), (fp, rec)
    bucket = f"{PREFIX}:cards:".encode()
    after = {k: dump for k, _t, _v, dump in after_dump if not k.startswith(bucket)}
    before = {k: dump for k, _t, _v, dump in before if not k.startswith(bucket)}
    assert set(after) - set(before) == {f"{PREFIX}:breach:{late.id}".encode()}, \
        set(after) ^ set(before)
    changed = sorted(k for k in before if after[k] != before[k])
    # the late load lists its breach, counts its new cards in the layout
    # and commits a new generation marker
    assert changed == [f"{PREFIX}:breaches".encode(), f"{PREFIX}:exposed".encode(),
                       f"{PREFIX}:layout:{cw.KEY_ID}".encode()], \
        f"values changed: {changed[:10]}"
    _no_test_cards(s, mk.made, [d / "solo-1.jsonl", d / "both-1.jsonl", d / "both-2.jsonl"])


def _card_records(dump):
    """The card records in a Redis dump (harness dump()): {"kid:hex": record}."""
    out = {}
    for k, typ, value, _ in dump:
        if k.startswith(f"{PREFIX}:cards:".encode()) and typ == "hash":
            kid = k.decode().split(":")[2]
            out.update({f"{kid}:{f.hex()}": v.decode()
                        for f, v in zip(value[::2], value[1::2])})
    return out


# --------------------------------------------------------------------------
# 4. --report

def test_report_matches_the_inputs():
    issuers, breach, txns, mk = _window_scenario(47, 24, 40, "rep")
    # two more listed cards: one used only before its window, one not at all
    idle, unused = mk.card("400001"), mk.card("52000042")
    breach = Breach(breach.id, breach.start, breach.end, breach.elements,
                    breach.cards + [idle, unused])
    # listed cards used long before their window (exposed, never alert),
    # more than a day before any later use of the card: no window sees them
    early = [dict(t, txn_id=f"rep-early-{i:03d}", event_time_ms=cw.day_ms("2023-11-01") + i * MIN)
             for i, t in enumerate(txns[:60:3]) if t["pan"] in breach.card_set]
    early += [txn(f"rep-idle-{i}", idle, cw.day_ms("2023-12-30") + i * DAY // 3) for i in range(4)]
    txns = early[:10] + txns + early[10:]
    sc_bad = cw.invalid_events(breach.cards[0], "rep")
    rnd = random.Random(4)
    lines = [(json.dumps(t), None) for t in txns]
    for t, r in sc_bad:
        lines.insert(rnd.randrange(len(lines)), (json.dumps(t), r))
    lines.insert(7, ("nonsense", "undecodable"))
    valid = [json.loads(x) for x, r in lines if r is None]
    want = _pack_alerts(valid, [breach], issuers)

    by_rule, by_sev, by_issuer = {}, {x: 0 for x in SEV_ORDER}, {}
    for w in want:
        for x in w["hits"]:
            by_rule[x["rule_id"]] = by_rule.get(x["rule_id"], 0) + 1
        by_sev[w["severity"]] += 1
        iss = w["issuer_id"] or "unrouted"
        by_issuer[iss] = by_issuer.get(iss, 0) + 1
    listed = [t for t in valid if t["pan"] in breach.card_set]
    assert len(by_rule) >= 5 and by_sev["medium"] > 0 and "unrouted" in by_issuer, \
        (by_rule, by_sev, by_issuer)
    assert len({w["card_fingerprint"] for w in want}) < len(breach.cards), \
        "test data: some listed card must stay without alert"
    n_dead = sum(1 for _, r in lines if r)

    s = cw.Stack(issuers, partitions=1)     # built-in rules in the config
    s.load(breach)
    d = h.tmpdir("report")
    src = d / "rep.jsonl"
    src.write_text("".join(x + "\n" for x, _ in lines))
    t0 = time.monotonic()
    res = _replay(s, "--input", src, "--output", d / "alerts.jsonl", "--rules", DEFAULT_PACK,
                  "--report", d / "report.json")
    wall = time.monotonic() - t0
    _check_alert_lines(d / "alerts.jsonl", want, sort_hits=True)
    rep = json.loads((d / "report.json").read_text())
    # the timeline: per UTC day, the listed cards' transactions from the
    # window start on (the early ones are exposed transactions, but not
    # of the breach's timeline) and the alerts
    days = {}
    for x in listed:
        if x["event_time_ms"] >= breach.start_ms:
            days.setdefault(x["event_time_ms"] // DAY * DAY, [0, 0])[0] += 1
    for w in want:
        assert [b["breach_id"] for b in w["breaches"]] == [breach.id]
        days.setdefault(w["event_time_ms"] // DAY * DAY, [0, 0])[1] += 1
    assert len(days) > 3 and any(x["event_time_ms"] < breach.start_ms for x in listed)
    timeline = [{"breach_id": breach.id, "window_start_ms": breach.start_ms,
                 "window_end_ms": breach.end_ms,
                 "exposed": sum(e for e, _ in days.values()),
                 "alerts": sum(a for _, a in days.values()),
                 "days": [[k, e, a] for k, (e, a) in sorted(days.items())]}]
    want_rep = {
        "input": {"file": str(src), "format": "jsonl"},
        "rules": _pack_version(),
        "breach": None,
        "exposed_cards_loaded": len(breach.cards),
        "events": len(lines),
        "clean": len(valid) - len(listed),
        "exposed_transactions": len(listed),
        "alerts": len(want),
        "dead_letters": n_dead,
        "misused_cards": len({w["card_fingerprint"] for w in want}),
        "repeated_alerts": 0,
        "alerts_by_severity": by_sev,
        "alerts_by_rule": by_rule,
        "alerts_by_issuer": by_issuer,
        "output": str(d / "alerts.jsonl"),
        "ok": True,
        "timeline": timeline,
        "timeline_complete": True,
    }
    extra = set(rep) - set(want_rep) - {"seconds", "events_per_second"}
    assert not extra and set(want_rep) <= set(rep), f"report keys: {sorted(rep)}"
    diff = {k: (rep[k], v) for k, v in want_rep.items() if rep[k] != v}
    assert not diff, f"report differs (got, expected): {diff}"
    secs, eps = rep["seconds"], rep["events_per_second"]
    assert 0 < secs <= wall, (secs, wall)
    assert abs(eps - len(lines) / secs) <= 0.01 * eps + 1, (eps, len(lines), secs)

    summary = _parse_summary(res.stdout.decode())
    for k in ("events", "exposed_transactions", "alerts", "dead_letters", "misused_cards",
              "alerts_by_rule", "alerts_by_issuer"):
        assert summary[k] == rep[k], f"summary {k}: {summary[k]} vs report {rep[k]}"
    assert summary["alerts_by_severity"] == by_sev
    assert summary["input"] == str(src)
    assert abs(summary["seconds"] - secs) < 0.01
    _no_test_cards(s, mk.made, [d / "report.json", d / "alerts.jsonl"])


# --------------------------------------------------------------------------
# 5. --breach

def test_breach_option_with_a_shared_card():
    issuers = cw.three_issuers()
    mk = CardMaker(55)
    shared = mk.card("400001")
    a_only = [mk.card("510000"), mk.card("4000501", 13)]
    b_only = [mk.card("52000042"), mk.card("999999", 15)]
    clean = mk.cards(["400002", "510000"], 6)
    ba = Breach("e2e-shop", "2024-01-01", "2024-06-30", ["pan", "expiry"], [shared] + a_only)
    bb = Breach("e2e-clinic", "2024-03-01", "2024-03-31", ["pan", "name", "email"],
                [shared] + b_only)
    rnd = random.Random(5)
    txns = []
    for pan in [shared] + a_only + b_only + clean:
        for when in ("2023-12-15", "2024-01-02", "2024-02-10", "2024-03-01", "2024-03-20",
                     "2024-09-01"):
            txns.append(txn(f"br-{len(txns):03d}", pan, cw.day_ms(when) + rnd.randrange(DAY),
                            rnd))
    rnd.shuffle(txns)
    s = cw.Stack(issuers, partitions=1)
    s.load(ba)
    s.load(bb)
    d = h.tmpdir("breach")
    src = d / "br.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in txns))
    shared_lists = {"shop": {(ba.id,)}, "clinic": {(bb.id,)},
                    "all": {(ba.id,), tuple(sorted((ba.id, bb.id)))}}
    for label, only, breaches, cards in (("shop", ba.id, [ba], 3), ("clinic", bb.id, [bb], 3),
                                         ("all", None, [ba, bb], 5)):
        exp = cw.expected_alerts(txns, breaches, issuers)
        want = [_alert_doc(exp[cw.alert_id(t["txn_id"])]) for t in txns
                if cw.alert_id(t["txn_id"]) in exp]
        args = ["--breach", only] if only else []
        _replay(s, "--input", src, "--output", d / f"{label}.jsonl",
                "--report", d / f"{label}.json", *args)
        got = _check_alert_lines(d / f"{label}.jsonl", want)
        listed = {p for b in breaches for p in b.cards}
        assert {g["pan_masked"] for g in got} == {cw.mask(p) for p in listed}, label
        # the shared card alerts with the chosen breach alone
        on_shared = {tuple(b["breach_id"] for b in g["breaches"]) for g in got
                     if g["pan_masked"] == cw.mask(shared)}
        assert on_shared == shared_lists[label], (label, on_shared)
        rep = json.loads((d / f"{label}.json").read_text())
        assert rep["breach"] == only and rep["exposed_cards_loaded"] == cards, (label, rep)
    _no_test_cards(s, mk.made, [d / f"{x}.{e}" for x in ("shop", "clinic", "all")
                                for e in ("json", "jsonl")])


# --------------------------------------------------------------------------
# 6. without --output: replay topics

def test_replay_topics_without_output():
    sc = _scenario(77)
    issuers, b1, items = sc["issuers"], sc["breach"], sc["items"]
    expected = cw.expected_alerts(sc["valid"], [b1], issuers)
    for e in expected.values():
        e["topic"] += SUFFIX
        e["alert"]["mode"] = "MODE_REPLAY"
    s = _setup(sc)
    d = h.tmpdir("topics")
    src = d / "t.jsonl"
    src.write_bytes(_jsonl_bytes(items))
    t0 = cw.wall_ms()
    res = _replay(s, "--input", src, "--report", d / "report.json")
    t1 = cw.wall_ms()
    got = []
    for topic in cw.alert_topics(issuers):
        for m in s.kafka.consume(topic + SUFFIX):
            got.append((topic + SUFFIX, m, s.schema.decode("Alert", m.value)))
    cw.check_alerts(got, expected, exact_once=True, min_detected_ms=t0, max_detected_ms=t1)
    assert {t for t, _, _ in got} == {e["topic"] for e in expected.values()}
    # the live side gets nothing: issuer topics, fallback, dead letters
    for topic in cw.alert_topics(issuers) + [cw.DEAD_LETTER_TOPIC, REPLAY_DL_TOPIC]:
        msgs = s.kafka.consume(topic)
        assert msgs == [], f"{topic}: {len(msgs)} message(s) from a file replay"
    rep = json.loads((d / "report.json").read_text())
    assert rep["output"] == "replay topics" and rep["alerts"] == len(expected), rep

    # invalid events: the first 10 are logged by position, the rest counted
    want_dl = _expected_dead_letters(items, "jsonl", str(src))
    assert len(want_dl) > 12
    warn = re.compile(r" WARN replay: (.*): line (\d+): invalid event \((\w+)\)(.*)$")
    logged = [warn.search(line) for line in res.stderr.decode().splitlines()]
    logged = [m.groups() for m in logged if m]
    assert [(f, int(n), r) for f, n, r, _ in logged] == \
        [(str(src), w["source"]["line"], w["reason"]) for w in want_dl[:10]], logged
    assert [x[3] == "" for x in logged] == [True] * 9 + [False], logged
    assert rep["dead_letters"] == len(want_dl), rep

    # the same JSON as `cardwatch tail` prints (mode and detected_at_ms
    # aside), for an issuer and the unrouted alerts
    _replay(s, "--input", src, "--output", d / "alerts.jsonl")
    lines = (d / "alerts.jsonl").read_bytes().splitlines()
    for issuer, topic in (("alpha", "cardwatch.alerts.alpha"), ("", cw.FALLBACK_TOPIC)):
        out = s.cardwatch("tail", topic + SUFFIX, "--exit-at-end", timeout=60).stdout
        tailed = [line for line in out.splitlines() if line.startswith(b"{")]
        mine = [line for line in lines if json.loads(line)["issuer_id"] == issuer]
        assert len(mine) >= 5 and sorted(map(_stable, tailed)) == sorted(map(_stable, mine)), \
            f"{topic}{SUFFIX}: tail printed\n{tailed[:2]}\n--output wrote\n{mine[:2]}"
    _no_test_cards(s, sc["cards"], [d / "alerts.jsonl", d / "report.json", got])


# --------------------------------------------------------------------------
# 7. errors

def test_errors_exit_status_and_no_output_left():
    issuers = cw.three_issuers()
    mk = CardMaker(66)
    cards = mk.cards(["400001", "510000", "4000501"], 6)
    b1 = Breach("e2e-err", "2024-01-01", "2024-03-31", ["pan", "expiry"], cards)
    s = cw.Stack(issuers, partitions=1)
    s.load(b1)
    schema = h.ProtoSchema()
    txns = [txn(f"er-{i:03d}", cards[i % len(cards)], b1.start_ms + i * MIN) for i in range(30)]
    recs = [_proto(schema, t) for t in txns]
    d = h.tmpdir("errors")
    good = d / "good.jsonl"
    good.write_text("".join(json.dumps(t) + "\n" for t in txns))
    over = d / "over.pb"        # record 11: length prefix 2 MiB (limit 1 MiB)
    over.write_bytes(_pb_file(recs[:10]) + h.pb_varint(2 << 20) + recs[10] + _pb_file(recs[11:]))
    trunc = d / "trunc.pb.gz"   # 30 records, then a 31st cut short
    trunc.write_bytes(gzip.compress(_pb_file(recs) + h.pb_varint(len(recs[0])) + recs[0][:9]))
    longvar = d / "varint.pb"   # record 6: a 6-byte varint
    longvar.write_bytes(_pb_file(recs[:5]) + b"\xff\xff\xff\xff\xff\x01" + recs[5])
    bad_rules = d / "broken.rules"
    bad_rules.write_text("# broken on purpose\nrule r1\n  severity: high\n"
                         "  description: bad window\n  when: exposed and count(10x) >= 1\n")
    outs = ("out.jsonl", "dead.jsonl")

    def fails(*args, rc=1, stdin=None, rules=False):
        extra = ["--rules", DEFAULT_PACK] if rules else []
        res = _replay(s, *args, "--output", d / outs[0], "--dead-letter", d / outs[1], *extra,
                      rc=rc, stdin=stdin)
        _no_leftovers(d, *outs)
        assert _replay_keys(s.redis) == []
        return res.stderr.decode(errors="replace"), res.stdout.decode(errors="replace")

    err, _ = fails("--input", d / "missing.jsonl")
    assert f"{d / 'missing.jsonl'}: No such file or directory" in err, err
    for path, rec, what in ((over, 11, "2097152"), (trunc, 31, "truncated"),
                            (longvar, 6, "varint")):
        err, out = fails("--input", path, "--report", d / "report.json", rules=True)
        assert re.search(rf"\brecord {rec}\b", err), (path.name, err)
        assert what in err, (path.name, err)
        assert str(path) in err, err
        assert "FAILED" in out, out
        rep = json.loads((d / "report.json").read_text())
        assert rep["ok"] is False, rep
        (d / "report.json").unlink()
    # the framing error through stdin names it too
    err, _ = fails("--input", "-", stdin=over.read_bytes())
    assert re.search(r"\bstdin: record 11\b", err), err
    # protobuf forced on a JSON-lines file: its framing is wrong
    err, _ = fails("--input", good, "--format", "protobuf")
    assert re.search(r"\brecord \d+\b", err), err

    # gzip: trailing bytes that are no gzip member; a corrupt stream
    (d / "junk.gz").write_bytes(gzip.compress(good.read_bytes()) + b"junk!")
    err, _ = fails("--input", d / "junk.gz")
    assert f"{d / 'junk.gz'}: data after the end of the gzip stream" in err, err
    (d / "bad.gz").write_bytes(b"\x1f\x8b" + bytes(40))
    err, _ = fails("--input", d / "bad.gz")
    assert f"{d / 'bad.gz'}: gzip" in err, err
    # the input is a directory; an output cannot be created
    err, _ = fails("--input", d)
    assert f"{d}: Is a directory" in err, err
    for args in (["--output", d / "nowhere" / "out.jsonl"],
                 ["--output", d / outs[0], "--dead-letter", d / "nowhere" / "dead.jsonl"]):
        res = _replay(s, "--input", good, *args, rc=1)
        assert f"{d / 'nowhere'}/" in res.stderr.decode() and \
            "No such file or directory" in res.stderr.decode(), res.stderr.decode()
        _no_leftovers(d, *outs)

    err, _ = fails("--input", good, "--breach", "no-such-breach")
    assert "no-such-breach" in err, err
    err, _ = fails("--input", good, "--rules", bad_rules)
    assert f"{bad_rules}:5:" in err and re.search(rf"{re.escape(str(bad_rules))}:5:\d+:", err), err
    err, _ = fails("--input", good, "--rules", d / "no.rules")
    assert str(d / "no.rules") in err, err

    # usage errors
    for args, words in ((["--input", good, "--from", "2024-01-01"], ["--from", "--input"]),
                        (["--input", good, "--format", "xyz"], ["--format"]),
                        ([], ["--input"]),
                        (["--input", good, "--no-such-option"], ["no-such-option"])):
        err, _ = fails(*args, rc=2)
        assert all(w in err for w in words), (args, err)
    res = _replay(s, "--input", rc=2)
    assert res.stderr.strip()

    # interrupted: SIGINT mid-run keeps nothing and cleans the window state
    csv = d / "exposed.csv"
    csv.write_text("pan,expiry\n" + "".join(f"{p},2612\n" for p in cards))
    big = _gen_txns(s, d / "big.jsonl", 200_000, csv, "1.0", 9)
    p = _spawn_replay(s, "--input", big, "--output", d / outs[0], "--rules", DEFAULT_PACK,
                      "--no-progress")
    h.wait_until(lambda: (d / (outs[0] + ".partial")).exists() and _replay_keys(s.redis)
                 or not p.alive, 60, "the replay to be under way")
    assert p.alive, f"replay ended before it could be interrupted:\n{p.log_text(20)}"
    p.send_signal(signal.SIGINT, group=False)
    _finish(p, rc=128 + signal.SIGINT)
    _no_leftovers(d, *outs)
    assert "SIGINT" in p.log_text(), p.log_text(20)
    assert _replay_keys(s.redis) == [], "window state left after SIGINT"
    _no_test_cards(s, mk.made)


# --------------------------------------------------------------------------
# 8. a line over the record limit

def test_line_over_one_mib_is_a_dead_letter_and_replay_goes_on():
    issuers = cw.three_issuers()
    mk = CardMaker(88)
    cards = mk.cards(["400001", "510000", "999999"], 6)
    b1 = Breach("e2e-long", "2024-01-01", "2024-03-31", ["pan"], cards)
    s = cw.Stack(issuers, partitions=1)
    s.load(b1)
    txns = [txn(f"lg-{i:03d}", cards[i % len(cards)], b1.start_ms + i * MIN) for i in range(40)]
    lines = [json.dumps(t) for t in txns]

    def padded(t, size):
        body = json.dumps(t)
        line = body[:-1] + " " * (size - len(body)) + "}"
        assert len(line) == size
        return line
    limit = 1 << 20
    huge_pan = mk.card("400001")   # inside the over-long line: never logged
    huge = dict(txn("lg-huge", huge_pan, b1.start_ms), merchant_id="x" * 10)
    lines.insert(20, padded(huge, 3 * limit + 17))      # line 21: too long
    exact = txn("lg-exact", cards[0], b1.start_ms + DAY)
    lines.insert(25, padded(exact, limit))             # line 26: exactly the limit: fine
    over1 = txn("lg-over1", cards[1], b1.start_ms + DAY)
    lines.insert(30, padded(over1, limit + 1))         # line 31: one byte over
    d = h.tmpdir("long")
    src = d / "long.jsonl"
    src.write_text("\n".join(lines) + "\n")
    valid = txns[:24] + [exact] + txns[24:]
    exp = cw.expected_alerts(valid, [b1], issuers)
    want = [_alert_doc(exp[cw.alert_id(t["txn_id"])]) for t in valid]
    res = _replay(s, "--input", src, "--output", d / "alerts.jsonl",
                  "--dead-letter", d / "dead.jsonl")
    _check_alert_lines(d / "alerts.jsonl", want)
    dead = _read_jsonl(d / "dead.jsonl")
    assert [(x["source"], x["reason"]) for x in dead] == \
        [({"file": str(src), "line": 21}, cw.REASON_TOO_LONG),
         ({"file": str(src), "line": 31}, cw.REASON_TOO_LONG)], dead
    err = res.stderr.decode()
    assert "line 21 is longer than the record limit" in err, err
    assert "line 31 is longer than the record limit" in err, err
    # without --dead-letter: logged by line, the replay still succeeds
    res = _replay(s, "--input", src, "--output", d / "alerts2.jsonl")
    assert f"{src}: line 21: invalid event (too_long)" in res.stderr.decode()
    assert _stable((d / "alerts2.jsonl").read_bytes()) == _stable((d / "alerts.jsonl").read_bytes())
    _no_test_cards(s, mk.made, [d / "alerts.jsonl", d / "dead.jsonl"])

    # no records at all: empty output and dead-letter files, no error
    for name, data in (("empty.jsonl", b""), ("blank.jsonl", b"\n  \n\t\r\n")):
        (d / name).write_bytes(data)
        res = _replay(s, "--input", d / name, "--output", d / f"{name}.out",
                      "--dead-letter", d / f"{name}.dead")
        assert (d / f"{name}.out").read_bytes() == b"" == (d / f"{name}.dead").read_bytes()
        assert _parse_summary(res.stdout.decode())["events"] == 0


# --------------------------------------------------------------------------
# 9. the progress bar on a terminal

BAR = re.compile(r"\[([#-]{24})\] +(\d+\.\d)%  ([\d,]+) events  ([\d,]+)/s  ETA (\d+):(\d\d):(\d\d)"
                 r"  alerts ([\d,]+)  dead letters ([\d,]+)")


def test_progress_bar_on_a_terminal():
    issuers = cw.three_issuers()
    mk = CardMaker(99)
    cards = mk.cards(["400001", "4000501", "510000", "52000042", "999999"], 40)
    b1 = Breach("e2e-progress", "2024-01-01", "2024-12-31", ["pan", "expiry"], cards)
    s = cw.Stack(issuers, partitions=1)
    d = h.tmpdir("progress")
    csv = d / "exposed.csv"
    csv.write_text("pan,expiry\n" + "".join(f"{p},2612\n" for p in cards))
    _load_csv(s, b1, csv)
    big = _gen_txns(s, d / "big.jsonl", 200_000, csv, "1.0", 3)
    n_lines = sum(1 for _ in open(big))

    master, slave = os.openpty()
    out_path, tty_log = d / "stdout.txt", d / "stderr-tty.txt"
    args = [h.tool("cardwatch"), "replay", "--config", str(s.config), "--input", str(big),
            "--output", str(d / "alerts.jsonl"), "--rules", str(DEFAULT_PACK)]
    with open(out_path, "wb") as out:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=slave,
                             start_new_session=True)
    os.close(slave)
    buf = bytearray()
    # Redis is paused for 1.2 s (the replay waits up to [redis] timeout_ms,
    # 2 s, for an answer) once the exposed set is copied: the window rules
    # stall the run half-way whatever the speed of the machine, so bars
    # with a share below 100 % and an ETA are drawn for sure.
    paused_at = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if paused_at is None and b"exposed set copied" in buf:
                s.redis.pause()
                paused_at = time.monotonic()
            elif paused_at and time.monotonic() - paused_at > 1.2:
                s.redis.resume()
                paused_at = 0
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                buf += chunk
            elif p.poll() is not None:
                break
        rc = p.wait(30)
    finally:
        s.redis.resume()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        os.close(master)
    tty_log.write_bytes(bytes(buf))
    s.logs += [tty_log, out_path]
    text = buf.decode(errors="replace")
    assert paused_at == 0, "the replay ended before Redis was paused"
    assert rc == 0, f"replay exited {rc}:\n{text[-3000:]}"
    for bad in SANITIZER_WORDS:
        assert bad not in text, text[-4000:]
    bars = [m for m in BAR.finditer(text)]
    assert bars, f"no progress bar on the terminal:\n{text[-2000:]!r}"
    mid = [m for m in bars if 0.0 < float(m.group(2)) < 100.0]
    assert mid, f"no bar between 0 and 100 %: {[m.group(0) for m in bars]}"
    pct = [float(m.group(2)) for m in bars]
    events = [int(m.group(3).replace(",", "")) for m in bars]
    assert pct == sorted(pct) and events == sorted(events), [m.group(0) for m in bars]
    for m in bars:
        share = float(m.group(2)) / 100
        fill = m.group(1).count("#")
        assert m.group(1) == "#" * fill + "-" * (24 - fill), m.group(0)
        assert abs(fill - share * 24) <= 1, m.group(0)
        assert int(m.group(3).replace(",", "")) <= n_lines, m.group(0)
        assert int(m.group(6)) < 60 and int(m.group(7)) < 60, m.group(0)
    # each bar redraws the line; a log line clears it first
    assert "\r\x1b[K[" in text, repr(text[:300])
    summary = _parse_summary(Path(out_path).read_text())
    assert summary["events"] == n_lines and summary["alerts"] > 0, summary
    assert "[#" not in Path(out_path).read_text(), "the bar belongs on stderr"
    # After the run the bar is drawn once more: the last one on the
    # terminal is the final state, not the last 0.5 s tick.
    last = bars[-1]
    assert float(last.group(2)) == 100.0 and \
        int(last.group(3).replace(",", "")) == summary["events"], \
        f"the last progress bar is not the final state: {last.group(0)!r}"


# --------------------------------------------------------------------------
# 10. no card number anywhere

def test_no_card_number_in_any_output_or_log():
    sc = _scenario(1010)
    issuers, b1, items = sc["issuers"], sc["breach"], sc["items"]
    mk = CardMaker(1011)
    huge_pan = mk.card("400001")
    s = _setup(sc)
    d = h.tmpdir("hygiene")
    jsonl = _jsonl_bytes(items)
    huge_line = json.dumps(txn("hy-huge", huge_pan, b1.start_ms)) + " " * (1 << 20)
    junk_line = ("not json " + huge_pan + " " + sc["exposed"][0]).encode()
    with_huge = jsonl + b"\n" + huge_line.encode() + b"\n" + junk_line + b"\n"
    (d / "in.jsonl").write_bytes(with_huge)
    (d / "in.pb.gz").write_bytes(gzip.compress(_pb_bytes(items)))
    (d / "cut.pb").write_bytes(_pb_bytes(items) + h.pb_varint(90) + huge_pan.encode())
    dbg = ["--log-level", "debug"]
    files = []
    for i, (inp, stdin, extra, rc) in enumerate([
            (d / "in.jsonl", None, ["--dead-letter", d / "dead-0.jsonl"], 0),
            (d / "in.jsonl", None, [], 0),                       # invalid events logged
            (d / "in.pb.gz", None, ["--dead-letter", d / "dead-2.jsonl"], 0),
            ("-", jsonl, ["--rules", DEFAULT_PACK], 0),
            (d / "cut.pb", None, [], 1),                         # framing error next to digits
            (d / "in.jsonl", None, ["--breach", "nope"], 1)]):
        out, rep = d / f"out-{i}.jsonl", d / f"report-{i}.json"
        _replay(s, "--input", inp, "--output", out, "--report", rep, *dbg, *extra, rc=rc,
                stdin=stdin)
        files += [p for p in (out, rep, d / f"dead-{i}.jsonl") if p.exists()]
    _replay(s, "--input", d / "in.jsonl", *dbg)                  # to the replay topics
    topics = [t + SUFFIX for t in cw.alert_topics(issuers)]
    messages = [m for t in topics for m in s.kafka.consume(t)]
    assert messages, "no replay alerts on Kafka"
    assert any(f.name.startswith("dead-") for f in files) and len(files) >= 8, files

    cards = sc["cards"] | set(mk.made) | {it["txn"]["pan"] for it in items if it["txn"]}
    for it in items:
        try:
            cards.add(json.loads(it["json"])["pan"])
        except (ValueError, KeyError, TypeError):
            pass
    # the scanner finds the numbers in the input
    assert set(t["pan"] for t in sc["valid"]) <= set(h.luhn_scan(jsonl))
    sources = {}
    for p in s.logs + files:
        data = Path(p).read_bytes()
        if p.name.startswith("report-"):   # float fractions are digit runs too
            rep = json.loads(data)
            rep.pop("seconds")
            rep.pop("events_per_second")
            data = json.dumps(rep).encode()
        sources[str(p)] = data
    sources["replay topics"] = h.blob(messages)
    for name, data in sources.items():
        for pan in cards:
            assert pan.encode() not in data, f"{name} holds test card number {cw.mask(pan)}"

    # any Luhn-valid 13-19 digit run must be a timestamp or inside a digest
    stamps = {t["event_time_ms"] for t in sc["valid"]} | {b1.start_ms, b1.end_ms}
    stamps |= {t["event_time_ms"] // DAY * DAY for t in sc["valid"]}  # the report's days
    for f in files:
        if f.name.startswith(("out-", "dead-")):
            stamps |= {x["detected_at_ms"] for x in _read_jsonl(f)}
    stamps |= {s.schema.decode("Alert", m.value)["detected_at_ms"] for m in messages}
    stamps = {str(x) for x in stamps}
    digests = {cw.fingerprint(p).split(":")[1] for p in cards}
    digests |= {cw.alert_id(t["txn_id"]) for t in sc["valid"]}
    digests |= {cw.dead_letter_mac(x).split(":")[1] for x in
                [it["json"].rstrip("\r").encode() for it in items] +
                [it["pb"] for it in items if it["pb"] is not None] + [b"", junk_line]}
    unexplained = []
    for name, data in sources.items():
        for run in h.luhn_scan(data):
            if run not in stamps and not any(run in x for x in digests):
                unexplained.append((name, run))
    assert not unexplained, f"Luhn-valid numbers found: {unexplained[:10]}"


# --------------------------------------------------------------------------
# --output - : alerts on stdout

def test_output_to_stdout_is_json_lines_only():
    """`--output -` writes the alerts to stdout (`cardwatch replay --help`:
    "alerts as JSON lines, in input order ('-' = stdout)"), so stdout must
    be JSON lines that a pipe (jq, another program) can read."""
    issuers = cw.three_issuers()
    mk = CardMaker(111)
    cards = mk.cards(["400001", "510000"], 4)
    b1 = Breach("e2e-stdout", "2024-01-01", "2024-03-31", ["pan"], cards)
    s = cw.Stack(issuers, partitions=1)
    s.load(b1)
    txns = [txn(f"so-{i}", cards[i % 4], b1.start_ms + i * MIN) for i in range(8)]
    d = h.tmpdir("stdout")
    src = d / "so.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in txns))
    res = _replay(s, "--input", src, "--output", "-")
    lines = res.stdout.decode().splitlines()
    alerts = [line for line in lines if line.startswith("{")]
    assert [json.loads(a)["txn_id"] for a in alerts] == [t["txn_id"] for t in txns]
    # With --output - the summary goes to stderr: stdout is JSON lines
    # only (`cardwatch replay --input F --output - | jq .` works).
    others = [line for line in lines if not line.startswith("{")]
    assert not others, f"stdout holds more than alerts: {others[:6]}"


# --------------------------------------------------------------------------
# 12. caps on dead letters; SIGTERM / SIGINT stop a replay at once

def _bomb_stack(seed, tag, extra_ini=""):
    mk = CardMaker(seed)
    cards = mk.cards(["400001", "510000"], 4)
    b1 = Breach(tag, "2024-01-01", "2024-03-31", ["pan"], cards)
    s = cw.Stack(cw.three_issuers(), partitions=1, extra_ini=extra_ini)
    s.load(b1)
    return s, mk, cards, b1


def _nul_gzip(mib, members=1):
    """gzip of mib MiB of NUL bytes, the member repeated `members` times
    (concatenated members are one stream). As protobuf every NUL is an
    empty record (an invalid event); as JSON lines it is one endless line."""
    return gzip.compress(bytes(mib << 20), 9) * members


def test_dead_letter_cap_stops_a_gzip_bomb():
    """16 KiB of gzip holding 16 MiB of NUL bytes is 16.8 million invalid
    records: the replay stops at once with a clear error, the summary, and
    no output left (it once wrote 23.8 GB of dead letters in 9 minutes).
    With the defaults the share (all of them invalid) or the count cap of
    10,000 stops it, whichever is checked first; the count cap alone stops
    it at exactly 10,001."""
    s, mk, _, _ = _bomb_stack(1201, "e2e-bomb")
    d = h.tmpdir("bomb")
    bomb = d / "nul.pb.gz"
    bomb.write_bytes(_nul_gzip(16))
    outs = ("out.jsonl", "dead.jsonl")
    args = ["--input", bomb, "--output", d / outs[0], "--dead-letter", d / outs[1],
            "--report", d / "r.json"]
    t0 = time.monotonic()
    res = _replay(s, *args, rc=1, timeout=60)
    secs = time.monotonic() - t0
    err, out = res.stderr.decode(errors="replace"), res.stdout.decode(errors="replace")
    assert secs < 20, f"the replay took {secs:.1f} s to stop"
    assert "--max-dead-letters" in err or "--max-dead-letter-percent" in err, err[-2000:]
    assert f"{bomb}: record 1" in err, err[-2000:]       # where the first one is
    _no_leftovers(d, *outs)
    assert "FAILED" in out, out
    summary = _parse_summary(out)
    assert 1000 <= summary["dead_letters"] < 10_000 + 25_000, summary   # + batches in flight
    rep = json.loads((d / "r.json").read_text())
    assert rep["ok"] is False and rep["dead_letters"] == summary["dead_letters"], rep
    print(f"    gzip bomb: stopped after {summary['dead_letters']:,} dead letters in {secs:.2f} s")
    # the count cap alone (the share lifted): the 10,001st stops it
    res = _replay(s, *args, "--max-dead-letter-percent", "100", rc=1, timeout=60)
    err = res.stderr.decode(errors="replace")
    assert "10,001 dead letters, more than the cap of 10,000 (--max-dead-letters" in err, \
        err[-2000:]
    assert f"{bomb}: record 1" in err and "by reason: txn_id " in err, err[-2000:]
    _no_leftovers(d, *outs)
    # without --dead-letter the caps hold too, and only ten are logged one by one
    res = _replay(s, "--input", bomb, "--output", d / outs[0], rc=1, timeout=60)
    err = res.stderr.decode(errors="replace")
    assert "--max-dead-letter" in err and err.count("invalid event") == 10, err[-3000:]
    _no_leftovers(d, *outs)


def test_dead_letter_share_and_config_caps():
    """More than half of the events invalid (after the first 1,000) stops a
    replay too; --max-dead-letter-percent 100 and --max-dead-letters 0 lift
    the caps; [replay] max_dead_letters sets the count cap, a flag wins."""
    s, mk, cards, b1 = _bomb_stack(1202, "e2e-share",
                                   extra_ini="[replay]\nmax_dead_letters = 1000\n")
    rnd = random.Random(1202)
    lines = []
    for i in range(2000):
        t = txn(f"sh-{i:05d}", rnd.choice(cards), b1.start_ms + i * MIN, rnd)
        if i % 5:          # 4 in 5 invalid: 1,600 dead letters, 80 %
            t["pan"] = cw.luhn_break(t["pan"])
        lines.append(json.dumps(t))
    d = h.tmpdir("share")
    src = d / "share.jsonl"
    src.write_text("\n".join(lines) + "\n")
    outs = ("out.jsonl", "dead.jsonl")
    args = ["--input", src, "--output", d / outs[0], "--dead-letter", d / outs[1]]
    # the share: flags lift the count cap of the config
    res = _replay(s, *args, "--max-dead-letters", "0", rc=1)
    err = res.stderr.decode(errors="replace")
    assert "50%" in err and "--max-dead-letter-percent" in err and "luhn" in err, err[-2000:]
    _no_leftovers(d, *outs)
    # the count cap of the config (the share lifted)
    res = _replay(s, *args, "--max-dead-letter-percent", "100", rc=1)
    err = res.stderr.decode(errors="replace")
    assert "1,000" in err and "max_dead_letters" in err, err[-2000:]
    _no_leftovers(d, *outs)
    # both lifted: the replay goes through
    res = _replay(s, *args, "--max-dead-letter-percent", "100", "--max-dead-letters", "1600")
    assert len(_read_jsonl(d / outs[1])) == 1600
    assert _parse_summary(res.stdout.decode())["dead_letters"] == 1600
    # bad values are usage errors
    for flag, val in (("--max-dead-letters", "-1"), ("--max-dead-letters", "x"),
                      ("--max-dead-letter-percent", "0"), ("--max-dead-letter-percent", "101")):
        res = _replay(s, *args, flag, val, rc=2)
        assert flag in res.stderr.decode(), res.stderr.decode()
    _no_test_cards(s, mk.made, [d / outs[0], d / outs[1]])


_PROGRESS = re.compile(r"\[[#-]{24}\] +\d+\.\d%  ([\d,]+) events")


def _progress_seen(p, min_events):
    """The replay drew its progress bar (--progress) with at least
    min_events events read."""
    return any(int(m.group(1).replace(",", "")) >= min_events
               for m in _PROGRESS.finditer(p.log_text()))


def _interrupt(p, sig, bound=3.0, min_events=1):
    """Sends sig once the replay reports progress; asserts it stops within
    bound seconds with 128 + sig, naming the signal. Returns the seconds."""
    h.wait_until(lambda: _progress_seen(p, min_events) or not p.alive, 60,
                 "the replay to report progress")
    assert p.alive, f"the replay ended before it could be interrupted:\n{p.log_text(20)}"
    t0 = time.monotonic()
    p.send_signal(sig, group=False)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{sig.name}: the replay still runs after 30 s") from None
    secs = time.monotonic() - t0
    out = _finish(p, rc=128 + sig)
    text = p.log_text()
    assert secs <= bound, f"{sig.name}: exit after {secs:.2f} s:\n{text[-2000:]}"
    assert f"interrupted by {sig.name}" in text, text[-2000:]
    assert "FAILED" in out, out
    _parse_summary(out)
    return secs


def test_sigterm_and_sigint_stop_a_replay_within_a_second():
    """SIGTERM / SIGINT stop a replay that is in full swing, mid-gzip-member,
    within a second: exit status 128 + signal, the summary, a message naming
    the signal, and no *.partial left. It once ran 8.4 s on, and on a gzip
    bomb never stopped until SIGKILL."""
    s, mk, cards, b1 = _bomb_stack(1203, "e2e-sig")
    schema = h.ProtoSchema()
    d = h.tmpdir("sig")
    # 1. a big valid input: 1 MiB of protobuf transactions on clean cards,
    # gzip, the member repeated: 10 million events, far more than a few
    # seconds of work
    rnd = random.Random(1203)
    clean = mk.cards(["400002", "52000007"], 50)
    recs = [_proto(schema, txn(f"sg-{i:05d}", rnd.choice(clean), b1.start_ms + i * MIN, rnd))
            for i in range(200)]
    chunk = _pb_file(recs)
    per_member = (1 << 20) // len(chunk)
    member = gzip.compress(chunk * per_member, 6)
    big = d / "big.pb.gz"
    big.write_bytes(member * (10_000_000 // (per_member * len(recs))))
    outs = ("out.jsonl", "dead.jsonl")
    p = _spawn_replay(s, "--input", big, "--output", d / outs[0], "--dead-letter", d / outs[1],
                      "--progress", name="replay-big")
    t_big = _interrupt(p, signal.SIGTERM)
    _no_leftovers(d, *outs)
    # 2. the gzip bomb with the dead-letter caps lifted: NUL records
    bomb = d / "nul.pb.gz"
    bomb.write_bytes(_nul_gzip(64, members=64))        # 4 GiB of NULs
    p = _spawn_replay(s, "--input", bomb, "--output", d / outs[0], "--dead-letter", d / outs[1],
                      "--max-dead-letters", "0", "--max-dead-letter-percent", "100",
                      "--progress", name="replay-bomb")
    t_bomb = _interrupt(p, signal.SIGINT)
    _no_leftovers(d, *outs)
    # 3. the same bomb read as JSON lines: one line, 4 GiB long, never a
    # record (the reader must still come back to the loop)
    p = _spawn_replay(s, "--input", bomb, "--format", "jsonl", "--output", d / outs[0],
                      "--dead-letter", d / outs[1], "--progress", name="replay-line")
    t_line = _interrupt(p, signal.SIGTERM, min_events=0)   # it never finds one
    _no_leftovers(d, *outs)
    print(f"    stopped after the signal in {t_big:.2f} s (big input), {t_bomb:.2f} s "
          f"(gzip bomb), {t_line:.2f} s (bomb as one JSON line)")
    _no_test_cards(s, mk.made)
