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


def _check(path):
    res = h.run_tool([h.tool("cardwatch"), "check", "--config", path], timeout=20, check=False)
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    for bad in ("AddressSanitizer", "Segmentation", "core dumped", "Aborted"):
        assert bad not in out + err, out + err
    return res.returncode, out, err


def _tls_pair(d, name):
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    h.run_tool(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                "-days", "2", "-subj", "/CN=127.0.0.1"])
    return cert, key


def test_check_command_offline():
    """`cardwatch check` says whether a config, its key file, its rule file
    and its TLS files are usable, without Kafka or Redis (none runs here):
    exit 0 with a summary, or 1 with every problem on stderr."""
    d = h.tmpdir("check")
    rules = d / "ok.rules"
    rules.write_text("rule big\n  severity: high\n  description: d\n"
                     "  when: exposed and amount_minor >= 100000\n"
                     "rule never\n  severity: low\n  description: d\n"
                     "  when: exposed and amount_minor < 0\n")
    cert, key = _tls_pair(d, "a")
    # the body continues _config's last section, [issuer alpha]
    path, _ = _config(d, "token_sha256 = " + "ab" * 32 + "\n"
                      f"[rules]\npath = {rules}\n"
                      f"[feed]\nlisten = 127.0.0.1:8443\ntls_cert = {cert}\ntls_key = {key}\n")
    text = path.read_text()
    rc, out, err = _check(path)
    assert rc == 0, (out, err)
    assert out.rstrip().endswith("OK"), out
    assert f"key id {cw.KEY_ID}" in out and "ok.rules@" in out and "(2 rules)" in out, out
    assert "rule 'never' can never fire" in out, out
    assert "https://127.0.0.1:8443" in out and "1 (1 with feed tokens)" in out, out
    assert cw.KEY_HEX not in out + err

    # every problem at once: a rule file that does not parse, a key readable
    # by others, a TLS key of another certificate
    bad_rules = d / "bad.rules"
    bad_rules.write_text("rule x\n  severity: hgh\n")
    _other_cert, other_key = _tls_pair(d, "b")
    os.chmod(d / "fingerprint.key", 0o644)
    path.write_text(text.replace(str(rules), str(bad_rules)).replace(str(key), str(other_key)))
    rc, out, err = _check(path)
    assert rc == 1, (out, err)
    assert out.rstrip().endswith("NOT USABLE (see the errors above)"), out
    assert f"{bad_rules}:2:13: unknown severity 'hgh'" in err, err
    assert "chmod 600" in err, err
    assert "[feed] tls_key" in err and "mismatch" in err, err
    assert cw.KEY_HEX not in out + err
    os.chmod(d / "fingerprint.key", 0o600)

    # a config error stops it with file:line, as `run` would
    bad, lines = _config(d, "[pipeline]\nbatch_size = 0 ;@B\n", name="bad.ini")
    rc, out, err = _check(bad)
    assert rc == 1 and f"bad.ini:{lines['B']}:" in err, err
