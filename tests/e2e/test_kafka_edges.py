"""The edges of the Kafka-side and batch commands that the other scenarios
do not reach (issue 12): `cardwatch replay --from/--to` at the ends of
the topic and between its messages, the broker refusing the replay's
lookups and fetches, a producer fenced under a replay, the exposed-card
set guard, window-state cleanup, options and signals of a replay, `send`
and `tail` against a full queue and refused requests, the breach commands
(`breaches`, `--confirm`, `unload`) over a Redis that refuses or lost part
of a breach, `load` interrupted while it waits for its list, and `run`'s
rule warnings, reload refusal, progress line, refused dead letters and
lag while intake is paused.

Real processes throughout: Apache Kafka (harness.Kafka) wherever a real
broker can produce the situation, librdkafka's mock only for a protocol
error that must be injected (a refused ListOffsets or Fetch, a fenced
producer); a real redis-server, faulted through its ACL, SIGSTOP or
CLIENT PAUSE. Expectations come from the inputs - the message timestamps
chosen here, cwstack.expected_alerts - never from cardwatch's output.

Not here (see them): bad CSV input (test_load.py), replay's Redis faults
in the middle of reading (test_faults_batch.py), replay's dead letters,
caps and SIGTERM on files (test_replay_file.py), the faithful replay of a
live run (test_replay_kafka.py)."""

import json
import os
import random
import re
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn
from test_replay_file import DEFAULT_PACK, _check_alert_lines, _no_leftovers, _pack_alerts
from test_replay_kafka import _frame, card_key, encode, produce_stamped, read_jsonl, \
    read_report, replay, stream

HOUR = 3_600_000
PREFIX = "cw"                  # [redis] prefix default
SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation")


def _no_sanitizer(text, what):
    for bad in SANITIZER_WORDS:
        assert bad not in text, f"{what}: {bad}:\n{text[-4000:]}"


def _first_at(stamps, t, high):
    """Offset of the first message stamped >= t (high when none): Kafka's
    offsetsForTimes on a partition whose stamps never decrease."""
    return next((i for i, ts in enumerate(stamps) if ts >= t), high)


def _produce_in_a_transaction(kafka, topic, partition, records):
    """(timestamp_ms, key, value) records in one committed transaction
    (tools/produce_file --transactional): the partition ends with the
    commit marker, an offset that holds no message."""
    data = b"".join(struct.pack(">q", ts) + _frame(k) + _frame(v) for ts, k, v in records)
    res = h.run_tool([h.tool("produce_file"), "--brokers", kafka.bootstraps, "--topic", topic,
                      "--partition", str(partition), "--timestamps", "--timeout", "30",
                      "--transactional", f"edges-{topic}-{partition}"],
                     input=data, timeout=90, check=False)
    assert res.returncode == 0 and res.stdout.decode().strip() == str(len(records)), \
        res.stderr.decode(errors="replace")


# --------------------------------------------------------------------------
# replay --from / --to at the edges

