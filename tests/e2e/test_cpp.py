"""`cardwatch cpp`: common-point-of-purchase analysis on a simulated year
(`cardwatch gen history`): the injected merchant ranks first with its
window, the suspected breach's cards are exactly those that used it in the
window and load as a suspected breach into a real Redis; no suspect
without a breach; the same ranking from a file, from the topic and from
the feed's confirmed_fraud outcomes; errors that name the place."""
import csv
import datetime
import json

import harness as h
import cwstack as cw

DAY = 86_400_000
# a simulated year small enough for a test, large enough for ~90 skimmed
# cards and ~45 of them defrauded (seed 7: M000551, 2024-04-01..05-30)
SIM = ["--count", "300000", "--cards", "5000", "--merchants", "1000", "--seed", "7"]


def _ms(text):
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _day(text):
    return _ms(text + "T00:00:00Z") // DAY


# no breach: half the size does (only the absence of a suspect is checked)
QUIET = ["--count", "150000", "--cards", "2500", "--merchants", "500", "--seed", "7"]


def _gen(s, name, *extra, sim=SIM):
    hist, frauds, truth = (s.dir / f"{name}.jsonl", s.dir / f"{name}-frauds.csv",
                           s.dir / f"{name}-truth.json")
    res = h.run_tool([h.tool("cardwatch"), "gen", "history", "--config", s.config, *sim, *extra,
                      "--format", "json", "--output", hist, "--frauds", frauds,
                      "--truth", truth], check=False)
    assert res.returncode == 0, res.stderr.decode()
    return hist, frauds, json.loads(truth.read_text())


def _cpp(s, *args, rc=0):
    res = s.cardwatch("cpp", *args, check=False)
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == rc, (res.returncode, out, err)
    assert not h.text_card_numbers(out + err), "a card number in cpp's output"
    return out, err


def _suspects(report):
    return [(x["merchant"], x["cases"], x["cards"], x["significant"], x["window_start"],
             x["window_end"]) for x in json.loads(report.read_text())["suspects"]]


