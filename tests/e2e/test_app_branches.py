"""Corners of the command line and of the Kafka-side commands that the
other scenarios leave out (issue 12, branch coverage), each checked by
what the user sees: the exit status, the message, the output.

- Values the option parser must refuse that look almost right: an empty
  value, a number too large for any integer, a share written as 1e999 or
  nan, a seed with trailing letters, --topic with --input, the same
  existing file for --output and --dead-letter: exit 2, one line naming
  the option. The same device for both (/dev/null) is no usage error.
- `check` describes Redis AUTH with a user name and counts a rule file's
  rules; `gen` writes to stdout with "-"; `send`, `tail` and `gen
  --topic` name a brokers_file that is not there.
- On one Apache Kafka broker: `gen --topic` delivers every transaction it
  says it wrote (read back from the topic), refuses a topic that does not
  exist, and stops at SIGINT saying how many it wrote; `replay --from`
  after the last message finishes with nothing to do and a progress line
  at 100 %; `run` stopped by SIGINT while events wait for a paused Redis
  answers /readyz 503 "shutting down" and drains every alert.

Not here (see them): the usage-error table and --help of every command
(test_cli_errors.py), replay's edges at the ends of the topic
(test_kafka_edges.py)."""

import json
import os
import signal
import subprocess
import time

import harness as h
import cwstack as cw
from test_cli_errors import _clean, _config, _cw, _expect, _private, _table


def _two_rules(d):
    rules = d / "two.rules"
    rules.write_text("rule r1\n  severity: high\n  description: d1\n  when: exposed\n\n"
                     "rule r2\n  severity: low\n  description: d2\n  when: exposed\n")
    return rules


