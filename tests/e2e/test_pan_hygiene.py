"""No card number anywhere: after a run with alerts and dead letters, every
log of every process, every message of the alert and dead-letter topics and
everything in Redis is searched for the test card numbers and for any
13-19 digit Luhn-valid number; and no process can write a core dump."""

import hashlib
import hmac
import json
import random
import re
import resource
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn


def _hex_digests(pans_expiries, txn_ids, payloads):
    """Every hex digest cardwatch may legitimately write, computed here:
    fingerprints, expiry tags, alert ids, payload hashes (full length; the
    stored forms are prefixes)."""
    key = bytes.fromhex(cw.KEY_HEX)
    out = set()
    for pan, expiry in pans_expiries:
        out.add(hmac.new(key, pan.encode(), hashlib.sha256).hexdigest())
        if expiry:
            out.add(hmac.new(key, f"exp:{pan}:{expiry}".encode(), hashlib.sha256).hexdigest())
    for tid in txn_ids:
        out.add(hashlib.sha256(b"cardwatch.alert.v1:" + tid.encode()).hexdigest())
    for p in payloads:
        out.add(hashlib.sha256(p or b"").hexdigest())
    return out


def test_no_card_number_anywhere():
    issuers = cw.three_issuers()
    mk = CardMaker(4242)
    exposed = mk.cards(["400001", "400099", "4000501", "510000", "52000042", "999999"], 18)
    exposed += [mk.card("510000", 19), mk.card("371234", 15), mk.card("4000504", 13)]
    clean = mk.cards(["400002", "4000509", "510000", "601100"], 30)
    b1 = Breach("e2e-hygiene", "2024-01-01", "2024-02-29", ["pan", "expiry", "cvv2", "name"],
                exposed)
    rnd = random.Random(1)
    valid = [txn(f"hy-{i:04d}", rnd.choice(exposed if i % 3 == 0 else clean),
                 cw.day_ms("2024-01-10") + rnd.randrange(-20, 60) * 86_400_000, rnd)
             for i in range(300)]
    invalid = cw.invalid_events(exposed[0], "hy")
    invalid_pb = cw.invalid_protobuf(exposed[1], "hy")
    junk = cw.garbage(exposed[2])
    expected = cw.expected_alerts(valid, [b1], issuers)
    assert len(expected) >= 20

    s = cw.Stack(issuers, partitions=4)
    # the list has two rows load must reject (bad Luhn, too short): it
    # reports them by line, masked
    bad_rows = [cw.luhn_break(mk.card("400001")), mk.card("400001")[:12]]
    csv = s.dir / "hygiene-list.csv"
    erand = random.Random(2)
    rows = [(p, erand.choice(["2612", "2712", ""])) for p in exposed]
    csv.write_text("pan,expiry\n" + "".join(f"{p},{e}\n" for p, e in rows[:5])
                   + "".join(f"{p},2712\n" for p in bad_rows)
                   + "".join(f"{p},{e}\n" for p, e in rows[5:]))
    res = s.cardwatch("load", "--breach", b1.id, "--window-start", b1.start, "--window-end",
                      b1.end, "--elements", ",".join(b1.elements), csv, "--log-level", "debug")
    out = (res.stdout + res.stderr).decode()
    assert f"{len(exposed)} cards loaded" in out and "2 rejected" in out, out

    s.send([t for t, _ in invalid], name="invalid")
    h.produce(s.kafka.bootstraps, cw.TXN_TOPIC, [(None, p) for p in junk])
    h.produce(s.kafka.bootstraps, cw.TXN_TOPIC, [(t["txn_id"], raw) for raw, t, _ in invalid_pb])
    s.send(valid, name="valid")
    proc = s.run("--exit-at-end", "--log-level", "debug")
    summary = cw.parse_summary(s.finish(proc))
    n_invalid = len(invalid) + len(invalid_pb) + len(junk)
    assert summary["dead_letters"] == n_invalid, summary
    assert summary["alerted"] == len(expected), summary
    s.cardwatch("breaches", "--json", "--log-level", "debug")
    s.cardwatch("breaches", "--log-level", "debug")
    tail = s.cardwatch("tail", "cardwatch.alerts.alpha", "--exit-at-end", "--log-level",
                       "debug", timeout=60)
    assert b"400001" in tail.stdout, "tail printed no alpha alert"

    # ---- collect
    logs = {}
    for p in h.processes(h.config.test_name):
        logs[p.log] = p.log_text().encode("utf-8", "surrogateescape")
        if getattr(p, "stdout_path", None):
            logs[p.stdout_path] = open(p.stdout_path, "rb").read()
    for path in s.logs:
        logs[str(path)] = path.read_bytes()
    assert any("cardwatch-run" in k for k in logs) and s.redis.log.as_posix() in logs
    topics = cw.alert_topics(issuers) + [cw.DEAD_LETTER_TOPIC]
    messages = {t: s.kafka.consume(t) for t in topics}
    assert sum(len(messages[t]) for t in cw.alert_topics(issuers)) == len(expected)
    assert len(messages[cw.DEAD_LETTER_TOPIC]) == n_invalid
    dump = s.redis.dump()
    assert any(k.startswith(b"cw:cards:") for k, *_ in dump), "no card records in Redis?"
    s.redis.call("SAVE")
    rdb = (s.redis.dir / "dump.rdb").read_bytes()
    sources = {f"log {k}": v for k, v in logs.items()}
    sources.update({f"topic {t}": h.blob(msgs) for t, msgs in messages.items()})
    sources["redis keys and values"] = h.blob(dump)
    sources["redis dump.rdb"] = rdb

    # ---- the scanner works: it finds the numbers in the input topic
    inputs = s.inputs()
    found_in_input = set(h.luhn_scan(h.blob(inputs)))
    assert set(t["pan"] for t in valid) <= found_in_input

    # ---- no test card number, valid or not, in any form we wrote it
    test_numbers = (set(mk.made) | set(bad_rows)
                    | {t["pan"] for t, _ in invalid if "pan" in t})
    for name, data in sources.items():
        for pan in test_numbers:
            assert pan.encode() not in data, f"{name} holds test card number {cw.mask(pan)}"

    # ---- no Luhn-valid 13-19 digit number unless it is explained
    timestamps = {t["event_time_ms"] for t in valid}
    timestamps |= {t.get("event_time_ms") for t, _ in invalid}
    timestamps |= {b1.start_ms, b1.end_ms}
    for k, typ, value, _ in dump:
        if typ == "hash":
            fields = dict(zip(value[::2], value[1::2]))
            timestamps |= {int(v) for f, v in fields.items() if f.endswith(b"_ms")}
            if b"stream_id" in fields:   # an issuer feed entry id: "<ms>-<seq>"
                timestamps.add(int(fields[b"stream_id"].split(b"-")[0]))
        elif typ == "stream":            # issuer feeds: entry ids are "<ms>-<seq>"
            timestamps |= {int(entry[0].split(b"-")[0]) for entry in value}
    for m in messages[cw.DEAD_LETTER_TOPIC]:
        timestamps.add(json.loads(m.value)["detected_at_ms"])
    for t in cw.alert_topics(issuers):   # `cardwatch tail` prints them as text
        timestamps |= {s.schema.decode("Alert", m.value)["detected_at_ms"] for m in messages[t]}
    timestamps = {str(x) for x in timestamps if x}
    digests = _hex_digests(
        [(p, e) for p, e in rows] + [(t["pan"], t["expiry"]) for t in valid],
        [t["txn_id"] for t in valid], [m.value for m in inputs])
    # the exposed set's generation markers (32 random hex, in Redis, logs and
    # the filter's info metric) hold Luhn-valid digit runs by chance
    for data in sources.values():
        digests |= {g.decode() for g in re.findall(rb'generation[ =:"]*([0-9a-f]{32})', data)}
    digests |= {v.decode() for k, typ, v, _ in dump
                if typ == "string" and k.endswith(b":exposed")}
    unexplained, explained = [], {"timestamp": 0, "digest": 0}
    for name, data in sources.items():
        for run in h.luhn_scan(data):
            if run in timestamps:
                explained["timestamp"] += 1  # epoch ms of this test, Luhn-valid by chance
            elif any(run in d for d in digests):
                explained["digest"] += 1     # digits inside a fingerprint/tag/id/sha256
            else:
                unexplained.append((name, run))
    assert not unexplained, f"Luhn-valid numbers found: {unexplained[:10]}"
    print(f"    hygiene: {len(sources)} sources, {sum(map(len, sources.values()))} bytes; "
          f"Luhn-valid runs explained as timestamps {explained['timestamp']}, inside hex "
          f"digests {explained['digest']}")


def test_no_core_dumps():
    """Card numbers pass through the process's memory, so cardwatch writes
    no core dump (DESIGN.md: "not in a core dump we write"): a running
    service has a core size limit of 0, soft and hard, even when started
    with an unlimited one. (The dumpable flag is checked by test_harden.)"""
    from test_feed import Feed, TokenIssuer, _redis_only_ini, _token
    r = h.Redis()
    old = resource.getrlimit(resource.RLIMIT_CORE)
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, unlimited)   # inherited by the child
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (old[1], old[1]))  # not root: up to the hard limit
    if resource.getrlimit(resource.RLIMIT_CORE)[0] == 0:
        resource.setrlimit(resource.RLIMIT_CORE, old)
        # A child that starts with a zero limit would pass without a check.
        raise h.Skip("the core size limit cannot be raised above 0 here (hard limit 0, "
                     "not root): nothing to check")
    try:
        feed = Feed(_redis_only_ini(r, [TokenIssuer("alpha", "GB", ["400000"], token=_token())]))
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, old)
    limits = Path(f"/proc/{feed.proc.pid}/limits").read_text()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max core file size"))
    assert line.split()[4:6] == ["0", "0"], line
    feed.stop()
