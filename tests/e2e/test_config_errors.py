"""Configuration errors stop `cardwatch run` before it touches Kafka or Redis:
exit status 1 (never a signal), a message naming file:line, nothing secret
echoed; a fingerprint key file readable by others is refused."""

import os

import harness as h
import cwstack as cw

SECRET = "s3cret-Pa55word"


def _config(d, body, name="cardwatch.ini", key_file=None):
    """A complete, valid config except for whatever `body` adds; returns
    (path, {marker: line number}) for the lines that end in ' ;@MARKER'."""
    if key_file is None:
        key_file = d / "fingerprint.key"
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, f"{cw.KEY_ID} {cw.KEY_HEX}\n".encode())
            os.close(fd)
    text = ("[kafka]\n"
            "brokers = 127.0.0.1:9\n"
            "session_timeout_ms = 6000\n"
            "[redis]\n"
            "address = 127.0.0.1:9\n"
            "[card]\n"
            f"key_file = {key_file}\n"
            "[http]\n"
            "listen = \n"
            "[issuer alpha]\n"
            "home_country = GB\n"
            "bins = 400000-400099\n" + body)
    lines = {}
    clean = []
    for n, line in enumerate(text.splitlines(), 1):
        if " ;@" in line:
            line, marker = line.split(" ;@")
            lines[marker] = n
        clean.append(line)
    path = d / name
    path.write_text("\n".join(clean) + "\n")
    return path, lines


def _run(path, *extra):
    res = h.run_tool([h.tool("cardwatch"), "run", "--config", path, "--no-progress", *extra],
                     timeout=20, check=False)
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 1, f"exit {res.returncode} (negative = signal):\n{err}"
    for bad in ("AddressSanitizer", "Segmentation", "core dumped", "Aborted"):
        assert bad not in err, err
    return err


def test_bad_config_names_file_and_line():
    d = h.tmpdir("cfg")
    cases = [
        ("[kafka.common]\nclient.id = e2e\n[redis]\ncolour = blue ;@L\n",
         ["unknown key 'colour'"]),
        ("[kafak] ;@L\nbrokers = 127.0.0.1:9092\n", ["unknown section [kafak]"]),
        ("[redis]\ntimeout_ms = 100\n[redis]\naddress = 127.0.0.1:70000 ;@L\n",
         ["port must be 1 to 65535"]),
        ("[http]\nlisten = 127.0.0.1:0 ;@L\n", ["port must be 1 to 65535"]),
        ("[kafka]\nsession_timeout_ms = 999 ;@L\n", ["1000"]),
        ("[issuer beta]\nhome_country = US\nbins = 400050 ;@L\n", ["400050"]),
        ("[kafka.common]\nsasl.password = " + SECRET + "\n  continued ;@L\n", ["continu"]),
    ]
    for i, (body, words) in enumerate(cases):
        path, lines = _config(d, body, name=f"bad-{i}.ini")
        err = _run(path)
        want = f"{path}:{lines['L']}:"
        assert want in err, f"case {i}: expected '{want}' in: {err!r}"
        for w in words:
            assert w in err, f"case {i}: expected {w!r} in: {err!r}"
        assert SECRET not in err, f"case {i}: a password value was echoed: {err!r}"
        assert cw.KEY_HEX not in err


def test_key_file_must_be_private():
    d = h.tmpdir("key")
    key = d / "open.key"
    key.write_text(f"{cw.KEY_ID} {cw.KEY_HEX}\n")
    os.chmod(key, 0o644)
    path, _ = _config(d, "", key_file=key)
    err = _run(path)
    assert str(key) in err and "0644" in err and "chmod 600" in err, err
    assert cw.KEY_HEX not in err

    # a malformed key (too short) is named by line, its text not echoed
    short = d / "short.key"
    fd = os.open(short, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"# comment\n" + f"{cw.KEY_ID} {cw.KEY_HEX[:20]}\n".encode())
    os.close(fd)
    path, _ = _config(d, "", name="short.ini", key_file=short)
    err = _run(path)
    assert f"key file {short}: line 2:" in err and "hex digits" in err, err
    assert cw.KEY_HEX[:20] not in err

    # a key file that is not there
    path, _ = _config(d, "", name="missing.ini", key_file=d / "nope.key")
    err = _run(path)
    assert f"{d / 'nope.key'}" in err and "No such file" in err, err
