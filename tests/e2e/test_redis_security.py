"""cardwatch against a secured Redis, end to end: real redis-server (ACL
user, TLS, mutual TLS), Apache Kafka and real `cardwatch` processes.

AUTH: the only service user is exactly the line of
deploy/redis/cardwatch.acl (its hash replaced by a test password); `load`,
`run` (Kafka -> alerts), `breaches`, `replay` of a file and `feed` all work
under it, and the ACL is real (no FLUSHALL, no key outside cw:*). A wrong
password, or a password file others can read, stops `run`, `load` and
`replay` at once (exit 1) with a message naming the user or the fix; the
password is in no output.
TLS: the right CA works end to end; another CA, a certificate for another
name and TLS to a plain-text port stop `load`, `replay` and `run` (exit 1)
naming the cause; a TLS Redis that is merely down at start is waited for
(as without TLS); mutual TLS works with a client certificate and is
refused without.
`cardwatch check` accepts a TLS + ACL config."""

import json
import os
import random
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn
from test_feed import Feed, TokenIssuer, _token

REPO = Path(__file__).resolve().parents[2]
ACL_FILE = REPO / "deploy" / "redis" / "cardwatch.acl"
USER = "cardwatch"


# --------------------------------------------------------------------------
# helpers

def _acl_line():
    """(the documented `user ...` line, its hash token, the rules after it)."""
    lines = [ln.strip() for ln in ACL_FILE.read_text().splitlines() if ln.startswith("user ")]
    assert len(lines) == 1, f"{ACL_FILE}: {len(lines)} user lines"
    tok = lines[0].split()
    assert tok[:3] == ["user", USER, "on"] and re.fullmatch(r"#[0-9a-f]{64}", tok[3]), lines[0]
    return lines[0], tok[3], " ".join(tok[4:])


def _acl_redis(password, **kw):
    """redis-server whose only service user is the documented ACL line with
    `password` (plus the harness's own admin)."""
    line, hash_token, rules = _acl_line()
    r = h.Redis(users={USER: (password, rules)}, **kw)
    want = line.replace(hash_token, ">" + password)
    assert want in r.aclfile.read_text().splitlines(), \
        f"the server's ACL file does not hold the documented line:\n{r.aclfile.read_text()}"
    return r


def _secret_file(password, mode=0o600):
    p = h.tmpdir("secret") / "redis.pw"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    os.chmod(p, mode)
    return p


def _scenario(seed, tag, n=400, share=0.1):
    """Three issuers, one breach, n transactions (~share on exposed cards),
    the alerts they must give."""
    issuers = cw.three_issuers()
    mk = CardMaker(seed)
    exposed = mk.cards(["400001", "400077", "4000503", "510000", "52000042", "999999"], 30)
    clean = mk.cards(["400002", "4000501", "510000", "371234"], 200)
    b1 = Breach(f"{tag}-b1", "2024-03-01", "2024-05-31", ["pan", "expiry"], exposed)
    rnd = random.Random(seed)
    base = cw.day_ms("2024-02-20")
    txns = [txn(f"{tag}-{i:05d}", rnd.choice(exposed) if rnd.random() < share
                else rnd.choice(clean), base + rnd.randrange(0, 60 * 86_400_000), rnd)
            for i in range(n)]
    expected = cw.expected_alerts(txns, [b1], issuers)
    assert n < 100 or len(expected) >= 10, len(expected)
    return issuers, b1, txns, expected


def _end_to_end(s, b1, txns, expected):
    """load, run (readiness 200), send, every event processed, SIGTERM;
    exactly the expected alerts. Returns the run's Proc."""
    s.load(b1)
    proc = s.run()
    h.wait_until(lambda: not proc.alive or s.ready()[0] == 200, 30, "/readyz 200")
    assert proc.alive, f"cardwatch run exited:\n{proc.log_text(30)}"
    s.send(txns)
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") == len(txns), 60,
                 f"{len(txns)} events processed")
    m = s.metrics()
    assert m.sum("cardwatch_alerts_total") == len(expected)
    s.terminate(proc)
    s.logs += [Path(proc.log), Path(proc.stdout_path)]
    cw.check_alerts(s.alerts(), expected, exact_once=True)
    return proc