def test_cpp_finds_the_injected_breach_and_monitors_it():
    s = cw.Stack(cw.three_issuers(), partitions=4)
    hist, frauds, truth = _gen(s, "year")
    m = truth["merchant"]
    rep, emit = s.dir / "cpp.json", s.dir / "suspected.csv"
    out, err = _cpp(s, "--frauds", frauds, "--report", rep, "--emit-breach", emit, hist)
    doc = json.loads(rep.read_text())
    top = doc["suspects"][0]
    assert top["merchant"] == m and top["significant"], (truth, out)
    assert not any(x["significant"] for x in doc["suspects"][1:]), out
    # the estimate within a few days of the truth
    d0, d1 = _day(top["window_start"]), _day(top["window_end"])
    t0, t1 = _day(truth["window_start"]), _day(truth["window_end"])
    assert abs(d0 - t0) <= 7 and abs(d1 - t1) <= 7, (top, truth)
    assert f"  1  {m} " in out and " yes " in out, out
    print(f"    {m}: {top['cases']} cases of {doc['cases']}, p {top['p_corrected']:.1e}; window "
          f"{top['window_start']}..{top['window_end']} (truth {truth['window_start']}.."
          f"{truth['window_end']})")

    # the suspected breach: exactly the cards that used m inside the window
    want = set()
    lo, hi = d0 * DAY, (d1 + 1) * DAY
    with open(hist) as f:
        for line in f:
            t = json.loads(line)
            if t["merchant_id"] == m and lo <= t["event_time_ms"] < hi:
                want.add(cw.fingerprint(t["pan"]))
    rows = [r for r in emit.read_text().splitlines()[1:] if not r.startswith("#")]
    assert set(rows) == want and len(rows) == len(want), (len(rows), len(want))
    assert emit.read_text().startswith("fingerprint\n")
    assert "cardwatch load --suspected" in out, out

    # ... loads as a suspected breach and is monitored
    s.cardwatch("load", "--suspected", "--breach", "cpp-suspect", "--window-start",
                top["window_start"], "--window-end", top["window_end"], "--elements", "pan", emit)
    listed = [json.loads(x) for x in s.cardwatch("breaches", "--json").stdout.decode().splitlines()]
    b = [x for x in listed if x["breach_id"] == "cpp-suspect"]
    assert b and b[0]["suspected"] is True and b[0]["cards"] == len(want), listed

    # the same ranking from the topic (by message timestamp) ...
    rep_topic = s.dir / "cpp-topic.json"
    s.cardwatch("send", "--input", hist, "--topic", cw.TXN_TOPIC, timeout=180)
    # two messages that are no transaction (stamped now, inside --to):
    # skipped, named by topic/partition/offset, counted in the report
    s.kafka.produce(cw.TXN_TOPIC, [(b"x", b"\xff\xfe not protobuf"),
                                   (b"y", b"\x0a\xff\x01abc")], partition=0)
    out, err = _cpp(s, "--frauds", frauds, "--report", rep_topic, "--from", "2023-01-01",
                    "--to", "2100-01-01")
    assert _suspects(rep_topic) == _suspects(rep)
    bad = [x for x in err.splitlines() if f"cpp: {cw.TXN_TOPIC}/0/" in x]
    assert len(bad) == 2 and all(": skipped: undecodable" in x for x in bad), err
    assert json.loads(rep_topic.read_text())["invalid_records"] == 2
    assert "2 invalid record(s) skipped" in err, err

    # ... and from the feed's confirmed_fraud outcomes: each defrauded card
    # an alert with that outcome at its first fraud; other outcomes and
    # another key's cards are left out
    r = s.redis.client()
    with open(frauds) as f:
        for i, row in enumerate(csv.DictReader(f)):
            alert = {"alert_id": f"a{i}", "card_fingerprint": cw.fingerprint(row["pan"]),
                     "event_time_ms": _ms(row["first_fraud"])}
            r.call("HSET", f"cw:alert:a{i}", "issuer", "alpha", "alert", json.dumps(alert),
                   "outcome", "confirmed_fraud")
    noise = {"alert_id": "n1", "card_fingerprint": cw.fingerprint(row["pan"]),
             "event_time_ms": 1}
    r.call("HSET", "cw:alert:n1", "alert", json.dumps(noise), "outcome", "legitimate")
    other = dict(noise, card_fingerprint="other-key:" + "ab" * 16)
    r.call("HSET", "cw:alert:n2", "alert", json.dumps(other), "outcome", "confirmed_fraud")
    # a confirmed fraud that began after --as-of: left out, counted
    late = dict(noise, alert_id="n3", event_time_ms=_ms("2030-01-01T00:00:00Z"))
    r.call("HSET", "cw:alert:n3", "alert", json.dumps(late), "outcome", "confirmed_fraud")
    rep_feed = s.dir / "cpp-feed.json"
    out, err = _cpp(s, "--from-feed", "--as-of", "2029-01-01", "--report", rep_feed, hist)
    assert _suspects(rep_feed) == _suspects(rep)
    assert "first fraud on or after --as-of, left out: 1)" in err, err
    assert "1 confirmed_fraud alert(s) in the feed name a card under another key id" in err, err

    # --as-of: before the first linked fraud nothing points at m
    first = datetime.datetime.fromtimestamp(truth["first_linked_fraud_ms"] / 1000,
                                            datetime.timezone.utc).strftime("%Y-%m-%d")
    rep_early = s.dir / "cpp-early.json"
    _cpp(s, "--frauds", frauds, "--as-of", first, "--report", rep_early, hist)
    assert not any(x[3] for x in _suspects(rep_early))


def test_cpp_without_a_breach_and_its_errors():
    s = cw.Stack(cw.three_issuers(), partitions=1)
    hist, frauds, truth = _gen(s, "quiet", "--no-breach", sim=QUIET)
    assert truth["merchant"] is None
    emit, rep = s.dir / "none.csv", s.dir / "none.json"
    out, err = _cpp(s, "--frauds", frauds, "--report", rep, "--emit-breach", emit, hist, rc=1)
    doc = json.loads(rep.read_text())
    assert doc["cases"] > 10 and not any(x["significant"] for x in doc["suspects"]), doc
    assert "no merchant is significant" in out and "no significant suspect" in err, (out, err)
    assert not emit.exists()

    # a bad first_fraud is reported by line and skipped; the rest counts
    lines = frauds.read_text().splitlines()
    bad = s.dir / "bad.csv"
    bad.write_text("\n".join(lines[:2] + [lines[2].split(",")[0] + ",yesterday"] + lines[3:]) + "\n")
    out, err = _cpp(s, "--frauds", bad, hist)
    assert "bad.csv:3: rejected: first_fraud" in err and "rejected 1" in err, err

    # fingerprints under another key can never match: refused by line
    fp = s.dir / "fp.csv"
    fp.write_text("fingerprint,first_fraud\n" + cw.fingerprint(lines[1].split(",")[0])
                  + ",2024-05-01\nother:" + "cd" * 16 + ",2024-05-02\n")
    out, err = _cpp(s, "--frauds", fp, hist, rc=1)
    assert "fp.csv:3: fingerprint under key id 'other'" in err and cw.KEY_ID in err, err

    # usage errors name the option
    for args, word in ((["--frauds", frauds], "give the history"),
                       ([hist], "--frauds FILE or --from-feed"),
                       (["--frauds", frauds, "--lookback", "0", hist], "--lookback"),
                       (["--frauds", frauds, "--emit-breach", emit, "-"], "twice"),
                       (["--frauds", frauds, "--to", "2024-01-01", hist], "--from")):
        out, err = _cpp(s, *args, rc=2)
        assert word in err, (args, err)
    out, err = _cpp(s, "--frauds", s.dir / "missing.csv", hist, rc=1)
    assert "missing.csv" in err, err


