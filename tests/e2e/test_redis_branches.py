"""Branches of the Redis path the other scenarios leave out (issue 12),
each against real redis-server processes:

- the connection module through its probe (build/redis_probe; exit 0
  answered, 1 not reachable / timed out, 2 auth, 3 TLS): an error reply
  that only looks like a "not the master" word is the caller's, the bare
  word drops the connection and the command is answered after the
  reconnect; a wait that ends before any failure says so without a
  reason; the default user named when a password alone is refused; a
  TLS server name that is an IPv6 address is verified as an IP;
- `cardwatch load | breaches | unload` over a Redis that refuses one
  command (ACL) at the step that has no other test, and over data no
  load writes (a breach hash without its status, a listed breach without
  a hash, a card entry whose key id is too long), plus a list whose every
  row is rejected and a load stopped by SIGINT.

What must hold: the exit status and the message name the cause, and
Redis holds what the message says (nothing committed that was refused,
the breach listed as the message says)."""

import os
import re
import signal
import subprocess
import time

import harness as h
import cwstack as cw
from cwstack import CardMaker

PREFIX = "cw"                  # [redis] prefix default
LOAD = ["--window-start", "2024-01-01", "--window-end", "2024-01-31"]


def _probe(*args, timeout=30):
    """The probe to completion: (exit status, stdout lines, stderr)."""
    res = h.run_tool([h.tool("redis_probe"), *map(str, args)], timeout=timeout, check=False)
    return (res.returncode, res.stdout.decode(errors="replace").splitlines(),
            res.stderr.decode(errors="replace"))


def _last_error(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("redis_probe: ")]
    assert lines, f"no 'redis_probe: ' line on stderr:\n{err}"
    return lines[-1]


def _cmd(s, *args, timeout=60):
    """cardwatch ARGS on the stack's config: (exit status, stdout, stderr)."""
    args = [str(a) for a in args]
    res = h.run_tool([h.tool("cardwatch"), args[0], "--config", s.config, *args[1:]],
                     timeout=timeout, check=False)
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in err, f"cardwatch {' '.join(args)}: {bad}:\n{err[-4000:]}"
    return res.returncode, out, err