def _with_redis(s, name, redis_lines):
    """A copy of the stack's config with another [redis] section body."""
    text = s.config.read_text()
    new, n = re.subn(r"(?s)\n\[redis\]\n.*?\n\[card\]\n",
                     lambda m: "\n[redis]\n" + redis_lines.rstrip("\n") + "\n\n[card]\n", text)
    assert n == 1, text
    path = s.dir / f"{name}.ini"
    path.write_text(new)
    return path


def _cmd(s, config, *args, timeout=30):
    """cardwatch ARGS on `config` to completion: (exit status, stdout +
    stderr text, seconds). The output is kept in s.logs. A command still
    running after `timeout` s is stopped and fails the test with its log."""
    args = [str(a) for a in args]
    s._n += 1
    base = s.dir / f"cmd-{s._n:02d}-{args[0]}"
    out_path, log = Path(f"{base}.stdout"), Path(f"{base}.log")
    s.logs += [out_path, log]
    t0 = time.monotonic()
    with open(out_path, "wb") as out:
        p = h.spawn([h.tool("cardwatch"), args[0], "--config", config, *args[1:]],
                    name=f"cardwatch-{args[0]}", log=log, stdout=out)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.stop(timeout=10, sig=signal.SIGTERM)
        raise AssertionError(f"cardwatch {' '.join(args)} (config {config}) still running "
                             f"after {timeout}s:\n{p.log_text(30)}") from None
    secs = time.monotonic() - t0
    text = out_path.read_text(errors="replace") + p.log_text()
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in text, f"cardwatch {' '.join(args)}: {bad}:\n{text[-4000:]}"
    return rc, text, secs


def _load_args(s, b1):
    csv = s.dir / f"breach-{b1.id}.csv"
    if not csv.exists():
        csv.write_text("pan,expiry\n" + "".join(p + ",2612\n" for p in b1.cards))
    return ["load", "--breach", b1.id, "--window-start", b1.start, "--window-end", b1.end,
            "--elements", ",".join(b1.elements), csv]


def _refused(s, config, args, words, max_s=10.0):
    """`cardwatch ARGS` on config exits 1 within max_s with every word in
    its output; returns (output, seconds)."""
    rc, out, secs = _cmd(s, config, *args, timeout=max_s + 5)
    assert rc == 1, f"cardwatch {args[0]} exited {rc}, expected 1:\n{out[-3000:]}"
    for w in words:
        assert w in out, f"cardwatch {args[0]}: {w!r} not in its output:\n{out[-3000:]}"
    assert secs < max_s, f"cardwatch {args[0]} took {secs:.1f}s to give up:\n{out[-3000:]}"
    return out, secs


def _nowhere(s, secrets_, extra=()):
    """None of the strings in any log of the stack (or the given files)."""
    files = [Path(p) for p in s.logs] + [Path(p) for p in extra]
    for p in files:
        if not p.exists():
            continue
        data = p.read_bytes()
        for x in secrets_:
            assert x.encode() not in data, f"{p} holds the password"


def _no_noperm(s):
    """No command of the service was refused by the ACL."""
    for p in map(Path, s.logs):
        if p.exists():
            text = p.read_text(errors="replace")
            assert "NOPERM" not in text and "no permissions" not in text, \
                f"{p}: the ACL refused a command:\n{text[-3000:]}"


def _alert_lines(path):
    return [json.loads(ln) for ln in Path(path).read_text().splitlines()]


# --------------------------------------------------------------------------
# AUTH

