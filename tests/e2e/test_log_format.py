"""--log-format json and [log] format = json: every line cardwatch writes on
stderr is one JSON object with exactly ts, level, module and msg, levels as
the plain lines have them, and no card number; the command line wins over
the file; a bad value stops with file:line (config, exit 1) or the option
(command line, exit 2), as other errors of each kind do."""

import json
import re

import harness as h
import cwstack as cw
from cwstack import CardMaker

FIELDS = ["ts", "level", "module", "msg"]
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _json_lines(stderr):
    """Parses every line of stderr (bytes) as a log object; returns them."""
    text = stderr.decode()          # strict: the lines are valid UTF-8
    assert text.endswith("\n"), repr(text[-200:])
    out = []
    for line in text.split("\n")[:-1]:
        try:
            o = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nall of stderr:\n{text}") from None
        assert isinstance(o, dict) and list(o) == FIELDS, line
        assert TS.match(o["ts"]), line
        assert o["level"] in ("debug", "info", "warn", "error"), line
        assert isinstance(o["module"], str) and o["module"], line
        assert isinstance(o["msg"], str), line
        out.append(o)
    return out


def _check(args, config):
    return h.run_tool([h.tool("cardwatch"), "check", "--config", config, *args],
                      timeout=20, check=False)


def test_bad_config_in_json():
    """`cardwatch check` of a config with a bad [log] level: exit 1, one JSON
    error line naming file:line, whether json comes from --log-format or
    from a [log] format line read before the bad one; --log-format plain
    wins over the file (the plain message, exactly as without [log]); a bad
    --log-format value is a usage error naming the option (exit 2)."""
    d = h.tmpdir("logcfg")
    bad = d / "bad.ini"
    bad.write_text("[kafka]\nbrokers = 127.0.0.1:9\n[log]\nlevel = loud\n")
    want = f"{bad}:4: bad value 'loud' for 'level' in [log]: must be debug, info, warn or error"
    res = _check(["--log-format", "json"], bad)
    assert res.returncode == 1, res
    assert res.stdout == b"", res.stdout
    assert [(o["level"], o["module"], o["msg"]) for o in _json_lines(res.stderr)] == \
        [("error", "cardwatch", want)]

    in_file = d / "bad-json.ini"
    in_file.write_text("[log]\nformat = json\n[kafka]\nbrokers = 127.0.0.1:9\n"
                       "session_timeout_ms = 5\n")
    res = _check([], in_file)
    assert res.returncode == 1, res
    [o] = _json_lines(res.stderr)
    assert (o["level"], o["module"]) == ("error", "cardwatch"), o
    assert o["msg"] == (f"{in_file}:5: bad value '5' for 'session_timeout_ms' in [kafka]: "
                        "must be 1000 to 300000"), o

    res = _check(["--log-format", "plain"], in_file)
    assert res.returncode == 1, res
    assert res.stderr.decode() == (f"cardwatch: {in_file}:5: bad value '5' for "
                                   "'session_timeout_ms' in [kafka]: must be 1000 to "
                                   "300000\n")

    res = _check(["--log-format", "yaml"], bad)
    assert res.returncode == 2, res
    assert res.stderr.decode() == ("cardwatch check: --log-format: use plain or json "
                                   "(see cardwatch check --help)\n")
    bad.write_text("[log]\nformat = xml\n")
    res = _check([], bad)
    assert res.returncode == 1, res
    assert res.stderr.decode() == (f"cardwatch: {bad}:2: bad value 'xml' for 'format' in "
                                   "[log]: must be plain or json\n")


def _load(s, csv, *extra):
    res = s.cardwatch("load", "--breach", "logj", "--window-start", "2024-01-01",
                      "--window-end", "2024-02-29", "--elements", "pan,expiry", *extra, csv)
    assert "6 cards loaded (6 new), 1 rejected" in res.stdout.decode() or \
        "6 cards loaded (0 new), 1 rejected" in res.stdout.decode(), res.stdout
    return _json_lines(res.stderr)


def test_load_logs_in_json():
    """`cardwatch load` against a real Redis of a small list with an ignored
    column, a PAN failing Luhn and a bad expiry, at level debug: every
    stderr line is a JSON log object; the rejections are warn lines that
    mask the PAN, the Redis connection an info line; no card number of
    the list appears. `[log] format = json` and `level = debug` in the
    config give the same lines with no flag; a flag --log-level warn
    wins over the file's debug (no info line then)."""
    mk = CardMaker(1515)
    good = mk.cards("400001", 5)
    broken = cw.luhn_break(mk.card("400002"))
    odd_expiry = mk.card("400003")
    s = cw.Stack([cw.Issuer("alpha", "GB", ["400000-400099"])])
    csv = s.dir / "list.csv"
    csv.write_text("pan,expiry,cvv\n" + "".join(f"{p},2612,123\n" for p in good)
                   + f"{broken},2612,123\n{odd_expiry},26-12,123\n")

    def check_lines(lines, want_info=True):
        text = json.dumps(lines)
        for pan in good + [broken, odd_expiry]:
            assert pan not in text, f"card number in the log: {text}"
        warns = [o["msg"] for o in lines if o["level"] == "warn"]
        assert any("column 'cvv' is ignored" in m for m in warns), lines
        assert any(":7: rejected: PAN " + cw.mask(broken) + " fails the Luhn check" in m
                   for m in warns), lines
        assert any(":8: expiry of " + cw.mask(odd_expiry) + " is not YYMM" in m
                   for m in warns), lines
        infos = [o for o in lines if o["level"] == "info"]
        assert any(" connected" in o["msg"] for o in infos) == want_info, lines
        if not want_info:
            assert {o["level"] for o in lines} <= {"warn", "error"}, lines

    check_lines(_load(s, csv, "--log-format", "json", "--log-level", "debug"))

    s.config.write_text(s.config.read_text() + "\n[log]\nformat = json\nlevel = debug\n")
    check_lines(_load(s, csv))
    check_lines(_load(s, csv, "--log-level", "warn"), want_info=False)