def _small_world(d, n_cases=250, n_background=12000, n_skimmed=350):
    """A history (JSON lines) where n_cases compromised cards and
    n_skimmed others all used BREACH on 2024-03-01, a month before the
    first frauds, among n_background cards that each bought once
    elsewhere: BREACH's p lies far below 1e-300. Returns (history lines,
    frauds CSV path)."""
    mk = cw.CardMaker(11)
    t0 = _ms("2024-03-01T10:00:00Z")
    cases, rest = mk.cards("400000", n_cases), mk.cards("400001", n_background)
    lines = [json.dumps(cw.txn(f"c{i}", p, t0 + i, merchant_id="BREACH"))
             for i, p in enumerate(cases + mk.cards("400003", n_skimmed))]
    lines += [json.dumps(cw.txn(f"b{i}", p, t0 + i, merchant_id=f"bg-{i % 400:03d}"))
              for i, p in enumerate(rest)]
    frauds = d / "frauds.csv"
    frauds.write_text("pan,first_fraud\n" + "".join(f"{p},2024-04-01\n" for p in cases)
                      # a first fraud before 1970 (epoch ms 0): refused by line
                      + f"{rest[0]},0\n")
    return lines, frauds


def test_cpp_from_files_warnings_outputs_and_signal():
    """Without Kafka or Redis: invalid history records skipped, named by
    file:line and counted (the first ten logged); a protobuf file cut
    short stops the run naming the record; a frauds row at epoch 0
    refused by line; a p below 1e-300 printed as such; reports that
    cannot be written named, nothing half-written; --emit-breach without
    a suspect; the progress line on a pipe; SIGINT mid-run: 130, no
    report."""
    import os
    import signal
    import subprocess
    import threading
    from test_cli_errors import _config, _cw
    d = h.tmpdir("cpp-files")
    cfg = _config(d)
    lines, frauds = _small_world(d)
    good = lines[:]
    # twelve records that are no transaction: ten logged, all counted
    for i in range(6):
        lines.insert(10 + i * 7, "{not json")
        lines.insert(20 + i * 7, json.dumps(cw.txn(f"x{i}", cw.luhn_break(
            cw.CardMaker(i).card("400002")), _ms("2024-03-01T00:00:00Z"))))
    bad_at = [n + 1 for n, x in enumerate(lines) if x.startswith("{not") or '"txn_id": "x' in x]
    hist = d / "hist.jsonl"
    hist.write_text("\n".join(lines) + "\n")
    rep = d / "rep.json"
    rc, out, err = _cw("cpp", "--config", cfg, "--frauds", frauds, "--report", rep,
                       "--progress", hist)
    assert rc == 0, (rc, out, err)
    assert not h.text_card_numbers(out + err)
    skipped = [x for x in err.splitlines() if ": skipped: " in x]
    assert len(skipped) == 10 and skipped[-1].endswith(" (no more are logged)"), err
    assert [int(x.split(f"{hist}:")[1].split(":")[0]) for x in skipped] == bad_at[:10], \
        (bad_at, skipped)
    assert "12 invalid record(s) skipped" in err, err
    assert f"{frauds}:252: rejected: first_fraud is not after 1970" in err, err
    doc = json.loads(rep.read_text())
    assert doc["invalid_records"] == 12 and doc["cases"] == 250, doc
    assert doc["suspects"][0]["cases"] == 250 and doc["suspects"][0]["cards"] > 590, doc
    assert doc["cases_rejected"] == 1 and doc["transactions"] == len(good), doc
    assert doc["suspects"][0]["merchant"] == "BREACH" and doc["suspects"][0]["significant"]
    row = next(x for x in out.splitlines() if "BREACH" in x)
    assert " <1e-300 " in row, out
    # the progress line: pass 1, every transaction, all of the input
    assert f"cpp: pass 1: {len(lines)} transactions, 100.0% of the input" in err, err

    # a protobuf history cut inside its last record: the reader's error,
    # naming the file and the record, and exit 1 with no result
    pb = d / "cut.pb"
    rc, out, err = _cw("gen", "txns", "--config", cfg, "--count", "5", "--format", "protobuf",
                       "--output", pb)
    assert rc == 0, err
    pb.write_bytes(pb.read_bytes()[:-3])
    rc, out, err = _cw("cpp", "--config", cfg, "--frauds", frauds, "--report", rep, pb)
    assert rc == 1 and f"{pb}: record 5 at byte " in err and "truncated record" in err, \
        (rc, err)
    assert "no merchant" not in out and "rank" not in out, out

    # reports that cannot be written: a directory in the way (rename
    # fails), a directory that is not there, a path too long; each named,
    # exit 1, no temporary file left behind
    out_dir = d / "out"
    out_dir.mkdir()
    (out_dir / "adir").mkdir()
    long_html = str(out_dir / ("z" * 4090))
    for args, words in (
            (["--report", out_dir / "adir", "--report-html", out_dir / "none" / "r.html"],
             [f"{out_dir / 'adir'}: cannot write: ",
              f"{out_dir / 'none' / 'r.html'}.partial: open: No such file"]),
            (["--report-html", out_dir / "adir"], [f"{out_dir / 'adir'}: rename: "]),
            # (the log line is cut before the reason: the path fills it)
            (["--report-html", long_html], [f"ERROR cpp: {long_html[:300]}"]),
            (["--emit-breach", out_dir / "none" / "e.csv"],
             [f"{out_dir / 'none' / 'e.csv'}.tmp: No such file"]),
            (["--emit-breach", out_dir / "e.csv", "--min-cases", "1000"],
             ["--emit-breach: no suspect; nothing written"])):
        rc, out, err = _cw("cpp", "--config", cfg, "--frauds", frauds, *args, hist)
        assert rc == 1 and all(w in err for w in words), (args, rc, err)
        assert "BREACH" in out or "no merchant was used by 1000" in out, out
        assert sorted(os.listdir(out_dir)) == ["adir"], os.listdir(out_dir)
        assert os.listdir(out_dir / "adir") == []

    # --emit-breach: all 600 cards that used BREACH that day (more than
    # the fingerprint set first holds), sorted, under the key's id
    emit = d / "emit.csv"
    rc, out, err = _cw("cpp", "--config", cfg, "--frauds", frauds, "--emit-breach", emit, hist)
    rows = emit.read_text().splitlines()
    assert rc == 0 and rows[0] == "fingerprint" and rows[1].startswith("# "), (rc, err)
    assert len(rows[2:]) == len(set(rows[2:])) == 600 and rows[2:] == sorted(rows[2:]), \
        len(rows)
    assert set(rows[2:]) == {cw.fingerprint(json.loads(x)["pan"]) for x in good
                             if '"BREACH"' in x}
    assert "suspected breach: 600 cards that used BREACH from 2024-03-01 to 2024-03-01" in out

    # SIGINT while it reads a history that keeps coming on stdin: once the
    # progress line shows it reading, the signal stops it with 130 and no
    # report (no percentage: the size of a pipe is not known)
    log = d / "sigint.err"
    rep2 = d / "never.json"
    with open(log, "wb") as ef:
        p = subprocess.Popen([h.tool("cardwatch"), "cpp", "--config", str(cfg), "--frauds",
                              str(frauds), "--report", str(rep2), "--progress", "-"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=ef,
                             start_new_session=True)
    chunk = ("\n".join(good) + "\n").encode()

    def feed():
        try:
            while p.poll() is None:
                p.stdin.write(chunk)
        except (BrokenPipeError, ValueError, OSError):
            pass
    th = threading.Thread(target=feed, daemon=True)
    th.start()
    try:
        h.wait_until(lambda: "cpp: pass 1: " in log.read_text(errors="replace"), timeout=10,
                     what="the progress line of cpp reading stdin")
        assert p.poll() is None and not rep2.exists()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        th.join(timeout=5)
        try:
            p.stdin.close()
        except OSError:
            pass
    err = log.read_text(errors="replace")
    assert rc == 130 and "stopped by signal 2; no result" in err, (rc, err)
    assert "% of the input" not in err and not rep2.exists(), err
