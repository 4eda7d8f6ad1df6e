"""The command line's error paths: what someone who mistypes a command sees.

- `cardwatch --help` and every command's `--help` exit 0 and are complete:
  they name every option the command accepts (read from the optdef tables
  of processor/main.c and cli*.c, so help and parser cannot drift apart)
  and nothing it does not accept. No line of any help (a subcommand's
  too) is wider than an 80-column terminal.
- A usage error - an unknown or ambiguous option, an option without its
  value, a value that is not one, a stray argument - exits 2 with exactly
  one line on stderr that names the option or the argument.
- A bad value found once the command starts (a breach id, a date, a list
  file, an output that cannot be written, a configuration) exits 1 with a
  message naming the option or the file.
- A fingerprint key file that is missing, not a regular file, readable by
  others, malformed or too large stops every command that reads it with
  exit 1, naming the file (and the line for a malformed key), never
  echoing the key.
- The admin HTTP endpoint answers what it does not serve with 404/405,
  an oversized request with 400/413, and listens on an IPv6 address
  written the way the configuration demands ([::1]:port).
None of these needs Kafka or Redis: the configuration points both at a
closed port. Only the last scenario starts one Apache Kafka broker: a
topic whose max.message.bytes is below the message size refuses every
delivery, and `send` and `gen --topic` must say so with exit 1; `tail`
skips a message that is no alert and says where it was.
No message holds a card number or key material."""

import json
import os
import re
import signal
import socket
import subprocess
import time

import harness as h
import cwstack as cw

CLOSED = "127.0.0.1:9"       # nothing listens on the discard port
BAD_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation",
             "core dumped", "Aborted")


# --------------------------------------------------------------------------
# helpers

def _private(path, data, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data if isinstance(data, bytes) else data.encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


def _config(d, extra="", key=None, name="cw.ini", brokers=CLOSED, http=""):
    """A valid configuration with Kafka and Redis on a closed port (a
    command that connects gives up after [kafka] connect_timeout_s = 1)."""
    if key is None:
        key = d / "fingerprint.key"
        if not key.exists():
            _private(key, f"{cw.KEY_ID} {cw.KEY_HEX}\n")
    path = d / name
    path.write_text("[kafka]\n"
                    f"brokers = {brokers}\n"
                    "connect_timeout_s = 1\n"
                    "session_timeout_ms = 6000\n"
                    "[redis]\n"
                    f"address = {CLOSED}\n"
                    "[card]\n"
                    f"key_file = {key}\n"
                    "[http]\n"
                    f"listen = {http}\n"
                    "[issuer alpha]\n"
                    "home_country = GB\n"
                    "bins = 400000-400099\n" + extra)
    return path


def _cw(*args, env=None, cwd=None, timeout=15):
    """Runs cardwatch to completion (no $CARDWATCH_CONFIG unless env has
    it); returns (exit status, stdout, stderr)."""
    full_env = dict(os.environ)
    full_env.pop("CARDWATCH_CONFIG", None)
    full_env.update(env or {})
    p = subprocess.Popen([h.tool("cardwatch"), *map(str, args)], env=full_env, cwd=cwd,
                         stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"cardwatch {' '.join(map(str, args))}: still running after "
                             f"{timeout} s; stderr so far:\n{err.decode(errors='replace')}")
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _clean(what, text):
    """No sanitizer report, no card number, no key material."""
    for bad in BAD_WORDS:
        assert bad not in text, f"{what}: {bad}:\n{text}"
    assert not h.text_card_numbers(text), f"{what}: a card number in:\n{text}"
    assert cw.KEY_HEX[:16] not in text, f"{what}: key material in:\n{text}"


def _expect(args, rc, words, one_line=True, quiet_stdout=True, **kw):
    """Runs one case; asserts the exact exit status, that stderr holds
    every word (and is one line), that stdout is empty."""
    got, out, err = _cw(*args, **kw)
    what = "cardwatch " + " ".join(map(str, args))
    assert got == rc, f"{what}: exit {got} (want {rc}; negative = signal)\n{err}"
    _clean(what, out + err)
    lines = [x for x in err.splitlines() if x.strip()]
    if one_line:
        assert len(lines) == 1, f"{what}: want one line on stderr, got {len(lines)}:\n{err}"
    for w in words:
        assert w in err, f"{what}: {w!r} not in:\n{err}"
    if quiet_stdout:
        assert out == "", f"{what}: stdout not empty:\n{out}"
    return out, err


def _table(cases, rc, **kw):
    """_expect() for every (args, words) row; fails once, listing every
    row that failed."""
    problems = []
    for args, words in cases:
        try:
            _expect(args, rc, words, **kw)
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, f"{len(problems)} of {len(cases)} cases failed:\n\n" + \
        "\n\n".join(problems)


def _cli_sources():
    """processor/main.c (the command table) and processor/cli*.c (the
    commands and the shared option parser), as one text."""
    files = [h.REPO / "processor" / "main.c",
             *sorted((h.REPO / "processor").glob("cli*.c"))]
    return "\n".join(f.read_text() for f in files)


FUNC = r"^(?:static )?[a-z][\w ]*?\b(\w+)\([^;{]*?\)\n\{(.*?)^\}"


def _commands():
    """({command: (its own long options, whether it takes the common
    ones)}, the common options), read from main()'s command table, the
    optdef rows of each cmd_X and of the functions it calls (the option
    parsing of a command may be a function of its own), and those of
    cli_parse_opts."""
    src = _cli_sources()
    names = re.findall(r'\{"(\w+)", cmd_(\w+), 1\}', src)
    assert len(names) >= 12, names
    funcs = {m.group(1): m.group(2) for m in re.finditer(FUNC, src, re.S | re.M)}
    assert "cli_parse_opts" in funcs, sorted(funcs)

    def reach(fn, seen):
        """fn's body and those of the functions it calls, but not the
        common parser's."""
        seen.add(fn)
        text = funcs[fn]
        for callee in re.findall(r"\b(\w+)\(", funcs[fn]):
            if callee in funcs and callee not in seen and callee != "cli_parse_opts":
                text += reach(callee, seen)
        return text

    row = r'\{"([a-z][a-z-]*)", (?:required|no)_argument'
    own = {}
    for name, fn in names:
        assert "cmd_" + fn in funcs, f"cmd_{fn} not found in processor/cli*.c"
        body = reach("cmd_" + fn, set())
        own[name] = (set(re.findall(row, body)), "cli_parse_opts(" in body)
    common = set(re.findall(row, funcs["cli_parse_opts"]))
    assert {"config", "help", "log-level"} <= common, common
    return own, common


# The rules help is its own text (rules check takes no option): it names
# --config but not the other common options `rules test` also accepts.
HELP_GAPS = {"rules": {"brokers", "redis", "group", "log-level", "log-format", "help"}}


# --------------------------------------------------------------------------
# 1. --help

def test_help_of_every_command_is_complete():
    """`cardwatch --help` lists every command; `cardwatch CMD --help`
    prints to stdout, exits 0 and names every option CMD accepts and no
    other; no command, an unknown one: the usage on stderr and exit 2."""
    t0 = time.monotonic()
    own, common = _commands()
    for args in (["--help"], ["-h"], ["help"]):
        rc, out, err = _cw(*args)
        assert rc == 0 and err == "" and out.startswith("cardwatch "), (args, rc, err)
        for name in own:
            assert re.search(rf"^  {name} ", out, re.M), f"{name} missing from --help:\n{out}"
        assert re.search(r"^  version ", out, re.M), out
        main_usage = out
    for args in (["version"], ["--version"]):
        rc, out, err = _cw(*args)
        assert rc == 0 and re.fullmatch(r"cardwatch \d+\.\d+\.\d+\n", out), (rc, out, err)
    rc, out, err = _cw()
    assert rc == 2 and out == "" and err == main_usage, (rc, out, err)
    rc, out, err = _cw("frobnicate")
    assert rc == 2 and out == "" and err.startswith("cardwatch: unknown command 'frobnicate'\n"), \
        (rc, err)
    problems = []
    for name, (opts, parses) in sorted(own.items()):
        rc, out, err = _cw(name, "--help")
        if rc != 0 or err or not out.startswith(f"usage: cardwatch {name}"):
            problems.append(f"{name} --help: exit {rc}, stderr {err!r}, stdout {out[:60]!r}")
            continue
        shown = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*[a-z])", out))
        accepted = opts | (common if parses else set())
        want = accepted - HELP_GAPS.get(name, set())
        if want - shown:
            problems.append(f"{name} --help does not name --{', --'.join(sorted(want - shown))}")
        if shown - accepted:
            problems.append(f"{name} --help names --{', --'.join(sorted(shown - accepted))}, "
                            "which it does not accept")
    assert not problems, "\n".join(problems)
    print(f"    help of {len(own)} commands checked in {time.monotonic() - t0:.1f} s")