def _on_terminal(s, *args, timeout=60):
    """cardwatch ARGS with stderr on a pseudo-terminal (so it draws its
    progress line): (exit status, stdout, what the terminal showed)."""
    args = [str(a) for a in args]
    master, slave = os.openpty()
    try:
        p = subprocess.Popen([h.tool("cardwatch"), args[0], "--config", str(s.config),
                              *args[1:]], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the terminal's last writer is gone
                break
            if not data:
                break
            chunks.append(data)
        out = p.stdout.read().decode(errors="replace")
        rc = p.wait(timeout)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return rc, out, b"".join(chunks).decode(errors="replace")


def _wchan(pid):
    """What the process waits on in the kernel ("" when it runs)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read()
    except OSError:
        return ""


def _breach_rows(out):
    """`cardwatch breaches` table -> {breach: status text}."""
    rows = {}
    for line in out.splitlines()[1:]:
        m = re.match(r"(\S+)\s+\S+\s+\S+\s+\d+\s+(committed|UNLOADING|"
                     r"LOADING \(not monitored\)|INCOMPLETE \(of \d*\))", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def _csv(s, name, cards, extra=""):
    path = s.dir / f"{name}.csv"
    path.write_text("pan,expiry\n" + "".join(f"{p},2612\n" for p in cards) + extra)
    return path


def _refusing(s, acl):
    """The default user without the ACL rule acl until the block ends."""
    class _Ctx:
        def __enter__(self):
            s.redis.call("ACL", "SETUSER", "default", acl)

        def __exit__(self, *exc):
            s.redis.call("ACL", "SETUSER", "default", "+@all")
    return _Ctx()


# --------------------------------------------------------------------------
# the connection (redis_probe)

def test_probe_error_words_waits_and_the_default_user():
    """An error reply "READONLYX ..." is not the READONLY word: it is the
    command's answer (printed, exit 0). A bare "READONLY" (a script's
    error table) means "not the master": the connection is dropped and
    the command sent again, so the script runs twice and its second answer
    is printed. A wait shorter than the command (BLPOP) ends with "did not
    answer within 300 ms" and no reason after it; a sentinel that takes
    the connection and never answers (a stopped redis-server) the same for
    the master's name. A password alone (no user) that Redis refuses names
    the default user."""
    with h.Redis() as r:
        a = ["--address", r.address, "--log-level", "warn"]
        rc, out, err = _probe(*a, "EVAL", "return {err='READONLYX is not the word'}", 0)
        assert (rc, out) == (0, ["(error) READONLYX is not the word"]), (rc, out, err)
        assert "lost" not in err, err
        once = ("if redis.call('INCR', KEYS[1]) == 1 then return {err='READONLY'} end "
                "return 'answered after the reconnect'")
        rc, out, err = _probe(*a, "EVAL", once, 1, "runs")
        assert (rc, out) == (0, ["answered after the reconnect"]), (rc, out, err)
        assert f"Redis {r.address} lost (READONLY)" in err, err
        assert r.call("GET", "runs") == b"2"      # sent again, not lost

        rc, out, err = _probe(*a, "--timeout-ms", 10000, "--wait-ms", 300, "BLPOP", "q", 5)
        assert rc == 1 and out == [], (rc, out, err)
        assert _last_error(err) == \
            f"redis_probe: Redis {r.address} did not answer within 300 ms", err
        r.call("RPUSH", "q", "x")                 # ends the blocked BLPOP

        r.pause()
        try:
            rc, out, err = _probe("--sentinels", r.address, "--master", "cw", "--log-level",
                                  "warn", "--timeout-ms", 10000, "--wait-ms", 300, "PING")
        finally:
            r.resume()
        assert rc == 1 and out == [], (rc, out, err)
        assert _last_error(err) == \
            "redis_probe: Redis master 'cw' did not answer within 300 ms", err

    pw = h.tmpdir("pw") / "redis.pw"
    fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("not-the-password\n")
    with h.Redis(requirepass="the-password-1") as r:
        rc, out, err = _probe("--address", r.address, "--password-file", pw, "PING")
        assert rc == 2 and out == [], (rc, out, err)
        assert _last_error(err).startswith(
            f"redis_probe: Redis {r.address} refused user 'default': WRONGPASS"), err
        assert "not-the-password" not in err


def test_probe_tls_server_name_as_an_ipv6_address():
    """With TLS, a server name that is an IPv6 address is checked against
    the certificate's IP addresses (not sent as SNI): the harness's server
    certificate holds 127.0.0.1 and localhost only, so --server-name ::1
    is refused as a TLS error naming the mismatch, while --server-name
    127.0.0.1 is answered."""
    tls = h.make_tls()
    with h.Redis(tls=tls) as r:
        a = ["--address", r.address, "--tls", "--ca", tls.ca, "--timeout-ms", 2000,
             "--wait-ms", 5000]
        rc, out, err = _probe(*a, "--server-name", "127.0.0.1", "PING")
        assert (rc, out) == (0, ["PONG"]), (rc, out, err)
        rc, out, err = _probe(*a, "--server-name", "::1", "PING")
        assert rc == 3 and out == [], (rc, out, err)
        msg = _last_error(err)
        assert f"TLS to Redis {r.address} failed: certificate verify failed" in msg, msg
        assert "IP address mismatch" in msg, msg


# --------------------------------------------------------------------------
# load, breaches, unload

def test_breach_commands_over_hand_written_data_and_single_refusals():
    """`cardwatch load | breaches | unload` where the other scenarios do
    not go: a list whose every row is rejected loads nothing and says so;
    a breach hash without its status (data of an older version) and a
    listed breach without a hash count as committed in the listing and in
    --confirm, one whose recorded count the set does not hold is
    "incomplete" in the JSON listing;
    HSETNX refused stops a load before anything is staged, HGETALL refused
    stops the listing with exit 1 (the rows it could read still printed),
    EVAL refused leaves a reloaded breach committed as before; a breach
    whose key_id is longer than any key id is unloaded from the configured
    key's card buckets; a removal refused while the progress line is drawn
    (stderr a terminal) clears it and gives the reason."""
    s = cw.Stack(cw.three_issuers(), partitions=1)
    port = s.redis.port
    mk = CardMaker(4242)
    good = [mk.card("400001") for _ in range(3)]

    # every row rejected: exit 0, nothing loaded, the warning says why
    bad = [cw.luhn_break(p) for p in good]
    rc, out, err = _cmd(s, "load", "--breach", "rej", *LOAD, "--elements", "pan",
                        _csv(s, "rej", bad))
    assert rc == 0, (rc, out, err)
    assert "0 cards loaded (0 new), 3 rejected" in out, out
    assert "(every row was rejected); breach rej holds 0 cards" in err, err

    # a committed breach to work on
    rc, out, err = _cmd(s, "load", "--breach", "ok", *LOAD, "--elements", "pan",
                        _csv(s, "ok", good))
    assert rc == 0 and "3 cards loaded (3 new)" in out, (rc, out, err)

    # HSETNX refused: the load stops before staging anything
    with _refusing(s, "-hsetnx"):
        rc, out, err = _cmd(s, "load", "--breach", "new1", *LOAD, "--elements", "pan",
                            _csv(s, "new1", good[:1]))
    assert rc == 1 and f"Redis 127.0.0.1:{port} refused HSETNX: NOPERM" in err, (rc, err)
    # (the metadata written first stays; nothing is staged or listed)
    assert s.redis.call("HGET", f"{PREFIX}:breach:new1", "status") is None
    assert s.redis.call("SISMEMBER", f"{PREFIX}:breaches", "new1") == 0
    s.redis.call("DEL", f"{PREFIX}:breach:new1")

    # EVAL (the count before the commit, then the commit) refused on a
    # reload: committed as before
    with _refusing(s, "-eval"):
        rc, out, err = _cmd(s, "load", "--breach", "ok", *LOAD, "--elements", "pan",
                            _csv(s, "ok", good))
    assert rc == 1, (rc, out, err)
    assert f"refused the count before the commit: NOPERM" in err, err
    assert "breach ok was not committed after" in err and \
        "it stays as committed before" in err, err
    assert s.redis.call("HGET", f"{PREFIX}:breach:ok", "status") == b"committed"

    # hand-written: a hash without status or recorded count (one card's
    # record names it), a listed id without hash
    bare_card = mk.card("400001")
    s.redis.call("HSET", f"{PREFIX}:breach:bare", "elements", "pan", "members", "1")
    cw.put_card_record(s.redis, bare_card, "bare=", prefix=PREFIX)
    s.redis.call("SADD", f"{PREFIX}:breaches", "bare", "ghost")
    rc, out, err = _cmd(s, "breaches")
    assert rc == 0, (rc, out, err)
    # (no status: data of a version before it, committed; a recorded count
    # the set does not hold: incomplete)
    s.redis.call("HSET", f"{PREFIX}:breach:ok", "cards", "5")
    rows = _breach_rows(out)
    assert rows == {"ok": "committed", "bare": "committed", "ghost": "committed",
                    "rej": "committed"}, out
    rc, out, err = _cmd(s, "breaches", "--json")
    assert rc == 0, (rc, out, err)
    status = {m.group(1): m.group(2) for m in
              re.finditer(r'"breach_id":"([^"]+)".*?"status":"([a-z]+)"', out)}
    assert status == {"ok": "incomplete", "bare": "committed", "ghost": "committed",
                      "rej": "committed"}, out
    assert "the exposed-card set is not complete" in err, err
    s.redis.call("HSET", f"{PREFIX}:breach:ok", "cards", "3")
    rc, out, err = _cmd(s, "breaches", "--confirm")
    assert rc == 0, (rc, out, err)
    # (a listed breach without any status counts as committed, as listed)
    assert "exposed-card set confirmed as it is now: 4 breaches, 4 cards" in out, out

    # HGETALL refused: exit 1, the listing's header still printed
    with _refusing(s, "-hgetall"):
        rc, out, err = _cmd(s, "breaches")
    assert rc == 1 and f"refused HGETALL: NOPERM" in err, (rc, out, err)
    assert out.startswith("breach "), out
    s.redis.call("SREM", f"{PREFIX}:breaches", "bare", "ghost")
    assert cw.delete_card_record(s.redis, bare_card, prefix=PREFIX) == "bare="

    # unload: a breach whose key id is too long for one is unloaded from
    # the layout of the configured key
    s.redis.call("HSET", f"{PREFIX}:breach:ok", "key_id", "k" * 80)

    # a removal refused with --progress: the reason, nothing unloaded
    rc, out, err = _cmd(s, "load", "--breach", "two", *LOAD, "--elements", "pan",
                        _csv(s, "two", good[:2]))
    assert rc == 0, (rc, out, err)
    with _refusing(s, "-eval"):
        rc, out, err = _on_terminal(s, "unload", "two")
    assert rc == 1 and "refused removing cards: NOPERM" in err, (rc, err)
    assert "\r\x1b[K" in err and "unloaded" not in out, (out, err)
    rc, out, err = _cmd(s, "unload", "ok")
    assert rc == 0 and "breach ok unloaded: 3 cards removed" in out, (rc, out, err)
    assert not any("ok=" in r for r in cw.card_records(s.redis, prefix=PREFIX).values())


def test_load_interrupted_by_sigint():
    """SIGINT while `cardwatch load` waits for its list (a named pipe whose
    writer is slow) stops it with exit 130 and "interrupted by SIGINT";
    the breach stays staged (LOADING), never committed."""
    s = cw.Stack(cw.three_issuers(), partitions=1)
    d = h.tmpdir("sigint")
    fifo = d / "list.fifo"
    os.mkfifo(fifo)
    p = h.spawn([h.tool("cardwatch"), "load", "--config", s.config, "--breach", "int",
                 *LOAD, "--elements", "pan", fifo], name="cardwatch-load", log=d / "load.log")
    h.wait_until(lambda: "connected" in p.log_text() or not p.alive, 30,
                 "the load to connect to Redis")
    assert p.alive, p.log_text()
    # exactly one 64 KiB read of the list's reader: the next read then
    # waits with nothing read yet (a signal while a read holds part of a
    # block is only seen when the block fills or the list ends)
    cards = CardMaker(4343).cards(["400001"], 2000)
    data = b"pan,expiry,holder\n"
    for pan in cards:
        row = f"{pan},2612,x\n".encode()
        if len(data) + len(row) > 65536 - 40:
            break
        data += row
    data += b"4000000000000002,2612," + b"x" * (65536 - len(data) - 23) + b"\n"
    assert len(data) == 65536
    with open(fifo, "wb") as w:
        w.write(data)
        w.flush()
        h.wait_until(lambda: s.redis.call("SISMEMBER", f"{PREFIX}:breaches", "int") == 1,
                     30, "the breach to be staged")
        # the signal must find the load blocked reading the pipe (one sent
        # during its Redis set-up is only seen at the end of the list)
        h.wait_until(lambda: "pipe" in _wchan(p.pid), 30, "the load to wait for the list")
        p.send_signal(signal.SIGINT, group=False)
        rc = p.wait(30)
    text = p.log_text()
    assert rc == 128 + signal.SIGINT, (rc, text)
    assert re.search(r"load of breach int interrupted by SIGINT after \d+ rows read", text), text
    assert "none of it is visible to lookups" in text, text
    assert s.redis.call("HGET", f"{PREFIX}:breach:int", "status") == b"loading"