def test_replay_time_lookups_at_the_edges_of_the_topic():
    """`replay --from/--to` on Apache Kafka, per partition, where the
    answer is not "somewhere in the middle": a --from before 1970 (a
    negative time, which ListOffsets cannot be asked: searched), a --to
    before the first message, a range that falls between two messages, a
    --from after the last message of one partition or of all (the broker
    answers -1, confirmed by the last message), an empty partition, and a
    partition written in a transaction, whose last offset is the commit
    marker (a probe there ends at the partition's end, not on a message;
    the range read must end there too; the broker's time index counts the
    marker, stamped at commit time, so where no message is late enough it
    may answer the marker's offset - the same messages are in range).
    Each range is replayed twice - offsets from the broker's time index
    and, with --force-search, by searching message timestamps - and both
    must give the offsets computed here from the timestamps, exactly the
    alerts of the messages in range and the log line saying which way the
    offsets were found. Then a replay of another topic (--topic) whose
    messages cannot be decoded stops at its --max-dead-letters cap, naming
    the topic, partition and offset of the first dead letter; and replay
    and run stop, naming it, at a consumer or producer setting librdkafka
    refuses only when that client is made."""
    base = cw.day_ms("2024-03-01")
    stamps = {0: [base + k * HOUR for k in range(6)],          # 0h .. 5h
              1: [],                                           # empty
              2: [base + HOUR // 2 + k * 2 * HOUR for k in range(4)],  # 0.5h .. 6.5h
              3: [base + HOUR + k * 2 * HOUR for k in range(3)]}  # 1h .. 5h, + marker
    high = {p: len(st) + (p == 3) for p, st in stamps.items()}
    issuers = cw.three_issuers()
    mk = CardMaker(2601)
    cards = mk.cards(["400001", "4000501", "510000", "52000042", "999999"], 10)
    b1 = Breach("edge-seek", "2024-01-01", "2024-12-31", ["pan", "expiry"], cards)
    rnd = random.Random(2601)
    txns = {p: [txn(f"es-{p}-{i}", rnd.choice(cards), ts, rnd) for i, ts in enumerate(st)]
            for p, st in stamps.items()}
    s = cw.Stack(issuers, partitions=4)
    s.load(b1)
    for p, ts in txns.items():
        recs = [(t["event_time_ms"], card_key(t["pan"]), encode(t)) for t in ts]
        if p == 3:
            _produce_in_a_transaction(s.kafka, cw.TXN_TOPIC, p, recs)
        elif recs:
            produce_stamped(s.kafka, cw.TXN_TOPIC, recs, partition=p)
    d = h.tmpdir("seek")
    cases = [
        # (name, --from, --to or None, from_ms, to_ms)
        ("before 1970 to the middle", "1969-12-31", str(base + 2 * HOUR + 1),
         -86_400_000, base + 2 * HOUR + 1),
        ("before 1970 to before the first message", "1969-12-31", str(base - 1),
         -86_400_000, base - 1),
        ("between two messages", str(base + HOUR + 1), str(base + 2 * HOUR - 1),
         base + HOUR + 1, base + 2 * HOUR - 1),
        ("after the last message of partition 0", str(base + 5 * HOUR + 1), None,
         base + 5 * HOUR + 1, None),
        ("after every message", "2024-03-02", None, cw.day_ms("2024-03-02"), None),
        # after the commit marker too: the broker answers -1 everywhere, the
        # last offset of partition 3 is probed and holds no message
        ("in the future", "2100-01-01", None, cw.day_ms("2100-01-01"), None),
    ]
    n = 0
    for name, frm, to, from_ms, to_ms in cases:
        want_parts = []
        want_ids = set()
        for p in sorted(stamps):
            start = _first_at(stamps[p], from_ms, high[p])
            end = high[p] if to_ms is None else _first_at(stamps[p], to_ms, high[p])
            end = max(start, end)
            want_parts.append({"partition": p, "start": start, "end": end})
            want_ids |= {cw.alert_id(t["txn_id"]) for t in txns[p][start:end]}
        expected = cw.expected_alerts([t for ts in txns.values() for t in ts
                                       if cw.alert_id(t["txn_id"]) in want_ids], [b1], issuers)
        assert set(expected) == want_ids, "test data: every message in range alerts"
        for how in ("broker", "search"):
            n += 1
            out, rep = d / f"a{n}.jsonl", d / f"r{n}.json"
            args = ["--from", frm, *(["--to", to] if to else []), "--output", out,
                    "--report", rep, *(["--force-search"] if how == "search" else [])]
            res = replay(s, *args)
            where = f"{name} ({how})"
            r = read_report(rep)
            got_parts = r["input"]["partitions"]
            if how == "broker":
                # The broker's time index counts the commit marker, stamped
                # with the commit's wall-clock time: where no message is
                # late enough it may answer the marker's offset instead of
                # the end. Nothing lies between the two: the same messages.
                marker = high[3] - 1
                got_parts = [dict(x, **{k: high[3] for k in ("start", "end")
                                        if x["partition"] == 3 and x[k] == marker})
                             for x in got_parts]
            assert got_parts == want_parts, (where, r["input"]["partitions"])
            assert r["events"] == len(want_ids) and r["input"]["from_ms"] == from_ms, (where, r)
            got = [a["alert_id"] for a in read_jsonl(out)]
            assert sorted(got) == sorted(want_ids), (where, len(got), len(want_ids))
            err = res.stderr.decode(errors="replace")
            m = re.search(r"(\d+) by the broker's time index, (\d+) by searching message "
                          r"timestamps, (\d+) probes", err)
            assert m, f"{where}: no 'offsets found' line:\n{err[-2000:]}"
            broker, searched = int(m.group(1)), int(m.group(2))
            if how == "search":
                assert broker == 0, (where, m.group(0))
            elif from_ms >= 0:
                assert searched == 0, (where, m.group(0))
            else:   # a negative --from is searched, its --to asked
                assert searched >= 1 and broker >= 1, (where, m.group(0))
    print(f"    {n} replays of {len(cases)} ranges, offsets by the broker and by searching")

    # another topic (--topic), of undecodable messages after a good one:
    # past --max-dead-letters the replay stops, naming where the first is
    bad = "edges.bad"
    s.kafka.create_topics({bad: 1})
    good = txn("es-bad-0", cards[0], base, rnd)
    produce_stamped(s.kafka, bad, [(base, b"g", encode(good))] +
                    [(base + i, b"x", b"\xff\xfe not a transaction") for i in range(1, 6)])
    out = d / "bad.jsonl"
    res = replay(s, "--topic", bad, "--from", "2024-01-01", "--output", out,
                 "--max-dead-letters", "2", expect_rc=1)
    err = res.stderr.decode(errors="replace")
    assert ("stopping: 3 dead letters, more than the cap of 2 (--max-dead-letters N or [replay] "
            f"max_dead_letters; 0 = no cap); is this the right input? The first is at {bad}/0/1; "
            "by reason: undecodable 3") in err, err[-3000:]
    assert not out.exists() and not Path(f"{out}.partial").exists()

    # settings librdkafka refuses only when the client they configure is
    # made - after the connection check (a producer of its own) passed:
    # `replay` and `run` stop, exit 1, naming the setting
    for scope, line, words in (("consumer", "no.such.property = 1",
                                ["[kafka.consumer] no.such.property"]),
                               ("producer", "acks = 1", ["acks", "idempotence"])):
        bad = s.dir / f"bad-{scope}.ini"
        bad.write_text(s.config.read_text() + f"\n[kafka.{scope}]\n{line}\n")
        for args in (["replay", "--from", "2024-01-01", "--output", d / "x.jsonl"], ["run"]):
            res = h.run_tool([h.tool("cardwatch"), args[0], "--config", bad, *args[1:],
                              "--no-progress"], timeout=60, check=False)
            err = res.stderr.decode(errors="replace")
            _no_sanitizer(err, f"{args[0]} with a bad {scope} setting")
            assert res.returncode == 1 and all(w in err for w in words), \
                (scope, args[0], res.returncode, err[-2000:])


# --------------------------------------------------------------------------
# the broker refusing what a replay asks (librdkafka's mock injects it)

def _small_stream(seed, tag, n_exposed=8, n_clean=8, per_card=3):
    """Three issuers, one breach; every use of an exposed card alerts (the
    built-in rule): (issuers, breach, txns sorted by event time)."""
    issuers = cw.three_issuers()
    mk = CardMaker(seed)
    exposed = mk.cards(["400001", "4000501", "510000", "52000042"], n_exposed)
    clean = mk.cards(["400002", "510000"], n_clean)
    b1 = Breach(f"{tag}-breach", "2024-01-01", "2024-06-30", ["pan", "expiry"], exposed)
    rnd = random.Random(seed)
    txns = [txn(f"{tag}-{i:04d}", pan, cw.day_ms("2024-03-01") + i * 60_000, rnd)
            for i, pan in enumerate(p for p in exposed + clean for _ in range(per_card))]
    return issuers, b1, txns


def _publish(s, txns):
    produce_stamped(s.kafka, cw.TXN_TOPIC,
                    [(t["event_time_ms"], card_key(t["pan"]), encode(t)) for t in txns])


def _alert_ids(path):
    ids = [a["alert_id"] for a in read_jsonl(path)]
    assert len(ids) == len(set(ids)), f"{path}: an alert twice"
    return set(ids)


def test_replay_stops_when_the_broker_refuses_its_offset_lookups():
    """The brokers refuse what `replay --from` asks while it looks for its
    offsets (the mock refuses the request with TOPIC_AUTHORIZATION_FAILED,
    an error that waiting cannot cure): the watermarks (ListOffsets) - exit
    1, "partition N: watermarks: ... authorization failed"; then the first
    probe of the timestamp search (Fetch) - exit 1 naming the partition and
    the offset it probed. No output file either time. A probe refused
    with an error that may pass (CORRUPT_MESSAGE) is fetched again: the
    replay writes exactly the alerts of the topic."""
    issuers, b1, txns = _small_stream(2602, "sk")
    expected = cw.expected_alerts(txns, [b1], issuers)
    s = cw.Stack(issuers, kafka_kind="embedded", kafka_faults=["2:29:2", "1:29:1", "1:2:1"],
                 extra_ini="[kafka.consumer]\nfetch.error.backoff.ms = 100\n")
    s.load(b1)
    _publish(s, txns)
    d = h.tmpdir("sk")
    out = d / "a.jsonl"
    s.kafka.inject()     # both lookups of the first partition's watermarks fail
    res = replay(s, "--from", "2024-01-01", "--output", out, expect_rc=1)
    err = res.stderr.decode(errors="replace")
    assert re.search(rf"topic {re.escape(cw.TXN_TOPIC)} partition \d+: watermarks: "
                     r"Broker: Topic authorization failed", err), err[-2000:]
    assert not out.exists() and not Path(f"{out}.partial").exists()
    # the Fetch error is still armed: the search's first probe meets it
    res = replay(s, "--from", "2024-01-01", "--output", out, expect_rc=1)
    err = res.stderr.decode(errors="replace")
    assert re.search(rf"topic {re.escape(cw.TXN_TOPIC)} partition \d+ at offset \d+: .*"
                     r"Topic authorization failed", err), err[-2000:]
    assert not out.exists() and not Path(f"{out}.partial").exists()
    # the next probe meets an error that may pass (CORRUPT_MESSAGE): it is
    # fetched again, and the replay writes exactly the alerts of the topic
    replay(s, "--from", "2024-01-01", "--output", out)
    assert _alert_ids(out) == set(expected)


def test_replay_rides_out_a_refused_fetch_and_stops_on_a_fenced_producer():
    """A topic replay whose reading of the range is refused once (a Fetch
    answered TOPIC_AUTHORIZATION_FAILED after the offsets were found) logs
    the consumer error, fetches again and ends with exit 0 and exactly the
    alerts of the topic. A replay to the replay topics whose producer is
    fenced at start (InitProducerId refused: idempotence is impossible, for
    good) stops: exit 1, the producer's fatal error logged, the summary
    marked FAILED, nothing on the replay topics; the same replay then
    delivers every alert there once."""
    issuers, b1, txns = _small_stream(2603, "sf")
    expected = cw.expected_alerts(txns, [b1], issuers)
    # (a refused Fetch is retried after 10 x fetch.error.backoff.ms, >= 1 s)
    s = cw.Stack(issuers, kafka_kind="embedded", kafka_faults=["1:29:1", "22:31:1"],
                 redis_ini="timeout_ms = 300\n",
                 extra_ini="[kafka.consumer]\nfetch.error.backoff.ms = 100\n")
    s.load(b1)
    _publish(s, txns)
    d = h.tmpdir("sf")

    # the range read refused once: the fault is armed once the offsets are
    # found (a paused Redis holds the replay before it reads the range);
    # both outputs are files, so no producer meets the other fault
    s._n += 1
    log = s.dir / f"replay-fetch-{s._n:02d}.log"
    s.logs.append(log)
    s.redis.pause()
    try:
        p = h.spawn([h.tool("cardwatch"), "replay", "--config", s.config, "--from", "2024-01-01",
                     "--output", d / "a.jsonl", "--dead-letter", d / "dl.jsonl",
                     "--no-progress"], name="replay-fetch", log=log)
        h.wait_until(lambda: "message(s) in range" in p.log_text() or not p.alive, 60,
                     "the replay to find its offsets")
        assert p.alive, p.log_text(30)
        s.kafka.inject()
    finally:
        s.redis.resume()
    rc = p.wait(60)
    text = p.log_text()
    _no_sanitizer(text, "replay through a refused fetch")
    assert rc == 0, f"exit {rc}:\n{text[-3000:]}"
    assert re.search(r"WARN +source: consumer: .*Topic authorization failed", text), text[-3000:]
    assert _alert_ids(d / "a.jsonl") == set(expected)
    assert (d / "dl.jsonl").read_text() == ""

    # the producer fenced (the InitProducerId error armed above)
    res = replay(s, "--from", "2024-01-01", expect_rc=1)
    err = res.stderr.decode(errors="replace")
    assert "ERROR sink: producer fatal error: " in err and \
        "Cluster authorization failed" in err, err[-3000:]
    assert "cardwatch replay (FAILED: output removed)" in res.stdout.decode(), \
        res.stdout.decode()[-2000:]
    # again without the fault: every alert once (so the fenced one sent none)
    replay(s, "--from", "2024-01-01")
    replay_topics = [t + cw.REPLAY_SUFFIX for t in cw.alert_topics(issuers)]
    want = {aid: {"topic": e["topic"] + cw.REPLAY_SUFFIX, "key": e["key"],
                  "alert": dict(e["alert"], mode="MODE_REPLAY")}
            for aid, e in expected.items()}
    got = [(t, m, s.schema.decode("Alert", m.value)) for t in replay_topics
           for m in s.kafka.consume(t)]
    cw.check_alerts(got, want, exact_once=True)


# --------------------------------------------------------------------------
# a batch the pipeline cannot take (an allocation fails)

def test_topic_replay_reads_a_refused_batch_again():
    """The pipeline refuses a batch of a topic replay (its allocation for
    the batch fails: cardwatch-failalloc, the 5th call from that site, in
    the middle of the range, small batches over three partitions and an
    empty fourth): the replay logs that it seeks back, reads each
    partition again from the first record of the refused batch, and ends
    with exit 0 and exactly the alerts of the topic, once each, in
    partition and offset order. (The out-of-memory sweep fails each
    allocation of a file replay and of `run`, not of a topic replay,
    whose source is another one.)"""
    from test_oom_sweep import BINARY, Sites, _fa_env, _run
    issuers, b1, txns = _small_stream(2604, "sb", n_exposed=10, n_clean=10, per_card=6)
    expected = cw.expected_alerts(txns, [b1], issuers)
    s = cw.Stack(issuers, partitions=4, extra_ini="[pipeline]\nbatch_size = 8\n")
    s.load(b1)
    rnd = random.Random(2604)
    by_part = {p: [] for p in range(3)}
    for t in txns:
        by_part[rnd.randrange(3)].append(t)
    for p, ts in by_part.items():
        produce_stamped(s.kafka, cw.TXN_TOPIC,
                        [(t["event_time_ms"], card_key(t["pan"]), encode(t)) for t in ts],
                        partition=p)
    where = {t["txn_id"]: (p, i) for p, ts in by_part.items() for i, t in enumerate(ts)}
    d = h.tmpdir("sb")
    out = d / "a.jsonl"
    args = ["replay", "--config", s.config, "--from", "2024-01-01", "--output", out,
            "--no-progress"]

    def check(res, what):
        text = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
        _no_sanitizer(text, what)
        assert res.returncode == 0 and not res.hung, f"{what}: exit {res.returncode}:\n" \
            + text[-3000:]
        got = read_jsonl(out)
        ids = [a["alert_id"] for a in got]
        assert len(ids) == len(set(ids)) and set(ids) == set(expected), \
            f"{what}: {len(set(expected) - set(ids))} missing, {len(ids) - len(set(ids))} twice"
        order = [where[a["txn_id"]] for a in got]
        assert order == sorted(order), f"{what}: not in partition, offset order"
        return text

    sites = Sites()
    rec = d / "sites.txt"
    check(_run(args, _fa_env(d, record=rec)), "the recording run")
    calls = {int(o): int(n) for o, n in (x.split() for x in rec.read_text().splitlines())}
    # the functions of the sites, in one addr2line (a return address is
    # just after its call: Sites.where, for all at once)
    offs = sorted(calls)
    res = h.run_tool(["addr2line", "-f", "-e", sites.binary,
                      *[hex(sites.base + o - 1) for o in offs]])
    funcs = res.stdout.decode().split("\n")[0::2]
    # the site of every batch (its fingerprint list); a batch taken from
    # the free list allocates nothing, so get_batch's own site, inlined by
    # some builds, is called as often as batches were in flight at once
    intake = [o for o, fn in zip(offs, funcs) if fn == "pipeline_intake" and calls[o] >= 5]
    assert intake, "test data: pipeline_intake allocates on every batch " \
        f"({sorted(set(funcs))}; {[calls[o] for o, fn in zip(offs, funcs) if fn == 'pipeline_intake']})"
    fired = d / "fired.txt"
    out.unlink()
    text = check(_run(args, _fa_env(d, site=f"{intake[0]}:5", fired=fired)),
                 f"{BINARY} failing {sites.where(intake[0])} on its 5th call")
    assert fired.exists(), "the allocation did not fail"
    assert text.count("pipeline refused a batch (out of memory); seeking back") == 1, \
        text[-3000:]


# --------------------------------------------------------------------------
# a replay's exposed-card set, window-state cleanup and signals (Redis)

def _file_stack(issuers, breaches, redis_wait_s):
    """A stack for file replays with the default pack (window state in
    Redis), the breaches loaded."""
    s = cw.Stack(issuers, extra_ini=f"[replay]\nredis_wait_s = {redis_wait_s}\n"
                                    f"[rules]\npath = {DEFAULT_PACK}\n")
    for b in breaches:
        s.load(b)
    return s


def _cmd(s, *args):
    """A short cardwatch command to its end: (exit status, stdout, stderr);
    no sanitizer report in it."""
    res = s.cardwatch(*args, check=False)
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    _no_sanitizer(out + err, f"cardwatch {args[0]}")
    return res.returncode, out, err


def test_replay_will_not_start_on_a_wrong_or_unchecked_exposed_set():
    """A replay copies the exposed-card set once, so it must start from a
    whole one: with the set's marker gone (Redis emptied and reloaded in
    part, or written by hand) it fails at once, exit 1, with the reason
    and what to run - it does not wait [replay] redis_wait_s for a set
    that will not come back; with Redis answering but its set check held
    (CLIENT PAUSE WRITE, what a failover does) it waits redis_wait_s and
    then fails saying so, its --progress bar not drawn before it reads.
    `breaches --confirm` records the set as it is, and the same replay
    then writes exactly the alerts."""
    issuers, breaches, txns = stream(2605, "sg", n_exposed=9, n_clean=6, per_card=6)
    s = _file_stack(issuers, breaches, redis_wait_s=1)
    want = _pack_alerts(txns, breaches, issuers)
    d = h.tmpdir("sg")
    inp = d / "in.jsonl"
    inp.write_text("".join(json.dumps(t) + "\n" for t in txns))
    out = d / "out.jsonl"
    args = ["replay", "--input", inp, "--output", out, "--no-progress"]

    marker = s.redis.call("GET", f"{PREFIX}:exposed")
    assert marker, "test data: the loads wrote the set's marker"
    s.redis.call("DEL", f"{PREFIX}:exposed")
    rc, _, err = _cmd(s, *args)
    assert rc == 1, f"exit {rc}:\n{err[-3000:]}"
    assert f"the exposed-card set is gone from Redis 127.0.0.1:{s.redis.port} (no marker " \
        f"{PREFIX}:exposed" in err and "cardwatch breaches --confirm" in err, err[-3000:]
    assert "waited" not in err, "it waited for a set that will not come back"
    _no_leftovers(d, "out.jsonl")

    rc, stdout, _ = _cmd(s, "breaches", "--confirm")
    assert rc == 0 and f"exposed-card set confirmed as it is now: {len(breaches)} breaches" \
        in stdout, stdout

    # the set check (a script: a write as far as CLIENT PAUSE WRITE goes)
    # held for longer than redis_wait_s, INFO and PING answered
    s.redis.call("CLIENT", "PAUSE", "10000", "WRITE")
    try:
        rc, _, err = _cmd(s, *args, "--progress")
    finally:
        s.redis.call("CLIENT", "UNPAUSE")
    assert rc == 1, f"exit {rc}:\n{err[-3000:]}"
    assert f"checking the exposed-card set in Redis 127.0.0.1:{s.redis.port} (waited 1 s, " \
        "[replay] redis_wait_s)" in err, err[-3000:]
    # --progress: no bar while the set is checked (before: one every 0.5 s,
    # the timer's check of the phase never held), only the final one
    before, _, after = err.partition("ERROR replay: checking the exposed-card set")
    assert " events " not in before, f"a progress bar while loading: {before!r}"
    assert re.search(r"\x1b\[K\[-{24}\] +0\.0%  0 events ", after), repr(after)
    _no_leftovers(d, "out.jsonl")

    rc, _, err = _cmd(s, *args)
    assert rc == 0, err[-3000:]
    _check_alert_lines(out, want)


def test_replay_cleanup_over_many_keys_a_refused_scan_and_a_second_signal():
    """The end of a replay with window state (the default pack) in a Redis
    holding thousands of other keys: the replay's namespace is found page
    by page (SCAN ... COUNT 1000) and every key of it removed, as its log
    line says. A Redis that refuses that SCAN (an ACL taking it away while
    the replay runs) costs the cleanup only: a warning that the keys
    expire on their own (they do: each has a TTL), exit 0 and exactly the
    alerts. And a replay stuck on a Redis that hangs (SIGSTOP) stops at
    SIGTERM only once its in-flight work and cleanup are done - which they
    cannot be - so a second SIGTERM exits at once: exit 143, the report
    saying ok false, no output left behind."""
    from test_faults_batch import _done, _replay_stdin
    issuers, breaches, txns = stream(2606, "sc", n_exposed=12, n_clean=6, per_card=8)
    filler = Breach("sc-filler", "2020-01-01", "2020-12-31", ["pan"],
                    CardMaker(26060).cards(["400003", "510000"], 2500))
    s = _file_stack(issuers, breaches + [filler], redis_wait_s=30)
    # (exposed cards take a key per ~40 cards: another application's keys
    # make the pages)
    s.redis.call("MSET", *[x for i in range(3000) for x in (f"other-app:{i}", "x")])
    assert s.redis.call("DBSIZE") > 3000, "test data: several SCAN pages of 1000"
    want = _pack_alerts(txns, breaches + [filler], issuers)
    data = b"".join(json.dumps(t).encode() + b"\n" for t in txns)
    cut = data.index(b"\n", len(data) // 2) + 1
    d = h.tmpdir("sc")
    out = d / "out.jsonl"

    # 1. many pages
    (d / "in.jsonl").write_bytes(data)
    rc, _, err = _cmd(s, "replay", "--input", d / "in.jsonl", "--output", out, "--no-progress")
    assert rc == 0, err[-3000:]
    _check_alert_lines(out, want)
    m = re.search(rf"replay state {PREFIX}:(rp-[0-9a-f]{{12}}):\* removed \((\d+) key", err)
    assert m and int(m.group(2)) > 0, err[-3000:]
    assert s.redis.call("KEYS", f"{PREFIX}:rp-*") == [], "window state left after the cleanup"
    out.unlink()

    # 2. SCAN refused once the set is copied: the cleanup gives up, the
    #    replay does not
    def refuse_scan():
        s.redis.call("ACL", "SETUSER", "default", "-scan")
    try:
        p = _replay_stdin(s, d, data, cut, refuse_scan)
        rc, log = _done(p, 60, "replay whose cleanup SCAN is refused")
    finally:
        s.redis.call("ACL", "SETUSER", "default", "+@all")
    assert rc == 0, f"exit {rc}:\n{log[-3000:]}"
    assert re.search(rf"WARN +replay: cleaning up replay state {PREFIX}:rp-[0-9a-f]{{12}}:\* "
                     r"failed; its keys expire on their own", log), log[-3000:]
    _check_alert_lines(out, want)
    left = s.redis.call("KEYS", f"{PREFIX}:rp-*")
    assert left and all(s.redis.call("PTTL", k) > 0 for k in left), \
        "the window state of the replay whose cleanup failed does not expire"
    for k in left:
        s.redis.call("DEL", k)
    out.unlink()
    (d / "report.json").unlink()

    # 3. Redis hangs: the first SIGTERM cannot finish the in-flight work,
    #    the second exits at once
    try:
        p = _replay_stdin(s, d, data, cut, s.redis.pause)
        p.send_signal(signal.SIGTERM, group=False)
        h.wait_until(lambda: "interrupted by SIGTERM: stopping" in p.log_text() or not p.alive,
                     30, "the replay to take the first SIGTERM")
        assert p.alive, f"the replay ended without Redis:\n{p.log_text(30)}"
        p.send_signal(signal.SIGTERM, group=False)
        rc, log = _done(p, 10, "replay after a second SIGTERM")
    finally:
        s.redis.resume()
    assert rc == 128 + signal.SIGTERM, f"exit {rc}:\n{log[-3000:]}"
    assert "WARN replay: second signal: exiting now" in log, log[-3000:]
    _no_leftovers(d, "out.jsonl")
    assert json.loads((d / "report.json").read_text())["ok"] is False


NEVER_RULE = ("\n# test: a condition that cannot hold\n"
              "rule never\n"
              "  severity: low\n"
              "  description: Negative amounts (cannot happen)\n"
              "  when: exposed and amount_minor < 0\n")


def test_replay_options_warnings_and_an_output_that_cannot_be_put_in_place():
    """Replay options whose outcome the user must be told: --rules with a
    rule that can never fire (the rule file's warning is logged, the
    replay runs), --breach naming a breach whose list loaded no card (a
    warning that nothing can alert; exit 0, no alert), a progress bar on
    stdin input whose size is unknown (events and rate, no percentage),
    and an --output path where the finished file cannot be put (taken by
    a directory while the replay ran: the rename fails) - exit 1 naming
    the path, the report says ok false, no *.partial left. The same
    replay to a usable path writes exactly the alerts. A --dead-letter file
    whose disk fills while the replay runs (a 64 KiB tmpfs) fails it too:
    exit 1, "No space left on device", no file left."""
    from test_faults_batch import _done, _feed_rest, _spawn
    issuers, breaches, txns = stream(2607, "so", n_exposed=9, n_clean=6, per_card=6)
    empty = Breach("so-empty", "2024-01-01", "2024-12-31", ["pan"], [])
    s = _file_stack(issuers, breaches + [empty], redis_wait_s=5)
    want = _pack_alerts(txns, breaches, issuers)
    d = h.tmpdir("so")
    inp = d / "in.jsonl"
    data = b"".join(json.dumps(t).encode() + b"\n" for t in txns)
    inp.write_bytes(data)
    half = data.index(b"\n", len(data) // 2) + 1

    rules = d / "with-never.rules"
    rules.write_text(DEFAULT_PACK.read_text() + NEVER_RULE)
    rc, _, err = _cmd(s, "replay", "--input", inp, "--output", d / "a.jsonl", "--rules", rules,
                      "--no-progress")
    assert rc == 0, err[-3000:]
    assert re.search(r"WARN +rules: .*with-never\.rules:\d+: rule 'never' can never fire", err), \
        err[-3000:]
    got = read_jsonl(d / "a.jsonl")
    assert sorted(a["txn_id"] for a in got) == sorted(w["txn_id"] for w in want)

    rc, _, err = _cmd(s, "replay", "--input", inp, "--output", d / "b.jsonl", "--breach",
                      "so-empty", "--report", d / "b.json", "--no-progress")
    assert rc == 0, err[-3000:]
    assert "no exposed cards are loaded for breach so-empty: nothing can alert" in err, \
        err[-3000:]
    assert (d / "b.jsonl").read_text() == "" and read_report(d / "b.json")["alerts"] == 0

    # stdin: the size is unknown, the bar counts events. The lines come
    # one by one, as from a slow producer, until a bar is drawn (the
    # replay reads stdin with blocking reads: its timers run between them)
    p = _spawn(s, "replay", ["replay", "--input", "-", "--output", d / "c.jsonl", "--progress"],
               stdin=True)
    bar = re.compile(r"\x1b\[K[1-9][\d,]* events  [\d,]+/s  alerts [\d,]+  dead letters 0")
    lines = data.splitlines(keepends=True)
    sent = 0
    while sent < len(lines) and not bar.search(p.log_text()) and p.alive:
        p.popen.stdin.write(lines[sent])
        p.popen.stdin.flush()
        sent += 1
        time.sleep(0.02)   # the pace of the producer, not a wait for the replay
    assert bar.search(p.log_text()), f"no progress line after {sent} lines:\n{p.log_text(20)}"
    _feed_rest(p, b"".join(lines[sent:]))
    rc, log = _done(p, 60, "replay from stdin with --progress")
    assert rc == 0, log[-3000:]
    drawn = [x for x in log.split("\x1b[K") if " events  " in x]
    assert drawn and not any("%" in x or "ETA" in x for x in drawn), \
        f"a share of an input of unknown size: {drawn[:3]}"
    _check_alert_lines(d / "c.jsonl", want)

    # the --output path taken by a directory while the replay runs (it was
    # free at start): everything is written, then the rename into place
    # fails
    taken = d / "taken"
    p = _spawn(s, "replay", ["replay", "--input", "-", "--output", taken, "--report",
                             d / "r.json", "--no-progress"], stdin=True)
    p.popen.stdin.write(data[:half])
    p.popen.stdin.flush()
    h.wait_until(lambda: "exposed set copied" in p.log_text() or not p.alive, 30,
                 "the replay to start")
    taken.mkdir()
    (taken / "keep").write_text("not ours\n")
    _feed_rest(p, data[half:])
    rc, log = _done(p, 60, "replay whose output path was taken")
    assert rc == 1, f"exit {rc}:\n{log[-3000:]}"
    assert f"ERROR replay: {taken}.partial: rename: Is a directory" in log and \
        "cardwatch replay (FAILED: output removed)" in log, log[-3000:]
    assert read_report(d / "r.json")["ok"] is False
    assert sorted(x.name for x in taken.iterdir()) == ["keep"]
    _no_leftovers(d)
    rc, _, err = _cmd(s, "replay", "--input", inp, "--output", d / "taken" / "out.jsonl",
                      "--no-progress")
    assert rc == 0, err[-3000:]
    _check_alert_lines(d / "taken" / "out.jsonl", want)

    # a dead-letter file that fills its disk while the replay runs
    from test_faults_batch import _tmpfs
    bad = d / "bad.jsonl"
    bad.write_bytes(data + b"".join(b'{"txn_id": "so-bad-%05d", "pan": "1"}\n' % i
                                    for i in range(600)))
    with _tmpfs("64k") as full:
        if full is not None:
            rc, out, err = _cmd(s, "replay", "--input", bad, "--output", d / "o.jsonl",
                                "--dead-letter", full / "dl.jsonl", "--max-dead-letters", "0",
                                "--max-dead-letter-percent", "100", "--no-progress")
            assert rc == 1, f"exit {rc}:\n{err[-3000:]}"
            assert f"{full}/dl.jsonl.partial: write: No space left on device" in err, \
                err[-3000:]
            assert "cardwatch replay (FAILED: output removed)" in out, out[-2000:]
            assert os.listdir(full) == [] and not (d / "o.jsonl").exists()


# --------------------------------------------------------------------------
# send and tail

def _sent_ids(s, topic=cw.TXN_TOPIC):
    return [s.schema.decode("Transaction", m.value)["txn_id"] for m in s.kafka.consume(topic)]


def test_send_waits_for_a_full_queue_and_stops_on_a_fenced_producer():
    """`cardwatch send` with a producer queue of one message
    ([kafka.producer] queue.buffering.max.messages = 1): on Apache Kafka
    it waits for room and delivers every line exactly once; on a broker
    that fences its producer (InitProducerId refused, the mock) it stops
    at the first produce refused for good - exit 1, "produce to TOPIC:
    ... Fatal error" - instead of waiting for room that never comes.
    `tail` of an alert topic whose first fetch is refused (the mock:
    TOPIC_AUTHORIZATION_FAILED) says so, fetches again and prints the
    alert."""
    from test_cli_errors import _an_alert
    mk = CardMaker(2608)
    txns = [txn(f"sq-{i:04d}", mk.card("400002"), cw.day_ms("2024-03-01") + i * 1000)
            for i in range(40)]
    one = "[kafka.producer]\nqueue.buffering.max.messages = 1\n"
    s = cw.Stack(cw.three_issuers(), extra_ini=one)
    s.send(txns)
    got = _sent_ids(s)
    assert sorted(got) == sorted(t["txn_id"] for t in txns), \
        f"{len(got)} messages for {len(txns)} lines"

    m = cw.Stack(cw.three_issuers(), kafka_kind="embedded", kafka_faults=["22:31:1", "1:29:1"],
                 extra_ini=one + "[kafka.consumer]\nfetch.error.backoff.ms = 100\n")
    m.kafka.inject()
    rc, _, err = _cmd(m, "send", "--input", m._jsonl(txns, "fenced"), "--topic", cw.TXN_TOPIC)
    assert rc == 1, f"exit {rc}:\n{err[-3000:]}"
    assert f"ERROR kafka: produce to {cw.TXN_TOPIC}: Local: Fatal error" in err, err[-3000:]
    assert "Cluster authorization failed" in err, err[-3000:]
    assert "transactions sent" not in err, err[-3000:]

    # an alert in every partition: librdkafka reports a fetch error of a
    # partition fetched at its end as the end of the partition instead
    topic = "cardwatch.alerts.alpha"
    for p in range(4):
        m.kafka.produce(topic, [(b"k", _an_alert(f"sq-alert-{p}"))], partition=p)
    rc, stdout, err = _cmd(m, "tail", topic, "--exit-at-end")
    assert rc == 0, err[-3000:]
    assert re.search(rf"WARN +kafka: {re.escape(topic)}: .*Topic authorization failed", err), \
        err[-3000:]
    assert sorted(json.loads(x)["alert_id"] for x in stdout.splitlines()) == \
        sorted(cw.alert_id(f"sq-alert-{p}") for p in range(4)), stdout[-2000:]


# --------------------------------------------------------------------------
# breaches, --confirm, unload and load over a Redis that refuses or lost
# part of a breach

def _breach_rows(out):
    """`cardwatch breaches` table -> {breach: status text}."""
    rows = {}
    for line in out.splitlines()[1:]:
        m = re.match(r"(\S+)\s+\S+\s+\S+\s+\d+\s+(committed|UNLOADING|"
                     r"LOADING \(not monitored\)|INCOMPLETE \(of \d+\))", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_breach_commands_over_a_redis_that_refuses_or_lost_part_of_a_breach():
    """`breaches`, `breaches --confirm`, `load` and `unload` where Redis
    does not hold or give what they need:
    - nothing loaded: "(no breaches loaded)" and a warning that the set's
      marker is missing; --json escapes a description with quotes, a
      backslash and a tab (it parses back to the same text);
    - a breach missing one of its cards (its record and its count): listed
      INCOMPLETE, with a warning;
    - the reads of the breaches refused (an ACL refusing HGETALL and
      EVAL): `breaches` prints what it can and exits 1 (before: exit 0 and
      an empty table) naming HGETALL, `--confirm` exits 1 naming its read
      of the card buckets, `load` exits 1 naming its commit; the breach
      whose load stopped stays LOADING and `--confirm` leaves it out,
      saying so;
    - each other command `breaches`, `--confirm` and `unload` need, refused:
      exit 1 naming it, nothing changed;
    - `unload` of a bad id: exit 1; its card script refused (EVAL), or a
      command inside it (HDEL): exit 1, "the breach stays unloading", it
      is listed UNLOADING and its card records are still there (before:
      exit 0, "unloaded: 0 cards removed", the breach gone and every card
      record left behind, naming a breach no one could unload any more);
    - a refused SREM of the breach itself, its cards removed: exit 1 and
      "run the unload again" (before: exit 0, "unloaded", and a breach
      with no metadata left listed as committed);
    - Redis answering again: the same unload finishes it."""
    s = cw.Stack(cw.three_issuers())
    port = s.redis.port
    mk = CardMaker(2609)
    desc = 'the "shop" \\ payment page\tskimmer'
    a = Breach("ed-a", "2024-01-01", "2024-02-01", ["pan", "expiry"], mk.cards(["400001"], 3),
               description=desc)
    b = Breach("ed-b", "2024-03-01", "2024-04-01", ["pan"], mk.cards(["510000"], 4))

    rc, out, err = _cmd(s, "breaches")
    assert rc == 0 and "(no breaches loaded)" in out, out
    assert f"WARNING: no exposed-card set marker ({PREFIX}:exposed)" in err, err
    s.load(a)
    s.load(b)
    rc, out, _ = _cmd(s, "breaches", "--json")
    rows = {r["breach_id"]: r for r in map(json.loads, out.splitlines())}
    assert rc == 0 and rows["ed-a"]["description"] == desc, out
    assert {k: r["status"] for k, r in rows.items()} == {"ed-a": "committed",
                                                         "ed-b": "committed"}, rows

    # a card of ed-a gone: its record and its place in the breach's count
    gone = cw.delete_card_record(s.redis, a.cards[0], prefix=PREFIX)
    assert gone is not None and gone.startswith("ed-a="), gone
    s.redis.call("HINCRBY", f"{PREFIX}:breach:ed-a", "members", -1)
    rc, out, err = _cmd(s, "breaches")
    assert rc == 0 and _breach_rows(out) == {"ed-a": "INCOMPLETE (of 3)", "ed-b": "committed"}, \
        out
    assert "WARNING: the exposed-card set is not complete" in err, err
    cw.put_card_record(s.redis, a.cards[0], gone, prefix=PREFIX)
    s.redis.call("HINCRBY", f"{PREFIX}:breach:ed-a", "members", 1)

    # the breaches' reads refused: HGETALL (the listing's read of each
    # breach) and EVAL (--confirm's read of the card buckets, load's count
    # of them before its commit)
    refused = f"Redis 127.0.0.1:{port} refused"
    s.redis.call("ACL", "SETUSER", "default", "-hgetall", "-eval")
    try:
        rc, out, err = _cmd(s, "breaches")
        assert rc == 1 and f"{refused} HGETALL: NOPERM" in err and _breach_rows(out) == {}, \
            (rc, out, err)
        rc, out, err = _cmd(s, "breaches", "--confirm")
        assert rc == 1 and f"{refused} a bucket read: NOPERM" in err and \
            "confirmed" not in out, (rc, out, err)
        csv = s.dir / "ed-c.csv"
        csv.write_text("pan\n" + "".join(f"{p}\n" for p in mk.cards(["400002"], 2)))
        rc, out, err = _cmd(s, "load", "--breach", "ed-c", "--window-start", "2024-01-01",
                            "--window-end", "2024-01-31", "--elements", "pan", csv)
        assert rc == 1 and f"{refused} the count before the commit: NOPERM" in err and \
            "was not committed" in err, (rc, out, err)
    finally:
        s.redis.call("ACL", "SETUSER", "default", "+@all")
    # the load stopped before its commit: left out of a confirmed set
    rc, out, _ = _cmd(s, "breaches", "--confirm")
    assert rc == 0 and "breach ed-c is not committed; left out (load it again to finish " \
        "it)" in out and "confirmed as it is now: 2 breaches, 7 cards" in out, out
    rc, out, err = _cmd(s, "load", "--breach", "ed-c", "--window-start", "2024-01-01",
                        "--window-end", "2024-01-31", "--elements", "pan", csv)
    # (its cards were staged before the commit was refused)
    assert rc == 0 and "2 cards loaded (0 new)" in out, (rc, out, err)

    # each command they need, refused: exit 1 naming it, nothing changed
    for acl, args, shown in (("-smembers", ["breaches"], "SMEMBERS"),
                             ("-exists", ["breaches"], "EXISTS"),
                             ("-get", ["breaches"], "GET"),
                             ("-smembers", ["breaches", "--confirm"], "SMEMBERS"),
                             ("-hget", ["breaches", "--confirm"], "HGET"),
                             ("-hset", ["breaches", "--confirm"], "HSET"),
                             ("-set", ["breaches", "--confirm"], "SET"),
                             ("-sismember", ["unload", "ed-b"], "SISMEMBER"),
                             ("-hget", ["unload", "ed-b"], "HGET"),
                             ("-hset", ["unload", "ed-b"], "HSET")):
        s.redis.call("ACL", "SETUSER", "default", acl)
        try:
            rc, out, err = _cmd(s, *args)
        finally:
            s.redis.call("ACL", "SETUSER", "default", "+@all")
        assert rc == 1 and f"Redis 127.0.0.1:{port} refused {shown}: NOPERM" in err, \
            (acl, args, rc, out, err)
    rc, out, _ = _cmd(s, "breaches")
    assert rc == 0 and _breach_rows(out) == {"ed-a": "committed", "ed-b": "committed",
                                             "ed-c": "committed"}, out

    # unload
    rc, _, err = _cmd(s, "unload", "ed b!")
    assert rc == 1 and "unload: give a breach id" in err, err

    def b_records():
        """How many of ed-b's cards have a record naming ed-b."""
        return sum("ed-b=" in (cw.card_record(s.redis, p, prefix=PREFIX) or "")
                   for p in b.cards)
    assert b_records() == len(b.cards)
    for acl, words in (("-eval", f"Redis 127.0.0.1:{port} refused removing cards: NOPERM"),
                       ("-hdel", f"Redis 127.0.0.1:{port} refused removing cards: ERR The user "
                                 "executing the script can't run this command")):
        s.redis.call("ACL", "SETUSER", "default", acl)
        try:
            rc, out, err = _cmd(s, "unload", "ed-b")
        finally:
            s.redis.call("ACL", "SETUSER", "default", "+@all")
        assert rc == 1 and words in err and "unloaded" not in out, (acl, rc, out, err)
        rc, out, _ = _cmd(s, "breaches")
        assert _breach_rows(out) == {"ed-a": "committed", "ed-b": "UNLOADING",
                                     "ed-c": "committed"}, (acl, out)
        assert b_records() == len(b.cards), \
            f"{acl}: card records removed while the unload failed"
    assert "the breach stays unloading (invisible to lookups): run the unload again" in err
    # its card records removed, the breach's own keys refused: not done
    s.redis.call("ACL", "SETUSER", "default", "-srem")
    try:
        rc, out, err = _cmd(s, "unload", "ed-b")
    finally:
        s.redis.call("ACL", "SETUSER", "default", "+@all")
    assert rc == 1 and f"Redis 127.0.0.1:{port} refused SREM: NOPERM" in err and \
        "breach ed-b: its 4 card records are removed, the breach itself is not: run the " \
        "unload again" in err and "unloaded" not in out, (rc, out, err)
    assert b_records() == 0, "card records left"
    rc, out, err = _cmd(s, "unload", "ed-b")
    assert rc == 0 and "breach ed-b unloaded: 0 cards removed" in out, (rc, out, err)
    assert s.redis.call("SISMEMBER", f"{PREFIX}:breaches", "ed-b") == 0
    rc, out, _ = _cmd(s, "breaches")
    assert rc == 0 and _breach_rows(out) == {"ed-a": "committed", "ed-c": "committed"}, out


class _Terminal:
    """A command with its stderr on a pseudo-terminal (so it draws its
    progress line), read in the background into .text. Use it in a with
    block: a command still running at its end is killed."""

    def __init__(self, args, stdout):
        self.master, slave = os.openpty()
        self.p = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                  stdout=stdout, stderr=slave, start_new_session=True)
        os.close(slave)
        self.buf = bytearray()
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(10)

    def _pump(self):
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:      # EIO: the command closed the terminal
                break
            if not chunk:
                break
            self.buf += chunk

    @property
    def text(self):
        return self.buf.decode(errors="replace")

    def wait(self, timeout):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.text[-3000:]}") \
                from None
        self.t.join(5)
        os.close(self.master)
        _no_sanitizer(self.text, str(self.p.args[:2]))
        return rc


def test_load_from_a_pipe_on_a_terminal_interrupted_then_finished_and_unloaded():
    """`cardwatch load` on a terminal reading its list from a named pipe
    whose writer is slow: the progress line counts the cards of each
    chunk; SIGTERM while the load waits for more of the list stops it
    with exit 143 and "interrupted by SIGTERM after N rows read ... (8000
    cards loaded ...)", the breach staying LOADING (before: the read cut
    short by the signal was reported as a read error - "stopped ...; fix
    the cause", exit 1). The same load from a file then finishes (the
    progress line cleared before the summary) with exactly the list's
    cards, and `unload` on a terminal removes them all."""
    from test_faults_batch import CHUNK, HEAD_BYTES, LOAD_ARGS, _card_set, _csv, _holds_exactly
    s = cw.Stack(cw.three_issuers())
    cards = CardMaker(2610).cards(["400001", "510000", "4000501"], 10_400)
    data = _csv(cards)           # 4,442 rows in the first HEAD_BYTES, 8,885 in twice that
    d = h.tmpdir("lf")
    fifo = d / "list.fifo"
    os.mkfifo(fifo)
    args = [h.tool("cardwatch"), "load", "--config", s.config, "--breach", "big", *LOAD_ARGS]
    with open(d / "out-1.txt", "wb") as out, _Terminal([*args, fifo], out) as term:
        # (the command first checks that the list can be opened - open and
        # close: the writer opens the pipe once that is done)
        h.wait_until(lambda: "connected" in term.text or term.p.poll() is not None, 30,
                     "the load to connect to Redis")
        assert term.p.poll() is None, term.text[-3000:]
        with open(fifo, "wb") as w:
            w.write(data[:HEAD_BYTES])
            w.flush()
            h.wait_until(lambda: _card_set(s, "big") >= CHUNK, 30, "the first chunk in Redis")
            time.sleep(0.25)   # the writer's pace: the line is redrawn at most every 0.2 s
            w.write(data[HEAD_BYTES:2 * HEAD_BYTES])
            w.flush()
            h.wait_until(lambda: f"loading big: {2 * CHUNK} cards" in term.text, 30,
                         "the progress line after the second chunk")
            term.p.send_signal(signal.SIGTERM)
            rc = term.wait(30)
    assert rc == 128 + signal.SIGTERM, f"exit {rc}:\n{term.text[-3000:]}"
    assert re.search(rf"\x1b\[K[^\n]*ERROR load: load of breach big interrupted by SIGTERM after "
                     rf"\d+ rows read from {re.escape(str(fifo))} \({2 * CHUNK} cards loaded, 0 "
                     r"rejected\): none of it is visible to lookups", term.text), term.text[-3000:]
    rc, out, _ = _cmd(s, "breaches")
    assert _breach_rows(out) == {"big": "LOADING (not monitored)"}, out

    path = d / "list.csv"
    path.write_bytes(data)
    with open(d / "out-2.txt", "wb") as out, _Terminal([*args, path], out) as term:
        rc = term.wait(60)
    summary = (d / "out-2.txt").read_text()
    assert rc == 0 and f"10400 cards loaded ({10400 - 2 * CHUNK} new)" in summary, \
        (summary, term.text[-2000:])
    assert term.text.endswith("\r\x1b[K"), f"the progress line is not cleared: {term.text!r}"
    _holds_exactly(s, "big", cards)

    with open(d / "out-3.txt", "wb") as out, \
            _Terminal([h.tool("cardwatch"), "unload", "--config", s.config, "big"], out) as term:
        rc = term.wait(60)
    assert rc == 0 and "breach big unloaded: 10400 cards removed" in (d / "out-3.txt").read_text()
    assert re.search(r"\x1b\[Kunloading big: \d+ cards", term.text), term.text[-2000:]
    assert cw.card_records(s.redis, prefix=PREFIX) == {}, "card records left"
    assert s.redis.call("KEYS", f"{PREFIX}:cards:*") == [], "empty buckets left"


# --------------------------------------------------------------------------
# the live service: start-up warnings, reload without a rule file, progress

def test_run_warns_of_its_rules_draws_progress_and_refuses_a_reload_without_a_rule_file():
    """`cardwatch run` with a rule file holding a rule that can never fire
    logs the file's warning at start and runs; with --progress it draws
    its progress line (events, lag, Redis) and ends it with a newline at
    SIGTERM; a --summary-json it cannot write is reported by name; every
    alert of the stream is delivered once; dead letters the dead-letter
    topic refuses for a while (max.message.bytes) are retried and arrive
    once each with their headers (reason, source topic and offset); a
    second service given the same admin address stops at start naming it. The same service without a
    [rules] path, sent SIGHUP, keeps the built-in rules and says why (a
    refused reload in cardwatch_rules_reloads_total)."""
    issuers, b1, txns = _small_stream(2611, "rn")
    d = h.tmpdir("rn")
    rules = d / "with-never.rules"
    rules.write_text(f"rule {cw.RULE}\n  severity: high\n  description: Any use of an exposed "
                     "card\n  when: exposed\n" + NEVER_RULE)
    s = cw.Stack(issuers, extra_ini=f"[rules]\npath = {rules}\n")
    s.load(b1)
    expected = cw.expected_alerts(txns, [b1], issuers)
    for e in expected.values():
        e["alert"]["ruleset_version"] = None     # the rule file's version, checked apart
    invalid = cw.invalid_events(b1.cards[0], "rn")[:5]
    # the dead-letter topic refuses every dead letter for a while
    s.kafka.set_topic_config(cw.DEAD_LETTER_TOPIC, ["max.message.bytes=64"])
    nowhere = d / "no-such-dir" / "summary.json"
    p = s.run("--progress", "--summary-json", nowhere)
    h.wait_until(lambda: s.ready()[0] == 200, 60, "run ready")
    s.send(txns)
    s.send([t for t, _ in invalid], name="invalid")
    got = h.wait_until(lambda: (lambda a: len(a) >= len(expected) and a)(s.alerts()), 60,
                       "every alert delivered")
    h.wait_until(lambda: f"delivery to {cw.DEAD_LETTER_TOPIC} failed" in p.log_text(), 30,
                 "a refused dead letter")
    s.kafka.set_topic_config(cw.DEAD_LETTER_TOPIC, ["max.message.bytes=1048588"])
    dls = h.wait_until(lambda: (lambda x: len(x) >= len(invalid) and x)(s.dead_letters()), 60,
                       "the dead letters, once the topic takes them")
    want_dl = {t.get("merchant_id"): r for t, r in invalid}
    got_dl = {}
    for m in dls:
        hd = dict(m.headers)
        body = json.loads(m.value)
        assert hd.get("reason") == body["reason"].encode() and \
            hd.get("source_topic") == cw.TXN_TOPIC.encode() and \
            hd.get("source_offset") == str(body["source"]["offset"]).encode(), \
            f"a retried dead letter lost its headers: {hd}"
        got_dl[body["source"]["offset"], body["source"]["partition"]] = body["reason"]
    assert sorted(got_dl.values()) == sorted(want_dl.values()) and len(dls) == len(invalid), \
        (got_dl, want_dl)
    versions = {a["ruleset_version"] for _, _, a in got}
    assert len(versions) == 1 and versions.pop().startswith("with-never.rules@"), versions
    for _, _, a in got:
        a["ruleset_version"] = None
    cw.check_alerts(got, expected)
    bar = re.compile(r"\x1b\[K\d[\d,]* events  [\d,]+/s  exposed [\d,]+  alerts [\d,]+  dead "
                     r"letters \d+  lag \d+  redis up")
    h.wait_until(lambda: bar.search(p.log_text()), 30, "the progress line")
    # a second service on the same admin address: refused at start
    rc, _, err = _cmd(s, "run", "--no-progress")
    assert rc == 1 and f"127.0.0.1:{s.http_port}" in err, (rc, err[-2000:])
    s.terminate(p)
    log = p.log_text()
    _no_sanitizer(log, "run")
    assert re.search(r"WARN +rules: .*with-never\.rules:\d+: rule 'never' can never fire", log), \
        log[-3000:]
    assert f"ERROR run: cannot write {nowhere}" in log, log[-3000:]
    assert not nowhere.parent.exists()

    # no [rules] path: SIGHUP keeps the built-in set
    plain = s.dir / "builtin.ini"
    plain.write_text(s.config.read_text().replace(f"[rules]\npath = {rules}\n", ""))
    assert "[rules]" not in plain.read_text()
    s._n += 1
    log2 = s.dir / f"run-builtin-{s._n:02d}.log"
    q = h.spawn([h.tool("cardwatch"), "run", "--config", plain, "--no-progress"], name="run-2",
                log=log2)
    h.wait_until(lambda: s.ready()[0] == 200, 60, "run 2 ready")
    q.send_signal(signal.SIGHUP, group=False)
    h.wait_until(lambda: "reload: no [rules] path is configured; the built-in rule set stays"
                 in q.log_text() or not q.alive, 30, "the reload to be refused")
    m = s.metrics()
    assert m.get("cardwatch_rules_reloads_total", result="refused") == 1, m.samples[:5]
    assert m.get("cardwatch_ruleset_info", version=cw.RULESET) == 1
    assert q.stop(30) == 0, q.log_text(30)
    _no_sanitizer(q.log_text(), "run without a rule file")


def test_lag_while_paused_holds_through_refused_watermark_queries():
    """While intake is paused (the exposed-card set gone from Redis), a
    worker asks the brokers for the watermarks every second so that
    cardwatch_consumer_lag keeps counting what arrives. When the brokers
    refuse those queries (the mock refuses ListOffsets with
    TOPIC_AUTHORIZATION_FAILED - a broker that hangs instead holds the
    query for socket.timeout.ms in librdkafka 2.0.2) the lag holds its last
    value and the failure is logged once at debug level; once the queries
    are answered again the lag counts what arrived meanwhile; when the set
    is back every alert of the stream is delivered once."""
    from test_redis_guard import _paused_with
    issuers, b1, txns = _small_stream(2612, "lg", n_exposed=6, n_clean=6, per_card=6)
    expected = cw.expected_alerts(txns, [b1], issuers)
    a, b, c = txns[:24], txns[24:48], txns[48:]
    s = cw.Stack(issuers, partitions=2, kafka_kind="embedded", kafka_faults=["2:29:4"])
    s.load(b1)
    p = s.run("--log-level", "debug")
    h.wait_until(lambda: s.ready()[0] == 200, 60, "/readyz 200")
    s.send(a, name="a")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") == len(a), 60,
                 "the first events processed")
    s.redis.call("FLUSHALL")                    # the set is gone: intake pauses
    _paused_with(s, ["exposed-card set is gone", "intake paused"])
    s.send(b, name="b")
    h.wait_until(lambda: s.metrics().get("cardwatch_consumer_lag") == len(b), 30,
                 f"lag {len(b)} while paused")
    failed = f"DEBUG source: watermarks of {cw.TXN_TOPIC} ["
    s.kafka.inject()                            # the next 4 ListOffsets fail
    h.wait_until(lambda: failed in p.log_text(), 30, "a watermark query to fail")
    assert s.metrics().get("cardwatch_consumer_lag") == len(b), "the lag moved"
    s.send(c, name="c")
    h.wait_until(lambda: s.metrics().get("cardwatch_consumer_lag") == len(b) + len(c), 30,
                 f"lag {len(b) + len(c)} once the queries are answered")
    assert s.metrics().sum("cardwatch_events_total") == len(a), "an event taken while paused"
    s.load(b1)                                  # back: everything drains
    got = h.wait_until(lambda: (lambda x: len(x) >= len(expected) and x)(s.alerts()), 60,
                       "every alert delivered")
    cw.check_alerts(got, expected)
    s.terminate(p)
    log = p.log_text()
    _no_sanitizer(log, "run")
    assert log.count(failed) == 1, "a failing watermark query logged again and again"