HELP_WIDTH = 80


def test_every_help_fits_in_80_columns():
    """No line that `cardwatch --help`, `cardwatch CMD --help` or
    `cardwatch CMD SUB --help` prints is wider than 80 columns (an
    operator's terminal; the man page is made from these texts). SUB:
    the subcommands a command's usage names ("cardwatch gen txns ...")."""
    t0 = time.monotonic()
    own, _ = _commands()
    runs = [["--help"], ["version", "--help"]]
    for name in sorted(own):
        runs.append([name, "--help"])
        _, out, _ = _cw(name, "--help")
        subs = re.findall(rf"^(?:usage:)? +cardwatch {name} ([a-z]+)\b", out, re.M)
        runs += [[name, sub, "--help"] for sub in dict.fromkeys(subs)]
    assert ["gen", "txns", "--help"] in runs and ["rules", "test", "--help"] in runs, runs
    problems = []
    for args in runs:
        rc, out, err = _cw(*args)
        if len(args) == 3:  # a subcommand's --help is its command's help
            assert rc == 0 and out.startswith(f"usage: cardwatch {args[0]} "), \
                f"cardwatch {' '.join(args)}: exit {rc}, stdout {out[:200]!r}"
        for stream, text in (("stdout", out), ("stderr", err)):
            for no, line in enumerate(text.splitlines(), 1):
                if len(line) > HELP_WIDTH:
                    problems.append(f"cardwatch {' '.join(args)}: {stream} line {no} has "
                                    f"{len(line)} columns:\n{line}")
    assert not problems, f"{len(problems)} help lines wider than {HELP_WIDTH} columns:\n" + \
        "\n".join(problems)
    print(f"    {len(runs)} help texts checked in {time.monotonic() - t0:.1f} s")


# --------------------------------------------------------------------------
# 2. usage errors: exit 2, one line naming the option