def test_command_line_corners_without_kafka():
    """Option values just outside what each parser accepts exit 2 naming
    the option; what is accepted does what --help says (check's AUTH line
    and rule count, gen to stdout); a missing brokers_file is named by
    every command that would connect. No Kafka or Redis is used."""
    t0 = time.monotonic()
    d = h.tmpdir("corners")
    cfg = _config(d)
    C = ["--config", cfg]
    same = d / "same.jsonl"
    same.write_text("")
    G = ["gen", "txns", *C, "--count", "3", "--output", "-"]
    cases = [
        # parse_whole: empty, and beyond what strtoll can hold
        (["run", *C, "--drain-timeout="], ["--drain-timeout needs whole seconds > 0"]),
        (["run", *C, "--drain-timeout", "9" * 25], ["--drain-timeout needs whole seconds > 0"]),
        (["replay", *C, "--input", "x", "--max-dead-letters="], ["--max-dead-letters"]),
        # parse_real: empty, out of double's range, not a number
        ([*G, "--exposed-share="], ["--exposed-share is a number from 0 to 1"]),
        ([*G, "--exposed-share", "1e999"], ["--exposed-share is a number from 0 to 1"]),
        ([*G, "--invalid-share", "nan"], ["--invalid-share is a number from 0 to 1"]),
        # gen --seed: trailing letters, beyond 64 bits
        ([*G, "--seed", "1x"], ["--seed needs a whole number >= 0"]),
        ([*G, "--seed", "9" * 25], ["--seed needs a whole number >= 0"]),
        # replay: --topic is for a topic replay; one regular file for both
        (["replay", *C, "--input", "x", "--topic", "t"],
         ["--to, --topic and --force-search go with --from, not --input"]),
        (["replay", *C, "--input", "x", "--output", same, "--dead-letter", same],
         ["--output and --dead-letter must be different files"]),
    ]
    # cpp: each analysis option just outside its range, a time that is
    # none, a range that is empty, a format it does not read, files and a
    # topic together (checked before the configuration is read)
    P = ["cpp", *C, "--frauds", d / "f.csv"]
    H = d / "h.jsonl"
    cases += [
        ([*P, "--lookback", "1.5", H], ["--lookback is whole days, 1-3660"]),
        ([*P, "--lookback", "3661", H], ["--lookback is whole days, 1-3660"]),
        ([*P, "--alpha", "0", H], ["--alpha is a number above 0, at most 0.5"]),
        ([*P, "--alpha", "0.51", H], ["--alpha is a number above 0, at most 0.5"]),
        ([*P, "--min-cases", "0", H], ["--min-cases is a whole number >= 1"]),
        ([*P, "--top", "100001", H], ["--top is a whole number, 1-100000"]),
        ([*P, "--as-of", "someday", H], ["--as-of: "]),
        ([*P, "--from", "someday"], ["--from: "]),
        ([*P, "--from", "2024-01-02", "--to", "someday"], ["--to: "]),
        ([*P, "--from", "2024-01-02", "--to", "2024-01-02"], ["--to must be after --from"]),
        ([*P, "--format", "json", H], ["--format is jsonl or protobuf"]),
        ([*P, "--from", "2024-01-01", H], ["give files or --from (a topic), not both"]),
    ]
    _table([(args, [*words, f"cardwatch {args[0]}:"]) for args, words in cases], 2)
    # ... what it accepts goes on to the configuration: without a key it
    # stops there (exit 1), so both formats and an alpha of 0.5 passed
    nokey = _config(d, name="nokey.ini")
    nokey.write_text(nokey.read_text().replace(f"key_file = {d / 'fingerprint.key'}\n",
                                               "key_file =\n"))
    K = ["cpp", "--config", nokey, "--frauds", d / "f.csv"]
    _table([([*K, *extra], ["cardwatch cpp: ", "[card] key_file is not set"])
            for extra in (["--format", "jsonl", "--alpha", "0.5", H], ["--format", "protobuf", H],
                          ["--lookback", "3660", "--min-cases", "1", "--top", "100000",
                           "--as-of", "2024-01-01", H],
                          ["--from", "2024-01-01", "--to", "2024-01-02"])], 1)

    # the same device for both outputs is allowed: the replay goes on and
    # stops at its missing input instead (exit 1, naming the input)
    missing = d / "missing.jsonl"
    rc, out, err = _cw("replay", *C, "--input", missing, "--output", "/dev/null",
                       "--dead-letter", "/dev/null", "--no-progress")
    assert rc == 1 and f"{missing}: No such file" in err and "different files" not in err, \
        (rc, err)

    # check: AUTH as the configured user; a rule file of two rules
    pw = _private(d / "redis.pw", "s3cret-not-shown\n")
    acl = _config(d, f"[rules]\npath = {_two_rules(d)}\n", name="acl.ini")
    acl.write_text(acl.read_text().replace(
        "[redis]\n", f"[redis]\nusername = cw-user\npassword_file = {pw}\n"))
    rc, out, err = _cw("check", "--config", acl)
    assert rc == 0, (rc, out, err)
    assert ", AUTH as cw-user (password from file)" in out, out
    assert "(2 rules)" in out, out
    assert "s3cret" not in out + err
    _clean("check", out + err)
    # without a user name: AUTH as "default"; one rule, singular
    one = d / "one.rules"
    one.write_text("rule r1\n  severity: high\n  description: d1\n  when: exposed\n")
    acl.write_text(acl.read_text().replace("username = cw-user\n", "")
                   .replace(str(_two_rules(d)), str(one)))
    rc, out, err = _cw("check", "--config", acl)
    assert rc == 0 and ", AUTH as default (password from file)" in out, (rc, out, err)
    assert "(1 rule)" in out, out

    # gen to stdout ("-"), cards and transactions
    rc, out, err = _cw("gen", "cards", *C, "--count", "4", "--out", "-", "--seed", "7")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == "pan,expiry" and len(lines) == 5, (rc, out, err)
    pans = [x.split(",")[0] for x in lines[1:]]
    assert len(set(pans)) == 4 and all(h.luhn_valid(p) and p.startswith("4000") for p in pans), \
        pans
    rc, out, err = _cw(*G, "--seed", "7")
    docs = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and len(docs) == 3 and "3 transactions written" in err, (rc, out, err)
    assert all(doc.get("txn_id") for doc in docs), docs

    # a brokers_file that is not there: named before anything is sent
    nb = d / "no-brokers.ini"
    nb.write_text(cfg.read_text().replace("brokers = 127.0.0.1:9",
                                          f"brokers_file = {d / 'none.txt'}"))
    inp = d / "in.jsonl"
    inp.write_text(out)
    for args in (["send", "--input", inp], ["tail", "t"],
                 ["gen", "txns", "--count", "1", "--topic", "t"]):
        _expect([*args, "--config", nb], 1, [f"cardwatch {args[0]}: ", str(d / "none.txt")],
                one_line=False, quiet_stdout=False)
    print(f"    {len(cases) + 13} command lines in {time.monotonic() - t0:.1f} s")