def test_acl_user_runs_load_run_breaches_replay_and_feed():
    pw = secrets.token_urlsafe(18)
    r = _acl_redis(pw)
    pw_file = _secret_file(pw)
    issuers, b1, txns, expected = _scenario(501, "acl")
    # tokens for the feed (the issuers are those of three_issuers())
    issuers = [TokenIssuer(i.id, i.home_country, i.bins, name=i.name, token=_token())
               for i in issuers]
    s = cw.Stack(issuers, partitions=2, redis=r,
                 redis_ini=f"username = {USER}\npassword_file = {pw_file}\n")

    proc = _end_to_end(s, b1, txns, expected)
    log = Path(proc.log).read_text(errors="replace")
    assert f"Redis 127.0.0.1:{r.port} connected" in log, log[-3000:]

    # breaches
    out = s.cardwatch("breaches").stdout.decode()
    row = [ln for ln in out.splitlines() if ln.startswith(b1.id)]
    assert row and "committed" in row[0] and f" {len(b1.cards)} " in row[0], out

    # replay of a file (no Kafka: file in, file out)
    d = h.tmpdir("replay")
    src = d / "txns.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in txns))
    res = s.cardwatch("replay", "--input", src, "--output", d / "alerts.jsonl")
    got = _alert_lines(d / "alerts.jsonl")
    assert sorted(a["alert_id"] for a in got) == sorted(expected), \
        f"replay: {len(got)} alerts, expected {len(expected)}"
    for a in got:
        e = expected[a["alert_id"]]["alert"]
        assert (a["txn_id"], a["issuer_id"], a["mode"]) == \
            (e["txn_id"], e["issuer_id"], "replay"), a
    assert re.search(rf"^  alerts\s+{len(expected)}$", res.stdout.decode(), re.M), \
        res.stdout.decode()

    # the feed: alpha's token sees exactly alpha's delivered alerts
    feed = Feed(s.config.read_text())
    alpha = issuers[0]
    want = sorted(aid for aid, e in expected.items() if e["alert"]["issuer_id"] == "alpha")
    assert want, "the scenario has alerts for alpha"
    got = sorted(g["alert"]["alert_id"] for g in feed.list_all(alpha.token))
    assert got == want, f"feed: {len(got)} alerts for alpha, expected {len(want)}"
    feed.stop()
    s.logs.append(Path(feed.proc.log))

    # the ACL is real: the service user cannot wipe Redis nor touch other keys
    assert "no permissions" in r.call("ACL", "DRYRUN", USER, "FLUSHALL").decode()
    c = r.client(auth=(USER, pw))
    try:
        for cmd in (("FLUSHALL",), ("KEYS", "*"), ("SET", "other:x", "1"), ("GET", "other:x")):
            try:
                c.call(*cmd)
            except h.RespError as e:
                assert "NOPERM" in str(e), (cmd, e)
            else:
                raise AssertionError(f"user {USER} may run {cmd}")
        assert c.call("EXISTS", "cw:exposed") == 1
    finally:
        c.close()
    assert r.call("DBSIZE") > 0

    _no_noperm(s)
    _nowhere(s, [pw], [feed.proc.log])


def test_acl_wrong_password_or_readable_password_file_stops_the_commands():
    pw = secrets.token_urlsafe(18)
    wrong = secrets.token_urlsafe(18)
    r = _acl_redis(pw)
    issuers, b1, txns, _expected = _scenario(502, "aclbad", n=50)
    good = _secret_file(pw)
    s = cw.Stack(issuers, partitions=2, redis=r,
                 redis_ini=f"username = {USER}\npassword_file = {good}\n")
    s.kafka  # `run` checks Kafka before Redis
    # the set-up is right: the right password works
    s.cardwatch(*_load_args(s, b1))
    d = h.tmpdir("replay")
    src = d / "txns.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in txns))
    replay = ["replay", "--input", src, "--output", d / "alerts.jsonl"]

    # a wrong password: refused at once, naming the user, never the password
    bad_cfg = _with_redis(s, "wrong-password",
                          f"address = {r.address}\nusername = {USER}\n"
                          f"password_file = {_secret_file(wrong)}\n")
    words = [f"refused user '{USER}'", "WRONGPASS"]
    figures = []
    for args in (["run", "--no-progress"], _load_args(s, b1), replay):
        out, secs = _refused(s, bad_cfg, args, words, max_s=10)
        figures.append(f"{args[0]} {secs:.2f}s")
    assert not (d / "alerts.jsonl").exists(), "a refused replay left an output file"

    # a password file others can read: refused before any connection
    open_file = _secret_file(pw, mode=0o644)
    open_cfg = _with_redis(s, "open-password-file",
                           f"address = {r.address}\nusername = {USER}\n"
                           f"password_file = {open_file}\n")
    for args in (["run", "--no-progress"], _load_args(s, b1)):
        out, _secs = _refused(s, open_cfg, args, ["chmod 600", str(open_file)], max_s=10)
        assert "WRONGPASS" not in out, out
    print(f"figure: wrong Redis password refused after: {', '.join(figures)}")
    _nowhere(s, [pw, wrong])