def test_usage_errors_exit_2_with_one_line_naming_the_option():
    """Every command: an unknown, ambiguous or value-less option, a value
    that is not one, a missing or stray argument: exit 2 before anything
    is read or connected, one line on stderr naming what was wrong."""
    t0 = time.monotonic()
    d = h.tmpdir("usage")
    C = ["--config", _config(d)]
    (d / "in.jsonl").write_text("{}\n")
    rules = d / "r.rules"
    rules.write_text("rule r\n  severity: high\n  description: d\n  when: exposed\n")
    cases = [
        # parse_opts, the same for every command
        (["run", *C, "--bogus"], ["unknown option '--bogus'", "cardwatch run --help"]),
        (["run", *C, "-x"], ["unknown option '-x'"]),
        (["run", *C, "--drain-timeout"], ["'--drain-timeout'", "value"]),
        (["run", *C, "--exit-at-end=yes"], ["'--exit-at-end'", "no value"]),
        (["replay", *C, "--max-dead", "3"], ["ambiguous", "'--max-dead'"]),
        (["check", *C, "--log-level", "loud"], ["--log-level", "debug, info, warn or error"]),
        (["check", *C, "--redis", "no-port"], ["--redis", "host:port"]),
        (["tail", *C, "t", "--group", ""], ["--group"]),
        (["load", *C, "--config"], ["'--config'", "value"]),
        # run
        (["run", *C, "--drain-timeout", "0"], ["--drain-timeout"]),
        (["run", *C, "--drain-timeout", "5x"], ["--drain-timeout"]),
        (["run", *C, "--drain-timeout", "99999999999"], ["--drain-timeout"]),
        (["run", *C, "now"], ["unexpected argument 'now'"]),
        # replay
        (["replay", *C], ["--from", "--input"]),
        (["replay", *C, "--input", "x", "--from", "2024-01-01"], ["--from", "--input"]),
        (["replay", *C, "--input", "x", "--to", "2024-01-01"], ["--to"]),
        (["replay", *C, "--input", "x", "--force-search"], ["--force-search"]),
        (["replay", *C, "--from", "2024-01-01", "--format", "jsonl"], ["--format"]),
        (["replay", *C, "--from", "yesterday"], ["--from", "yesterday"]),
        (["replay", *C, "--from", "2024-01-01", "--to", "2024-13-01"], ["--to"]),
        (["replay", *C, "--from", "2024-02-01", "--to", "2024-01-01"], ["--to", "--from"]),
        (["replay", *C, "--input", "x", "--format", "xml"], ["--format"]),
        (["replay", *C, "--input", "x", "--deliver", "--output", "o"], ["--deliver", "--output"]),
        (["replay", *C, "--input", "x", "--breach", "no spaces"], ["--breach"]),
        (["replay", *C, "--input", "x", "--output", d / "o", "--dead-letter", d / "o"],
         ["--output", "--dead-letter"]),
        (["replay", *C, "--input", "x", "--max-dead-letters", "-1"], ["--max-dead-letters"]),
        (["replay", *C, "--input", "x", "--max-dead-letters", "ten"], ["--max-dead-letters"]),
        (["replay", *C, "--input", "x", "--max-dead-letter-percent", "0"],
         ["--max-dead-letter-percent"]),
        (["replay", *C, "--input", "x", "--max-dead-letter-percent", "101"],
         ["--max-dead-letter-percent"]),
        (["replay", *C, "--input", "x", "later"], ["unexpected argument 'later'"]),
        # load, breaches, unload
        (["load", *C], ["list file"]),
        (["load", *C, "a.csv", "b.csv"], ["list file"]),
        (["breaches", *C, "shop-2024"], ["unexpected argument 'shop-2024'"]),
        (["unload", *C], ["breach id"]),
        (["unload", *C, "a", "b"], ["breach id"]),
        # gen
        (["gen", "foo"], ["'cards', 'txns' or 'history'"]),
        (["gen", "txns", *C, "--bogus"], ["unknown option '--bogus'"]),
        (["gen", "cards", *C, "--out", d / "x"], ["--count"]),
        (["gen", "cards", *C, "--count", "0", "--out", d / "x"], ["--count"]),
        (["gen", "cards", *C, "--count", "5x", "--out", d / "x"], ["--count"]),
        (["gen", "cards", *C, "--count", "3"], ["--out"]),
        (["gen", "cards", *C, "--count", "3", "--out", d / "x", "--seed", "abc"], ["--seed"]),
        (["gen", "cards", *C, "--count", "3", "--out", d / "x", "--seed", "-1"], ["--seed"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--exposed-share", "2"],
         ["--exposed-share"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--exposed-share", "abc"],
         ["--exposed-share"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--invalid-share", "-0.5"],
         ["--invalid-share"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--days", "a week"], ["--days"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--days", "-1"], ["--days"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--rate", "fast"], ["--rate"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--start", "2024-02-30"],
         ["--start"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--format", "xml"], ["--format"]),
        (["gen", "txns", *C, "--count", "3"], ["--output", "--topic"]),
        (["gen", "txns", *C, "--count", "3", "--output", "-", "--topic", "t"],
         ["--output", "--topic"]),
        # send, tail
        (["send", *C], ["--input"]),
        (["send", *C, "--input", "x", "--key", "pan"], ["--key"]),
        (["tail", *C], ["one topic"]),
        (["tail", *C, "a", "b"], ["one topic"]),
        # rules
        (["rules", "lint"], ["'check' or 'test'"]),
        (["rules", "check"], ["rule file"]),
        (["rules", "test", "--input", d / "in.jsonl"], ["rule file", "--input"]),
        (["rules", "test", rules], ["--input"]),
        (["rules", "test", rules, "--input", d / "in.jsonl", "--bogus"],
         ["unknown option '--bogus'", "cardwatch rules --help"]),
        # feed, token, check
        (["feed", *C, "now"], ["unexpected argument 'now'"]),
        (["feed", *C, "--listen"], ["'--listen'", "value"]),
        (["token", "x"], ["takes no arguments"]),
        (["check", *C, "again"], ["unexpected argument 'again'"]),
    ]
    _table([(args, [*words, f"cardwatch {args[0]}:"]) for args, words in cases], 2)
    # without a command word: the usage (gen prints it to stdout, rules
    # to stderr; both exit 2)
    rc, out, err = _cw("gen")
    assert rc == 2 and out.startswith("usage: cardwatch gen"), (rc, out, err)
    rc, out, err = _cw("rules")
    assert rc == 2 and err.startswith("usage: cardwatch rules"), (rc, out, err)
    print(f"    {len(cases) + 2} usage errors in {time.monotonic() - t0:.1f} s")


# --------------------------------------------------------------------------
# 3. errors found once the command runs: exit 1, naming the option or file

def test_bad_values_and_files_found_at_start_exit_1_naming_them():
    """What the option parser cannot know - a breach id, a date, a list,
    input or output file, the configuration to use, a librdkafka property -
    stops the command with exit 1 and a message naming it, before Kafka
    or Redis is waited for (both are a closed port here)."""
    t0 = time.monotonic()
    d = h.tmpdir("start")
    cfg = _config(d)
    C = ["--config", cfg]
    rules = d / "r.rules"
    rules.write_text("rule r\n  severity: high\n  description: d\n  when: exposed\n")
    inp = d / "in.jsonl"
    inp.write_text('{"txn_id":"t1"}\n')
    narrow = _config(d, name="narrow.ini")   # one 8-digit BIN: 10^7 cards
    narrow.write_text(narrow.read_text().replace("bins = 400000-400099", "bins = 40000001"))
    load = ["load", *C, "--breach", "b1", "--window-start", "2024-01-01",
            "--window-end", "2024-02-01", "--elements", "pan,expiry"]
    missing = d / "missing.csv"
    lst = d / "l.csv"
    lst.write_text("pan\n")
    cases = [
        # configuration: which file, and its problems
        (["check", "--config", d / "none.ini"], [f"{d / 'none.ini'}", "No such file"]),
        # load: values checked before Redis is waited for
        ([*load[:4], "no spaces", *load[5:], lst], ["--breach"]),
        ([*load[:6], "2024-13-01", *load[7:], lst], ["--window-start"]),
        ([*load[:8], "2023-12-31", *load[9:], lst], ["--window-end"]),
        ([*load[:8], "2024-02-30", *load[9:], lst], ["--window-end: give a date YYYY-MM-DD"]),
        ([*load[:10], "pan,iban", lst], ["--elements", "iban"]),
        ([*load[:10], "expiry", lst], ["--elements", "pan"]),
        ([*load, "--description", "x" * 2000, lst], ["--description"]),
        ([*load, missing], [str(missing), "No such file"]),
        ([*load, d], [str(d), "directory"]),
        # send: its input before Kafka
        (["send", *C, "--input", missing], [str(missing), "No such file"]),
        # feed
        (["feed", *C], ["[feed] listen", "--listen"]),
        (["feed", *C, "--listen", "no-port"], ["--listen", "host:port"]),
        # rules test
        (["rules", "test", d / "none.rules", "--input", inp], [str(d / "none.rules")]),
        (["rules", "test", rules, "--input", missing], [str(missing), "No such file"]),
        (["rules", "test", rules, "--input", inp, "--window-start", "2024-13-01"],
         ["--window-start"]),
        (["rules", "test", rules, "--input", inp, "--window-end", "soon"], ["--window-end"]),
        (["rules", "test", rules, "--input", inp, "--elements", "pan,iban"],
         ["--elements", "iban"]),
        (["rules", "test", rules, "--input", inp, "--exposed", missing], [str(missing)]),
        (["rules", "test", rules, "--input", inp, "--config", d / "none.ini"],
         [str(d / "none.ini")]),
        # gen: the list, the output, the BIN space
        (["gen", "txns", *C, "--count", "3", "--exposed", missing, "--output", "-"],
         [str(missing)]),
        (["gen", "txns", *C, "--count", "3", "--output", d / "no" / "t.jsonl"],
         [str(d / "no" / "t.jsonl"), "No such file"]),
        (["gen", "txns", *C, "--count", "3", "--output", "/dev/full"],
         ["write failed", "No space left"]),
        (["gen", "cards", "--config", narrow, "--count", "20000000", "--out", d / "c.csv"],
         ["--count 20000000", "distinct cards under the configured BIN prefixes"]),
    ]
    # a configuration file that is not there, for every command that reads one
    none = d / "none.ini"
    for args in (["run"], ["replay", "--input", inp], [*load[:1], *load[3:], lst],
                 ["breaches"], ["unload", "b1"], ["gen", "txns", "--count", "1", "--output", "-"],
                 ["send", "--input", inp], ["tail", "t"], ["feed"], ["check"],
                 ["rules", "test", rules, "--input", inp]):
        cases.append(([*args, "--config", none], [f"{none}: cannot open", "No such file"]))
    # what the configuration lacks for one command
    no_key = d / "no-key.ini"
    no_key.write_text(re.sub(r"key_file = .*\n", "", cfg.read_text()))
    no_bins = d / "no-bins.ini"
    no_bins.write_text(cfg.read_text().split("[issuer alpha]")[0])
    no_rules = d / "no-rules.ini"
    no_rules.write_text(cfg.read_text() + f"\n[rules]\npath = {d / 'none.rules'}\n")
    no_brokers = d / "no-brokers.ini"
    no_brokers.write_text(cfg.read_text().replace(f"brokers = {CLOSED}",
                                                  f"brokers_file = {d / 'none.txt'}"))
    cases += [
        ([*load[:1], "--config", no_key, *load[3:], lst], ["[card] key_file is not set"]),
        (["gen", "txns", "--config", no_bins, "--count", "1", "--output", "-"],
         ["no issuer BIN prefixes"]),
        (["check", "--config", no_brokers], [str(d / "none.txt")]),
        (["run", "--no-progress", "--config", no_brokers], [f"{d / 'none.txt'}: cannot open"]),
        (["replay", "--from", "2024-01-01", "--config", no_brokers],
         [f"{d / 'none.txt'}: cannot open"]),
        (["run", "--no-progress", "--config", no_rules], [f"{d / 'none.rules'}: No such file"]),
    ]
    # a configuration that fails the cross checks, named, for the commands
    # that need a complete one - after their own options were accepted
    # (--drain-timeout, each --format: exit 1 here, not a usage error)
    unchecked = [f"cardwatch: {no_key}: [card] key_file is required"]
    cases += [
        (["check", "--config", no_key], unchecked),
        (["run", "--drain-timeout", "5", "--config", no_key], unchecked),
        *[(["replay", "--input", inp, "--format", f, "--config", no_key], unchecked)
          for f in ("jsonl", "json", "protobuf")],
        # the feed: a listener no issuer could use (no token hash)
        (["feed", *C, "--listen", "127.0.0.1:9"],
         ["cardwatch feed: [feed] listen is set but no [issuer ID] has a token_sha256"]),
    ]
    # a list that stops after a card was read: a quote never closed
    unclosed = d / "unclosed.csv"
    unclosed.write_text(f"pan\n{cw.CardMaker(5).card('400001')}\n\"4000,\n")
    cases.append((["gen", "txns", *C, "--count", "1", "--exposed", unclosed, "--output", "-"],
                  [f"{unclosed}:3: a quoted field is never closed"]))
    _table(cases, 1, one_line=False, quiet_stdout=False, timeout=5)

    # flags override the file: an explicit --brokers wins over brokers_file
    bf = d / "brokers.txt"
    bf.write_text("127.0.0.1:9\n")
    cfg_bf = d / "bf.ini"
    cfg_bf.write_text(cfg.read_text().replace(f"brokers = {CLOSED}", f"brokers_file = {bf}"))
    rc, out, err = _cw("check", "--config", cfg_bf, "--brokers", "127.0.0.1:9092",
                       "--redis", "127.0.0.1:6400", "--group", "g2", "--log-level", "warn")
    assert rc == 0, (rc, out, err)
    assert "brokers 127.0.0.1:9092, group g2" in out and "redis      127.0.0.1:6400" in out, out
    # the feed's address as check shows it; core dumps left on on request
    feed = _config(d, "token_sha256 = " + "ab" * 32 + "\n[feed]\nlisten = 127.0.0.1:8089\n",
                   name="feed.ini")
    rc, out, err = _cw("check", "--config", feed, env={"CARDWATCH_ALLOW_CORE_DUMPS": "1"})
    assert rc == 0 and "feed       http://127.0.0.1:8089" in out, (rc, out, err)
    # where the configuration comes from: $CARDWATCH_CONFIG, then
    # ./cardwatch.ini, else a clear refusal
    empty = h.tmpdir("cwd")
    _expect(["check"], 1, ["no configuration", "--config"], cwd=empty)
    rc, out, err = _cw("check", env={"CARDWATCH_CONFIG": str(cfg)}, cwd=empty)
    assert rc == 0 and f"config     {cfg}" in out, (rc, out, err)
    (empty / "cardwatch.ini").write_text(cfg.read_text())
    rc, out, err = _cw("check", cwd=empty)
    assert rc == 0 and "config     cardwatch.ini" in out, (rc, out, err)
    # a librdkafka property it does not know, in each scope a command
    # builds before connecting: file:line, for every Kafka command
    for scope in ("common", "producer"):
        bad = _config(d, f"[kafka.{scope}]\nno.such.property = 1\n", name=f"k-{scope}.ini")
        line = bad.read_text().splitlines().index("no.such.property = 1") + 1
        for args in (["run", "--no-progress"], ["send", "--input", inp], ["tail", "t"],
                     ["gen", "txns", "--count", "1", "--topic", "t"],
                     ["replay", "--from", "2024-01-01"], ["check"]):
            _expect([*args, "--config", bad], 1,
                    [f"{bad}:{line}: [kafka.{scope}] no.such.property"],
                    one_line=False, quiet_stdout=False)
    # the SASL password file: empty
    pw = _private(d / "sasl.pw", "")
    sasl = _config(d, "[kafka.common]\nsecurity.protocol = sasl_plaintext\n"
                      "sasl.mechanisms = PLAIN\nsasl.username = u\n", name="sasl.ini")
    sasl.write_text(sasl.read_text().replace("connect_timeout_s = 1",
                                             f"connect_timeout_s = 1\nsasl_password_file = {pw}"))
    for args in (["check"], ["run", "--no-progress"]):
        _expect([*args, "--config", sasl], 1, [f"sasl_password_file {pw}: empty"],
                one_line=False, quiet_stdout=False)
    # a TLS setting librdkafka takes but cannot use (no such CA file): the
    # first Kafka client made (the connection check) refuses it, by name
    tls = _config(d, "[kafka.common]\nsecurity.protocol = ssl\n"
                     f"ssl.ca.location = {d / 'no-ca.pem'}\n", name="tls.ini")
    for args in (["run", "--no-progress"], ["send", "--input", inp], ["tail", "t"]):
        _expect([*args, "--config", tls], 1, ["Kafka: ssl.ca.location failed"],
                one_line=False, quiet_stdout=False)
    print(f"    start-up errors in {time.monotonic() - t0:.1f} s")


def test_offline_tools_do_what_their_help_says():
    """The happy paths next to those errors: `gen cards` writes distinct
    Luhn-valid cards under the BINs; `gen txns --exposed` puts traffic on
    the listed cards with their expiry; `gen txns --format protobuf` writes
    length-delimited Transactions (paced by --rate); `rules check` prints
    a rule that can never fire as a warning (exit 0); `rules test --all
    --config` names the issuer's transactions on cards not exposed."""
    d = h.tmpdir("gen")
    cfg = _config(d)
    never = d / "never.rules"
    never.write_text("rule never\n  severity: low\n  description: d\n"
                     "  when: exposed and amount_minor < 0\n")
    rc, out, err = _cw("rules", "check", never)
    assert rc == 0 and "rule 'never' can never fire" in out and "with warnings" in out, \
        (rc, out, err)
    mk = cw.CardMaker(77)
    t = cw.txn("off-1", mk.card("400001"), cw.day_ms("2024-03-01"))
    (d / "t.jsonl").write_text(json.dumps(t) + "\n")
    rc, out, err = _cw("rules", "test", never, "--input", d / "t.jsonl", "--all",
                       "--config", cfg, "--log-level", "error")
    assert rc == 0 and f"off-1 {cw.mask(t['pan'])} " in out and "not exposed" in out, \
        (rc, out, err)
    _clean("rules test", out.replace(cw.mask(t["pan"]), "") + err)
    rc, out, err = _cw("gen", "cards", "--config", cfg, "--count", "5", "--seed", "3",
                       "--out", d / "c.csv")
    assert rc == 0, err
    rows = (d / "c.csv").read_text().splitlines()
    assert rows[0] == "pan,expiry" and len(rows) == 6, rows[:1]
    pans = [r.split(",")[0] for r in rows[1:]]
    assert len(set(pans)) == 5 and all(h.luhn_valid(p) and p.startswith("4000") for p in pans)
    # txns with an exposed list: some transactions are on the listed cards,
    # with the listed expiry (2812 where the list has none); the others on
    # clean cards under the configured BINs
    listed = {mk.card("400002"): "2911", mk.card("400003"): ""}
    (d / "exposed.csv").write_text("pan,expiry\n" + "".join(
        f"{p},{e}\n" for p, e in listed.items()))
    rc, out, err = _cw("gen", "txns", "--config", cfg, "--count", "200", "--seed", "5",
                       "--exposed", d / "exposed.csv", "--exposed-share", "1",
                       "--output", d / "ex.jsonl")
    assert rc == 0 and "200 transactions written" in err, err
    gen = [json.loads(x) for x in (d / "ex.jsonl").read_text().splitlines()]
    on_listed = [t for t in gen if t["pan"] in listed]
    assert len(gen) == 200 and on_listed, len(on_listed)
    assert all(t["expiry"] == (listed[t["pan"]] or "2812") for t in on_listed)
    assert all(h.luhn_valid(t["pan"]) and t["pan"].startswith("4000") for t in gen)
    rc, out, err = _cw("gen", "txns", "--config", cfg, "--count", "4", "--format", "protobuf",
                       "--rate", "400", "--output", d / "t.pb")
    assert rc == 0 and "4 transactions written" in err, err
    data, pos, n = (d / "t.pb").read_bytes(), 0, 0
    schema = h.ProtoSchema()
    while pos < len(data):
        size, pos = h.pb_read_varint(data, pos)
        t = schema.decode("Transaction", data[pos:pos + size])
        assert t["txn_id"] and h.luhn_valid(t["pan"]), t["txn_id"]
        pos += size
        n += 1
    assert n == 4 and pos == len(data)


# --------------------------------------------------------------------------
# 4. the fingerprint key file

def test_a_bad_key_file_stops_every_command_that_reads_it():
    """Missing, a directory, a FIFO (must not hang), /dev/null, readable
    or writable by others, empty, malformed (by line), too short or too
    long, not hex, two keys, NUL bytes, over 64 KiB: `check` exits 1
    naming each with the file's path (and line), and no part of the key;
    every other command that reads the key (run, load, send --key card,
    replay) stops the same way, before connecting (two problems each)."""
    t0 = time.monotonic()
    d = h.tmpdir("keys")
    good = f"{cw.KEY_ID} {cw.KEY_HEX}\n"
    fifo = d / "fifo.key"
    os.mkfifo(fifo, 0o600)
    keys = [  # (name, content or None, mode, words)
        ("missing.key", None, None, ["No such file or directory"]),
        ("dir.key", "dir", None, ["not a regular file"]),
        ("fifo.key", "fifo", None, ["not a regular file"]),
        ("/dev/null", "dev", None, ["not a regular file"]),
        ("group.key", good, 0o640, ["mode 0640", "chmod 600"]),
        ("world.key", good, 0o606, ["mode 0606", "chmod 600"]),
        ("empty.key", "", 0o600, ["no key line"]),
        ("comments.key", "# key\n\n", 0o600, ["no key line"]),
        ("short.key", f"# c\n{cw.KEY_ID} {cw.KEY_HEX[:30]}\n", 0o600, ["line 2:", "hex digits"]),
        ("odd.key", f"{cw.KEY_ID} {cw.KEY_HEX[:63]}\n", 0o600, ["line 1:", "hex digits"]),
        ("long.key", f"{cw.KEY_ID} {cw.KEY_HEX * 3}\n", 0o600, ["line 1:", "hex digits"]),
        ("nothex.key", f"{cw.KEY_ID} {cw.KEY_HEX[:62]}zz\n", 0o600, ["line 1:", "not hex"]),
        ("noid.key", f"{cw.KEY_HEX}\n", 0o600, ["line 1:", "<key_id> <hex key>"]),
        ("badid.key", f"k:1 {cw.KEY_HEX}\n", 0o600, ["line 1:", "key id"]),
        ("two.key", good + "\n" + good, 0o600, ["line 3:", "more than one key"]),
        ("nul.key", good.replace(" ", "\0"), 0o600, ["NUL"]),
        ("huge.key", good + "#" * 70000 + "\n", 0o600, ["larger than 65536 bytes"]),
    ]
    if os.geteuid() != 0:   # root reads any file
        keys.append(("unreadable.key", good, 0o200, ["Permission denied"]))
    (d / "dir.key").mkdir()
    (d / "in.jsonl").write_text("{}\n")
    commands = [["run", "--no-progress"], ["check"],
                ["load", "--breach", "b", "--window-start", "2024-01-01", "--window-end",
                 "2024-01-02", "--elements", "pan", d / "in.jsonl"],
                ["send", "--input", d / "in.jsonl", "--key", "card"],
                ["replay", "--input", d / "in.jsonl", "--output", d / "out.jsonl"]]
    n = 0
    for name, content, mode, words in keys:
        path = d / name if not name.startswith("/") else name
        if isinstance(content, str) and content not in ("dir", "fifo", "dev"):
            _private(path, content, mode)
        cfg = _config(d, key=path, name=f"{os.path.basename(name)}.ini")
        # every problem through check (card_key_load, as every command
        # reads the key); each command on two of them
        cmds = commands if name in ("nothex.key", "group.key") else commands[1:2]
        for args in cmds:
            _expect([*args, "--config", cfg], 1, [f"key file {path}", *words],
                    one_line=False, quiet_stdout=False, timeout=10)
            n += 1
    assert not (d / "out.jsonl").exists()
    print(f"    {len(keys)} key files, {n} runs in {time.monotonic() - t0:.1f} s")


# --------------------------------------------------------------------------
# 5. the admin HTTP endpoint

def _http(port, method, path, headers=None, body=b"", host="127.0.0.1"):
    """One raw HTTP/1.0 request; returns (status, body)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, port))
        head = f"{method} {path} HTTP/1.0\r\nHost: x\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2].decode(errors="replace")


def test_admin_http_answers_errors_and_listens_on_ipv6():
    """`cardwatch feed` with [http] listen (Redis down: it starts anyway):
    404 for a path it does not serve (and for /admin/rules: the feed has
    no rules), 405 for a method it does not take, 400 for headers over
    8 KiB, 413 for a body over 4 KiB, 503 with the reason on /readyz; a
    second instance on the same [http] port exits 1 naming the address;
    [http] listen = [::1]:PORT serves /healthz."""
    t0 = time.monotonic()
    d = h.tmpdir("http")
    hp, fp = h.free_port(), h.free_port()
    token = "token_sha256 = " + "ab" * 32 + "\n"
    cfg = _config(d, token + f"[feed]\nlisten = 127.0.0.1:{fp}\n", http=f"127.0.0.1:{hp}")
    p = h.spawn([h.tool("cardwatch"), "feed", "--config", cfg], name="feed")
    h.wait_until(lambda: _http(hp, "GET", "/healthz")[0] == 200 or not p.alive, 10,
                 "the admin endpoint")
    assert p.alive, p.log_text(20)
    cases = [("GET", "/nope", {}, b"", 404, "not found"),
             ("GET", "/healthz/more", {}, b"", 404, "not found"),
             ("GET", "/" + "a" * 100, {}, b"", 404, "not found"),
             ("GET", "/admin/rules", {}, b"", 404, "not found"),
             ("POST", "/admin/rules/reload", {}, b"", 404, "not found"),
             ("GET", "/admin/rules/reload", {}, b"", 405, "use POST"),
             ("POST", "/metrics", {}, b"x", 405, "method not allowed"),
             ("PUT", "/healthz", {}, b"", 405, "method not allowed"),
             ("DELETE", "/readyz", {}, b"", 405, "method not allowed"),
             ("HEAD", "/healthz", {}, b"", 200, ""),
             ("GET", "/healthz?verbose=1", {}, b"", 200, "ok"),
             ("GET", "/readyz", {}, b"", 503, "not ready: "),
             ("GET", "/healthz", {"X-Big": "a" * 9000}, b"", 400, ""),
             ("POST", "/admin/rules/reload", {}, b"a" * 5000, 413, "")]
    for method, path, hdrs, body, want, text in cases:
        status, got = _http(hp, method, path, hdrs, body)
        assert status == want and text in got, f"{method} {path[:30]}: {status} {got!r}"
    status, got = _http(hp, "GET", "/metrics")
    assert p.alive and status == 200 and "cardwatch_" in got, (status, got[:200])

    # the port is taken: the second instance says which address
    cfg2 = _config(d, token + f"[feed]\nlisten = 127.0.0.1:{h.free_port()}\n",
                   http=f"127.0.0.1:{hp}", name="second.ini")
    _expect(["feed", "--config", cfg2], 1, [f"cannot listen on 127.0.0.1:{hp}"],
            one_line=False, quiet_stdout=False)
    p.stop()
    assert p.returncode == 0, p.log_text(20)

    # IPv6, written as the configuration demands it: [::1]:port
    if h.ipv6_loopback():
        hp6 = h.free_port()
        cfg6 = _config(d, token + f"[feed]\nlisten = 127.0.0.1:{h.free_port()}\n",
                       http=f"[::1]:{hp6}", name="v6.ini")
        p6 = h.spawn([h.tool("cardwatch"), "feed", "--config", cfg6], name="feed-v6")
        h.wait_until(lambda: not p6.alive or _http(hp6, "GET", "/healthz", host="::1")[0] == 200,
                     10, "the admin endpoint on [::1]")
        assert p6.alive, p6.log_text(20)
        assert f"listening on [::1]:{hp6}" in p6.log_text(), p6.log_text(20)
        p6.stop()
        assert p6.returncode == 0, p6.log_text(20)
    else:
        print("    (no IPv6 loopback here: the [::1] step was left out)")
    print(f"    admin endpoint answers in {time.monotonic() - t0:.1f} s")


# --------------------------------------------------------------------------
# 6. with a broker: deliveries refused, a message that is no alert

def test_send_gen_and_tail_report_what_kafka_refused_or_could_not_decode():
    """One Apache Kafka broker. A topic with max.message.bytes = 64 (every
    transaction is larger) refuses every delivery: `send` reports the line
    that is no JSON object by line and the undelivered count, and exits 1;
    `gen txns --topic` likewise. `tail --exit-at-end` prints the alert of a
    topic and skips, by topic/partition/offset, the message that is no alert.
    A producer setting librdkafka refuses (acks=1 with idempotence, which
    the command line's producer uses) stops `send` naming the setting."""
    t0 = time.monotonic()
    small, mixed = "cli.small", "cli.mixed"
    k = h.Kafka({mixed: 1})
    k.create_topics({small: 1}, configs=["max.message.bytes=64"])
    t_kafka = time.monotonic() - t0
    d = h.tmpdir("kafka")
    cfg = _config(d, brokers=k.bootstraps)
    cfg.write_text(cfg.read_text().replace("connect_timeout_s = 1", "connect_timeout_s = 20"))
    mk = cw.CardMaker(12)
    lines = [cw.txn("cli-1", mk.card("400001"), cw.day_ms("2024-03-01")),
             None,
             cw.txn("cli-2", mk.card("400001"), cw.day_ms("2024-03-02"))]
    inp = d / "txns.jsonl"
    inp.write_text("".join((json.dumps(t) if t else "not json at all") + "\n" for t in lines))
    _, err = _expect(["send", "--config", cfg, "--input", inp, "--topic", small], 1,
                     [f"{inp}:2: not a transaction JSON object; skipped",
                      "delivery failed", "2 message(s) not delivered"],
                     one_line=False, timeout=60)
    assert err.count("delivery failed") == 1, err   # logged once, counted
    _expect(["gen", "txns", "--config", cfg, "--count", "3", "--topic", small], 1,
            ["delivery failed", "3 message(s) not delivered"], one_line=False, timeout=60)

    # tail: one alert and one message that is no alert
    k.produce(mixed, [(b"a", _an_alert("cli-alert")), (b"b", b"\xff\xfe not protobuf")],
              partition=0)
    rc, out, err = _cw("tail", "--config", cfg, mixed, "--exit-at-end", timeout=60)
    assert rc == 0, err
    _clean("tail", err)
    assert f"{mixed}/0/1: not an alert; skipped" in err, err
    got = [json.loads(x) for x in out.splitlines()]
    assert len(got) == 1 and got[0]["alert_id"] == cw.alert_id("cli-alert"), out[:300]
    # following: an alert produced after the end is printed; SIGINT: exit 0
    follow = d / "follow.jsonl"
    with open(follow, "wb") as fo:
        p = h.spawn([h.tool("cardwatch"), "tail", "--config", cfg, mixed], name="tail",
                    stdout=fo)
    h.wait_until(lambda: "not an alert; skipped" in p.log_text() or not p.alive, 30,
                 "tail to pass the message that is no alert")
    k.produce(mixed, [(b"c", _an_alert("cli-later"))], partition=0)
    h.wait_until(lambda: follow.read_text().count("\n") == 2 or not p.alive, 30,
                 "tail to print the alert produced after it reached the end")
    p.send_signal(signal.SIGINT, group=False)
    assert p.wait(10) == 0, p.log_text(20)
    got = [json.loads(x)["alert_id"] for x in follow.read_text().splitlines()]
    assert got == [cw.alert_id("cli-alert"), cw.alert_id("cli-later")], got
    # a consumer setting librdkafka does not know, found once the
    # connection check (a producer's settings) passed
    bad = _config(d, "[kafka.consumer]\nno.such.property = 1\n", brokers=k.bootstraps,
                  name="consumer.ini")
    line = bad.read_text().splitlines().index("no.such.property = 1") + 1
    _expect(["tail", "--config", bad, mixed, "--exit-at-end"], 1,
            [f"{bad}:{line}: [kafka.consumer] no.such.property"], one_line=False, timeout=60)

    idem = _config(d, "[kafka.producer]\nacks = 1\n", brokers=k.bootstraps, name="acks.ini")
    _expect(["send", "--config", idem, "--input", inp, "--topic", mixed], 1,
            ["acks", "idempotence"], one_line=False, timeout=60)
    print(f"    Kafka started in {t_kafka:.1f} s; scenario {time.monotonic() - t0:.1f} s")


def _an_alert(txn_id):
    """One Alert message, encoded here from proto/cardwatch.proto."""
    return h.ProtoSchema().encode("Alert", {
        "alert_id": cw.alert_id(txn_id), "issuer_id": "alpha", "txn_id": txn_id,
        "card_fingerprint": f"{cw.KEY_ID}:" + "0" * 32, "pan_masked": "400001******0001",
        "event_time_ms": cw.day_ms("2024-03-01"), "amount_minor": 1234, "currency": "EUR",
        "mcc": 5411, "merchant_id": "m-1", "merchant_country": "DE",
        "channel": "CHANNEL_ECOMMERCE", "severity": "SEVERITY_HIGH",
        "hits": [{"rule_id": cw.RULE, "severity": "SEVERITY_HIGH"}],
        "breaches": [{"breach_id": "b1", "window_start": cw.day_ms("2024-01-01"),
                      "window_end": cw.day_ms("2024-02-01", True), "elements": ["pan"]}],
        "mode": "MODE_LIVE", "detected_at_ms": cw.day_ms("2024-03-01") + 5,
        "ruleset_version": cw.RULESET})