def test_gen_to_kafka_and_an_empty_replay():
    """One Apache Kafka broker and Redis (cwstack.Stack). `gen txns
    --topic` delivers exactly the transactions it reports (the topic holds
    them, decodable, distinct); a topic that does not exist is refused by
    name; SIGINT stops a paced gen early with the count it wrote (exit 0).
    `replay --from` a time after the last message: nothing in range, exit
    0, the final progress line at 100.0 % and 0 events."""
    t0 = time.monotonic()
    s = cw.Stack([cw.Issuer("alpha", "GB", ["400000-400099"])], partitions=2,
                 kafka_topics={"gen.out": 3, "gen.slow": 1})
    C = ["--config", s.config]
    s.kafka  # started on first use
    rc, out, err = _cw("gen", "txns", *C, "--count", "40", "--topic", "gen.out", "--seed", "3",
                       timeout=60)
    assert rc == 0 and "40 transactions written" in err, (rc, err)
    msgs = s.kafka.consume("gen.out", expect_count=40, timeout=30)
    txns = [s.schema.decode("Transaction", m.value) for m in msgs]
    assert len(msgs) == 40 and len({t["txn_id"] for t in txns}) == 40, len(msgs)

    rc, out, err = _cw("gen", "txns", *C, "--count", "1", "--topic", "no.such.topic",
                       timeout=30)
    assert rc == 1 and "no.such.topic" in err and "--topic" in err, (rc, err)
    assert "transactions written" not in err, err

    # SIGINT in the middle of a paced run: stops, says how many, exit 0
    slow = s.dir / "slow.jsonl"
    p = subprocess.Popen([h.tool("cardwatch"), "gen", "txns", *map(str, C), "--count", "1000",
                          "--rate", "20", "--output", str(slow)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    h.wait_until(lambda: slow.exists() and slow.stat().st_size > 0, timeout=20,
                 what="gen's first buffered lines")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    err = err.decode()
    written = len([json.loads(x) for x in slow.read_text().splitlines()])
    assert p.returncode == 0 and f"cardwatch gen: {written} transactions written\n" == err, \
        (p.returncode, err, written)
    assert written < 1000, written

    # a replay of a range after the last message: nothing to do
    s.load(cw.Breach("b-empty", "2024-01-01", "2024-02-01", ["pan"],
                     cw.CardMaker(11).cards(["400001"], 2)))
    report = s.dir / "empty-report.json"
    res = s.cardwatch("replay", "--from", "2099-01-01", "--progress", "--report", report,
                      check=False, timeout=60)
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 0, err
    assert "100.0%" in err and " 0 events" in err, err
    doc = json.loads(report.read_text())
    assert doc["events"] == 0 and doc["alerts"] == 0 and doc["ok"] is True, doc
    _clean("replay", err)

    # run, stopped by SIGINT while events wait for a paused Redis: /readyz
    # says it is shutting down during the drain, which then completes
    # once Redis answers: every expected alert, exit 0
    breach = cw.Breach("b-run", "2024-01-01", "2024-03-01", ["pan"],
                       cw.CardMaker(12).cards(["400001"], 3))
    s.load(breach)
    base = cw.day_ms("2024-02-01")
    txns = [cw.txn(f"sig-{i:03d}", breach.cards[i % 3], base + i * 60_000)
            for i in range(6)]
    p = s.run("--drain-timeout", "60")
    h.wait_until(lambda: s.ready()[0] == 200, timeout=30, what="run ready")
    s.redis.pause()
    try:
        s.send(txns)
        # all six taken in (none can finish while Redis is stopped): events
        # not yet fetched at SIGINT would stay for the next run, rightly
        h.wait_until(lambda: s.metrics().get("cardwatch_in_flight_events", 0) == len(txns),
                     timeout=30, what="the six events waiting for Redis")
        p.send_signal(signal.SIGINT, group=False)
        seen = []

        def shutting_down():
            seen.append(s.ready())
            return seen[-1][0] == 503 and "shutting down" in seen[-1][1]
        h.wait_until(shutting_down, timeout=10, what="/readyz: shutting down")
    finally:
        s.redis.resume()
    rc = p.wait(60)
    log = p.log_text()
    assert rc == 0 and "SIGINT" in log, (rc, log[-3000:])
    _clean("run", log)
    exp = cw.expected_alerts(txns, [breach], s.issuers)
    assert len(exp) == 6, exp
    cw.check_alerts(s.alerts(), exp)
    print(f"    gen, replay and run on Kafka in {time.monotonic() - t0:.1f} s")