# --------------------------------------------------------------------------
# TLS

def test_tls_with_the_right_ca_runs_end_to_end():
    tls = h.make_tls()
    r = h.Redis(tls=tls)
    issuers, b1, txns, expected = _scenario(503, "tls")
    s = cw.Stack(issuers, partitions=2, redis=r,
                 redis_ini=f"tls = on\ntls_ca_file = {tls.ca}\n")
    proc = _end_to_end(s, b1, txns, expected)
    log = Path(proc.log).read_text(errors="replace")
    assert f"Redis 127.0.0.1:{r.port} connected (TLS)" in log, log[-3000:]
    # the certificate's DNS name works as well as its IP address
    by_name = _with_redis(s, "by-name", f"address = {r.address}\ntls = on\n"
                          f"tls_ca_file = {tls.ca}\ntls_server_name = localhost\n")
    rc, out, _ = _cmd(s, by_name, "breaches")
    assert rc == 0 and b1.id in out, out


def test_tls_errors_stop_run_and_load():
    tls = h.make_tls()
    r = h.Redis(tls=tls)
    plain = h.Redis()
    issuers, b1, txns, _expected = _scenario(504, "tlsbad", n=20)
    s = cw.Stack(issuers, partitions=2, redis=r,
                 redis_ini=f"tls = on\ntls_ca_file = {tls.ca}\n")
    s.kafka  # `run` checks Kafka before Redis
    s.cardwatch(*_load_args(s, b1))   # the right settings work
    d = h.tmpdir("replay")
    src = d / "txns.jsonl"
    src.write_text("".join(json.dumps(t) + "\n" for t in txns))
    replay = ["replay", "--input", src, "--output", d / "alerts.jsonl"]

    cases = [
        ("other-ca", f"address = {r.address}\ntls = on\ntls_ca_file = {tls.other_ca}\n",
         ["certificate verify failed", r.address], 10),
        ("wrong-name", f"address = {r.address}\ntls = on\ntls_ca_file = {tls.ca}\n"
         "tls_server_name = wrong.example\n",
         ["certificate verify failed", "hostname mismatch"], 10),
        # TLS to a plain-text port: no handshake answer within timeout_ms
        ("plain-port", f"address = {plain.address}\ntls = on\ntls_ca_file = {tls.ca}\n"
         "timeout_ms = 1000\n", ["TLS", plain.address, "is it a TLS port?"], 5),
    ]
    figures = []
    for name, lines, words, max_s in cases:
        cfg = _with_redis(s, name, lines)
        for args in (_load_args(s, b1), replay, ["run", "--no-progress"]):
            out, secs = _refused(s, cfg, args, words, max_s=max_s)
            figures.append(f"{name}/{args[0]} {secs:.2f}s")
    assert plain.call("DBSIZE") == 0
    assert not (d / "alerts.jsonl").exists(), "a refused replay left an output file"
    print(f"figure: TLS errors reported after: {', '.join(figures)}")


def test_tls_redis_down_at_start_is_waited_for():
    """Not reachable is not a TLS error: as without TLS, `run` starts with
    intake paused (/readyz 503) and goes on once Redis is back."""
    tls = h.make_tls()
    r = h.Redis(tls=tls)
    issuers, b1, txns, expected = _scenario(507, "tlsdown", n=200)
    s = cw.Stack(issuers, partitions=2, redis=r,
                 redis_ini=f"tls = on\ntls_ca_file = {tls.ca}\n")
    s.load(b1)
    r.stop(save=True)                       # down; its data comes back with it
    s.send(txns)
    proc = s.run()
    h.wait_until(lambda: not proc.alive or s.ready()[0] == 503, 20, "/readyz 503")
    assert proc.alive, f"cardwatch run exited while Redis was down:\n{proc.log_text(30)}"
    assert s.metrics().get("cardwatch_redis_up") == 0
    r.start()
    h.wait_until(lambda: s.ready()[0] == 200 and
                 s.metrics().sum("cardwatch_events_total") == len(txns), 30,
                 f"/readyz 200 and {len(txns)} events processed")
    s.terminate(proc)
    cw.check_alerts(s.alerts(), expected, exact_once=True)


def test_mutual_tls_runs_end_to_end_and_needs_the_client_certificate():
    tls = h.make_tls()
    r = h.Redis(tls=tls, tls_auth_clients="yes")
    issuers, b1, txns, expected = _scenario(505, "mtls")
    s = cw.Stack(issuers, partitions=2, redis=r,
                 redis_ini=f"tls = on\ntls_ca_file = {tls.ca}\n"
                 f"tls_cert_file = {tls.client_cert}\ntls_key_file = {tls.client_key}\n")
    _end_to_end(s, b1, txns, expected)
    no_cert = _with_redis(s, "no-client-cert",
                          f"address = {r.address}\ntls = on\ntls_ca_file = {tls.ca}\n")
    _refused(s, no_cert, _load_args(s, b1), ["TLS", r.address], max_s=10)


# --------------------------------------------------------------------------
# check

def test_check_accepts_a_tls_and_acl_config():
    tls = h.make_tls()
    pw = secrets.token_urlsafe(18)
    r = _acl_redis(pw, tls=tls, tls_auth_clients="yes")
    issuers, b1, _txns, _expected = _scenario(506, "chk", n=10)
    pw_file = _secret_file(pw)
    redis_ini = (f"username = {USER}\npassword_file = {pw_file}\n"
                 f"tls = on\ntls_ca_file = {tls.ca}\ntls_cert_file = {tls.client_cert}\n"
                 f"tls_key_file = {tls.client_key}\ntls_server_name = localhost\n")
    s = cw.Stack(issuers, partitions=1, redis=r, redis_ini=redis_ini)
    res = s.cardwatch("check")
    out = res.stdout.decode()
    assert out.rstrip().splitlines()[-1] == "OK", out
    line = [ln for ln in out.splitlines() if ln.startswith("  redis ")]
    assert len(line) == 1 and f"127.0.0.1:{r.port}" in line[0], out
    assert "TLS" in line[0] and f"AUTH as {USER}" in line[0], out
    # the config is usable as checked: TLS + ACL together
    s.cardwatch(*_load_args(s, b1))
    out = s.cardwatch("breaches").stdout.decode()
    assert b1.id in out and "committed" in out, out

    # what check finds without connecting: a readable password file, a missing CA
    addr = f"address = {r.address}\n"
    for name, lines, word in (
            ("open-password-file", addr + redis_ini.replace(
                str(pw_file), str(_secret_file(pw, mode=0o644))), "chmod 600"),
            ("missing-ca", addr + redis_ini.replace(str(tls.ca), str(s.dir / "no-ca.crt")),
             str(s.dir / "no-ca.crt"))):
        rc, text, _secs = _cmd(s, _with_redis(s, name, lines), "check")
        assert rc == 1 and word in text and "NOT USABLE" in text, f"{name}: exit {rc}:\n{text}"
    _no_noperm(s)
    _nowhere(s, [pw])
