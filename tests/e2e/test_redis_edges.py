"""The edges of the Redis path that the main scenarios do not reach, each
against real processes: redis-server (IPv6, TLS, ACL users, a renamed
command, a script that runs too long, a data set still loading, a master
demoted under its clients), redis-sentinel, an HTTP server standing in
for "some other service on that port", and `cardwatch replay` copying
the exposed set (issue 12: every failure path tested).

What must hold, as the user sees it:
- the probe (build/redis_probe, a thin CLI over processor/redis_conn.c;
  exit 1 not reachable, 2 auth, 3 TLS, 4 not the master, 5 bad option,
  6 not a Redis) ends each misconfiguration with its own status and a
  message naming the cause, and waits out what is only transient (a busy
  or loading Redis) without losing or misplacing an answer;
- a reply nobody asked for (a message pushed after SUBSCRIBE sent as a
  plain command) is never handed to the next command;
- a replay copies a large exposed set whole (more than one read of card
  buckets and one lookup chunk, cards of two breaches, another key id's
  cards left out) and gives exactly the expected alerts; a Redis that refuses part
  of the copy, or a SIGTERM in the middle of it, stops it with the reason
  and no output; data no load writes (a corrupt card record, a breach
  without its window, an id too long) is named, never a crash;
- the feed's subscription notices a hung Redis (keep-alive PING) and a
  refused channel, and comes back by itself;
- `cardwatch run` stopped while Redis pauses writes after an alert was
  delivered sends it again on the next run (at least once, never lost),
  and skips a window entry written by another version.

Unit-level option checks (sentinel list syntax, bad options) are
tests/unit/test_redis_conn.c's."""

import json
import os
import random
import signal
import socket
import sys
import threading

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn
from test_redis_conn import _probe, _last_error, _Stream, _secret_file


# --------------------------------------------------------------------------
# helpers

def _http_server():
    """`python3 -m http.server` on a free loopback port: a real service
    that is not Redis (it answers RESP with an HTML error page). Returns
    (Proc, "127.0.0.1:port")."""
    port = h.free_port()
    d = h.tmpdir("http")
    proc = h.spawn([sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1",
                    "--directory", d], name="http-server")

    def up():
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    h.wait_until(lambda: up() or not proc.alive, 10, f"http.server on port {port}")
    assert proc.alive, proc.log_text()
    return proc, f"127.0.0.1:{port}"


def _sentinel(redis, name="cw"):
    """One redis-sentinel that names `redis` as master `name` (it answers
    from its configuration at once: no quorum or replica to wait for)."""
    d = h.tmpdir("sentinel")

    def conf(port):
        return "\n".join([
            "bind 127.0.0.1", f"port {port}", "daemonize no", f"dir {d}", 'logfile ""',
            f"sentinel monitor {name} 127.0.0.1 {redis.port} 1"]) + "\n"
    return h.Sentinel(d, conf).start()


def _errors(err):
    """The probe's WARN and ERROR log lines."""
    return [ln for ln in err.splitlines() if " WARN " in ln or " ERROR " in ln]


# --------------------------------------------------------------------------
# addresses

def test_probe_ipv6_host_names_and_addresses_that_cannot_work():
    """An IPv6 address in brackets and a host name (localhost, from
    /etc/hosts) reach a Redis listening on ::1 and 127.0.0.1; the address
    is shown as "[::1]:PORT". A name that does not resolve and a
    link-local IPv6 address without its interface (the kernel refuses the
    connect at once) are reported as not reachable (exit 1) naming the
    address and why - after the wait, because a name may resolve later."""
    r = h.Redis(extra_args=["--bind", "127.0.0.1", "::1"])
    v6 = f"[::1]:{r.port}"
    rc, out, err, _ = _probe("--address", v6, "SET", "k", "over-ipv6")
    assert (rc, out) == (0, ["OK"]), (rc, out, err)
    assert f"Redis {v6} connected" in err, err
    assert r.call("GET", "k") == b"over-ipv6"
    rc, out, err, _ = _probe("--address", f"localhost:{r.port}", "GET", "k")
    assert (rc, out) == (0, ["over-ipv6"]), (rc, out, err)

    rc, out, err, _ = _probe("--address", f"no-such-host.invalid:{r.port}",
                             "--wait-ms", 1000, "PING")
    assert rc == 1 and out == [], (rc, out, err)
    msg = _last_error(err)
    assert f"Redis no-such-host.invalid:{r.port} did not answer within 1000 ms" in msg, msg
    assert "cannot resolve 'no-such-host.invalid'" in msg, msg

    rc, out, err, _ = _probe("--address", f"[fe80::1]:{r.port}", "--wait-ms", 1000, "PING")
    assert rc == 1 and out == [], (rc, out, err)
    msg = _last_error(err)
    assert f"Redis [fe80::1]:{r.port} did not answer within 1000 ms: " in msg, msg
    # logged once (WARN), not once per attempt
    assert len(_errors(err)) == 1, err
    r.stop()


# --------------------------------------------------------------------------
# sentinels

def test_probe_sentinel_list_with_bad_entries():
    """The sentinels are asked in list order until one names the master:
    a name that does not resolve, a service that is not Redis (HTTP), a
    data node (not a sentinel: it answers the SENTINEL command with an
    error, reached over IPv6 in brackets) and a sentinel that takes the
    connection but does not answer (SIGSTOP; --timeout-ms 300) are each
    passed over, and the real sentinel after them answers. When no entry
    can answer, the one message (exit 1) says what each said - not only
    "no sentinel knows" the master."""
    r = h.Redis(extra_args=["--bind", "127.0.0.1", "::1"])
    r.call("SET", "k", "via-sentinel")
    s = _sentinel(r)
    hung = _sentinel(r)
    http, http_addr = _http_server()
    data_v6 = f"[::1]:{r.port}"
    bad = f"no-such-host.invalid:26379, {http_addr},{data_v6}"

    rc, out, err, _ = _probe("--sentinels", bad, "--master", "cw", "--wait-ms", 1000,
                             "GET", "k")
    assert rc == 1 and out == [], (rc, out, err)
    msg = _last_error(err)
    assert "Redis master 'cw' did not answer within 1000 ms: no sentinel knows master " \
           "'cw' (tried no-such-host.invalid:26379: cannot resolve 'no-such-host.invalid'" \
           in msg, msg
    assert f"; {http_addr}: Protocol error" in msg, msg
    assert f"; {data_v6}: answered 'ERR unknown command 'SENTINEL'" in msg, msg

    hung.proc.send_signal(signal.SIGSTOP)
    try:
        rc, out, err, _ = _probe("--sentinels", f"{bad},{hung.address},{s.address}",
                                 "--master", "cw", "--timeout-ms", 300,
                                 "--log-level", "debug", "GET", "k")
    finally:
        hung.proc.send_signal(signal.SIGCONT)
    assert (rc, out) == (0, ["via-sentinel"]), (rc, out, err)
    assert f"sentinel {hung.address}: no answer within 300 ms" in err, err
    assert f"Redis master for 'cw' is now 127.0.0.1:{r.port}" in err, err
    # the entries passed over are not failures of the connection
    assert _errors(err) == [], err
    http.stop()
    r.stop()


# --------------------------------------------------------------------------
# not a Redis, not the master, not allowed to ask

def test_probe_refuses_what_is_not_a_usable_master():
    """Each ends the probe at once with its own exit status and a message
    naming the cause: an HTTP server (exit 6, "not RESP"; over TLS exit 3,
    "is it a TLS port?"), a sentinel's port given as the address (exit 4,
    "is a sentinel, not the master"), a Redis whose ROLE command was
    renamed away (exit 6, naming ROLE and Redis's answer) and an ACL user
    not allowed ROLE (exit 2, naming the user and NOPERM)."""
    t = h.make_tls()
    http, http_addr = _http_server()
    rc, out, err, _ = _probe("--address", http_addr, "--wait-ms", 5000, "PING")
    assert rc == 6 and out == [], (rc, out, err)
    msg = _last_error(err)
    assert f"Redis {http_addr} sent something that is not RESP (Protocol error" in msg, msg
    assert "is it a Redis?" in msg, msg
    rc, out, err, _ = _probe("--address", http_addr, "--tls", "--ca", t.ca,
                             "--wait-ms", 5000, "PING")
    assert rc == 3 and out == [], (rc, out, err)
    msg = _last_error(err)
    assert f"TLS to Redis {http_addr} failed: " in msg and "is it a TLS port?" in msg, msg

    r = h.Redis(users={"norole": ("norole-pw", "~* &* +@all -role")})
    s = _sentinel(r)
    rc, out, err, _ = _probe("--address", s.address, "--wait-ms", 5000, "PING")
    assert rc == 4 and out == [], (rc, out, err)
    assert f"Redis {s.address} is a sentinel, not the master" in _last_error(err), err

    pw = _secret_file(h.tmpdir("secrets"), "norole-pw")
    rc, out, err, _ = _probe("--address", r.address, "--user", "norole", "--password-file",
                             pw, "--wait-ms", 5000, "PING")
    assert rc == 2 and out == [], (rc, out, err)
    msg = _last_error(err)
    assert f"Redis {r.address} refused ROLE for user 'norole': NOPERM" in msg, msg
    assert "norole-pw" not in err

    renamed = h.Redis(extra_args=["--rename-command", "ROLE", ""])
    rc, out, err, _ = _probe("--address", renamed.address, "--wait-ms", 5000, "PING")
    assert rc == 6 and out == [], (rc, out, err)
    msg = _last_error(err)
    assert f"Redis {renamed.address} answered ROLE with 'ERR unknown command 'ROLE'" in msg, msg
    for p in (renamed, r, http):
        p.stop()


# --------------------------------------------------------------------------
# TLS set-up

def test_probe_tls_files_that_cannot_be_used():
    """Each unusable TLS file stops the probe before any connection (exit
    5) with one message naming the file and what is wrong with it: a
    missing or non-PEM certificate, a non-PEM CA file, a key that is not
    PEM, a passphrase-protected key (refused, never a prompt on the
    terminal: it must be an unencrypted PEM key), a key that belongs to
    another certificate, a certificate without its key, and a server name
    longer than TLS can carry (255 characters). With the right files the
    same command works (mutual TLS)."""
    t = h.make_tls()
    r = h.Redis(tls=t, tls_auth_clients="yes")
    d = h.tmpdir("tls-bad")
    garbage = d / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    encrypted = d / "client-encrypted.key"
    h.run_tool(["openssl", "pkey", "-in", t.client_key, "-aes256", "-passout",
                "pass:cw-e2e-passphrase", "-out", encrypted])
    os.chmod(encrypted, 0o600)
    assert b"ENCRYPTED" in encrypted.read_bytes()
    missing = d / "missing.crt"
    base = ["--address", r.address, "--tls", "--wait-ms", 5000]
    good = ["--ca", t.ca, "--cert", t.client_cert, "--key", t.client_key]
    assert _probe(*base, *good, "PING")[:2] == (0, ["PONG"])

    cases = [
        (["--ca", t.ca, "--cert", missing, "--key", t.client_key],
         f"Redis TLS certificate file {missing}: No such file or directory"),
        (["--ca", t.ca, "--cert", garbage, "--key", t.client_key],
         f"Redis TLS certificate file {garbage}: "),
        (["--ca", garbage], f"Redis TLS CA file {garbage}: "),
        (["--ca", t.ca, "--cert", t.client_cert, "--key", garbage],
         f"Redis TLS key file {garbage}: "),
        (["--ca", t.ca, "--cert", t.client_cert, "--key", encrypted],
         f"Redis TLS key file {encrypted}: "),
        (["--ca", t.ca, "--cert", t.client_cert, "--key", t.server_key],
         f"Redis TLS key file {t.server_key} does not match the certificate in "
         f"{t.client_cert}"),
        (["--ca", t.ca, "--cert", t.client_cert],
         "a Redis TLS client certificate needs its key and the key its certificate"),
        (["--ca", t.ca, "--server-name", "n" * 256],
         "the Redis TLS server name is longer than 255 characters"),
    ]
    for args, want in cases:
        rc, out, err, _ = _probe(*base, *args, "PING")
        assert rc == 5 and out == [], (args, rc, out, err)
        msg = _last_error(err)
        assert want in msg, (args, msg)
        assert "Redis 127.0.0.1" not in err, f"{args}: it connected:\n{err}"
    # the key errors say what is wanted
    rc, out, err, _ = _probe(*base, "--ca", t.ca, "--cert", t.client_cert, "--key", encrypted,
                             "PING")
    assert "it must be an unencrypted PEM key" in _last_error(err), err
    assert "cw-e2e-passphrase" not in err
    # the longest name TLS carries is accepted (and then fails verification)
    longest = ".".join(["n" * 63] * 4)
    assert len(longest) == 255
    rc, out, err, _ = _probe(*base, *good, "--server-name", longest, "PING")
    assert rc == 3 and "hostname mismatch" in _last_error(err), (rc, err)
    r.stop()


# --------------------------------------------------------------------------
# transient refusals: waited out, never a configuration error

def _wait_line(p, text, timeout=10):
    h.wait_until(lambda: text in p.err(), timeout, f"the probe to log {text!r}")


def test_probe_waits_for_a_client_slot_plain_and_tls():
    """A Redis at its client limit (maxclients, the harness holding the
    only slot) turns the probe away - over plain text with "ERR max number
    of clients reached", over TLS by closing during the handshake. Both
    are waited out like an outage (never a TLS error: that would stop
    `cardwatch run` at start-up as misconfigured); once the slot is free
    the probe is answered (exit 0)."""
    t = h.make_tls()
    for r, tls in ((h.Redis(), []), (h.Redis(tls=t), ["--tls", "--ca", t.ca])):
        r.call("SET", "k", "slot")                 # the harness's kept connection
        r.call("CONFIG", "SET", "maxclients", "1")
        p = _Stream("--address", r.address, *tls, "--timeout-ms", 500, "--wait-ms", 20000,
                    "GET", "k")
        try:
            _wait_line(p, "ERR max number of clients reached" if not tls
                       else f"Redis {r.address}: closed during the TLS handshake")
            assert p.proc.alive, p.err()
        finally:
            r._drop_conn()                          # the slot is free
        rc = p.wait(30)
        assert (rc, p.lines()) == (0, ["slot"]), (tls, rc, p.lines(), p.err())
        assert len(_errors(p.err())) == 1, p.err()  # said once, not per attempt
        assert r.call("CONFIG", "SET", "maxclients", "10000") == "OK"
        r.stop()


def test_probe_waits_out_a_busy_script_and_a_loading_redis():
    """Two states in which Redis answers every command with an error that
    means "not now": a script running past busy-reply-threshold (BUSY) and
    a restart still loading its data set (LOADING; slowed down with
    key-load-delay). The probe waits (nothing is answered with the error),
    logs the reason once, and is answered when Redis is ready: after
    SCRIPT KILL, after the load. It connects once: a loading Redis
    answers ROLE, so a handshake that stopped there came "up" only to
    lose every command to LOADING and reconnect at once, 10 times a
    second, a WARN and an INFO line each time, for the whole load."""
    r = h.Redis()
    r.call("SET", "k", "after-the-script")
    r.call("CONFIG", "SET", "busy-reply-threshold", "100")
    busy = r.client()
    busy.sock.sendall(h.RespConnection.encode(["EVAL", "while true do end", "0"]))

    def is_busy():
        c = r.client()
        try:
            c.call("PING")
        except h.RespError as e:
            return "BUSY" in str(e)
        finally:
            c.close()
        return False
    h.wait_until(is_busy, 10, "the script to make Redis busy")
    p = _Stream("--address", r.address, "--wait-ms", 20000, "GET", "k")
    _wait_line(p, f"Redis {r.address}: BUSY Redis is busy running a script")
    assert p.proc.alive and p.lines() == [], p.err()
    killer = r.client()
    assert killer.call("SCRIPT", "KILL") == "OK"
    killer.close()
    rc = p.wait(30)
    assert (rc, p.lines()) == (0, ["after-the-script"]), (rc, p.lines(), p.err())
    assert len(_errors(p.err())) == 1, p.err()
    busy.close()

    # a data set that takes a while to load
    r.call("EVAL", "for i = 1, 10000 do redis.call('SET', 'fill:' .. i, i) end", "0")
    r.call("SET", "k", "after-the-load")
    r.stop(save=True)
    r.extra_args += ["--key-load-delay", "150", "--loading-process-events-interval-bytes",
                     "1024"]
    r.proc = h.spawn(r._args(), name="redis-server", log=r.log)
    p = _Stream("--address", r.address, "--wait-ms", 30000, "GET", "k")
    rc = p.wait(40)
    err = p.err()
    assert (rc, p.lines()) == (0, ["after-the-load"]), (rc, p.lines(), err)
    assert "LOADING Redis is loading the dataset in memory" in err, \
        f"the probe did not meet the load:\n{err}"
    assert err.count(f"Redis {r.address} connected") == 1, err
    assert len(_errors(err)) <= 2, err    # refused while not listening yet; LOADING
    assert int(r.call("DBSIZE")) == 10001
    r.stop()


def test_probe_never_takes_an_unasked_reply_as_an_answer():
    """SUBSCRIBE sent as a plain command puts the connection in subscriber
    mode: Redis then pushes every message published on the channel. A
    push arriving while no command waits is not the answer of the next
    command: the connection is dropped ("unasked reply") and made again,
    and the next SUBSCRIBE gets its own answer - the message never shows
    as an answer."""
    r = h.Redis()
    p = _Stream("--address", r.address, "--repeat", 2, "--interval-ms", 1500,
                "SUBSCRIBE", "cw:news")
    h.wait_until(lambda: len(p.lines()) == 3, 10, "the first SUBSCRIBE answered")
    assert r.call("PUBLISH", "cw:news", "pushed-not-asked") == 1
    _wait_line(p, f"Redis {r.address} lost (unasked reply)")
    rc = p.wait(20)
    assert rc == 0, (rc, p.err())
    assert p.lines() == ["subscribe", "cw:news", "1"] * 2, p.lines()
    assert "pushed-not-asked" not in p.err()
    r.stop()


def test_probe_master_demoted_under_its_clients():
    """A master turned into a replica (REPLICAOF) while the probe writes
    to it: the next write is answered READONLY, which is the connection's
    business, not the command's - the probe reconnects, finds a replica
    and stops (exit 4, "is a replica"; with sentinels it would ask them
    again). No write is answered with the READONLY error."""
    other = h.Redis()
    r = h.Redis()
    p = _Stream("--address", r.address, "--repeat", 100, "--interval-ms", 50,
                "INCR", "n")
    h.wait_until(lambda: len(p.lines()) >= 3, 10, "three writes answered")
    r.call("REPLICAOF", "127.0.0.1", other.port)
    rc = p.wait(30)
    err = p.err()
    assert rc == 4, (rc, err)
    out = p.lines()
    assert 3 <= len(out) < 100 and out == [str(i) for i in range(1, len(out) + 1)], out
    assert f"Redis {r.address} lost (READONLY You can't write against a read only " \
           "replica.)" in err, err
    assert f"Redis {r.address} is a replica (read-only); point [redis] at the master, or " \
           "use sentinels" in _last_error(err), err
    r.stop()
    other.stop()


# --------------------------------------------------------------------------
# the replay's copy of the exposed set (processor/snapshot.c)

def _replay(s, *args, timeout=120):
    """`cardwatch replay --config ... ARGS` to completion: (exit status,
    stdout, stderr). No sanitizer may speak."""
    args = [str(a) for a in args]
    res = s.cardwatch("replay", *args, check=False, timeout=timeout)
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in err, f"replay {args}: {bad}:\n{err[-4000:]}"
    return res.returncode, out, err


def _write_txns(d, txns, name="txns.jsonl"):
    path = d / name
    path.write_text("".join(json.dumps(t) + "\n" for t in txns))
    return path


def _other_key_config(s, key_id="e2e-k2"):
    """A copy of the stack's config whose fingerprint key is another one
    (key id key_id): what loads breaches after a key rotation."""
    key = s.dir / f"{key_id}.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{key_id} {'5a' * 32}\n")
    cfg = s.dir / f"cardwatch-{key_id}.ini"
    cfg.write_text(s.config.read_text().replace(f"key_file = {s.key_file}\n",
                                                f"key_file = {key}\n"))
    assert cfg.read_text() != s.config.read_text()
    return cfg


def test_replay_copies_a_large_set_of_two_breaches_and_skips_another_key():
    """A replay copies the exposed set before it reads: here 12,100 cards
    (in more than one read of 256 card buckets, thirteen lookup chunks of
    1,000, its card table grown) of two breaches that share 100 cards, and a
    third breach loaded under another fingerprint key id (after a key
    rotation), whose cards this key cannot match and which the copy
    leaves out. The alerts are exactly the expected ones: a shared card
    names both breaches, a card of the other key's breach alerts only if
    it is in one of the two."""
    issuers = cw.three_issuers()
    mk = CardMaker(1212)
    big = mk.cards(["400001", "4000503", "510000", "52000042"], 12_000)
    extra = mk.cards(["400077", "999999"], 100)
    clean = mk.cards(["400002", "510000"], 50)
    b1 = Breach("edge-big", "2024-01-01", "2024-06-30", ["pan", "expiry"], big)
    b2 = Breach("edge-small", "2024-02-01", "2024-04-30", ["pan", "cvv2"], big[:100] + extra)
    rotated = mk.cards(["400001"], 40)
    b3 = Breach("edge-rotated", "2024-01-01", "2024-12-31", ["pan"], big[100:140] + rotated)
    s = cw.Stack(issuers, partitions=1)
    s.load(b1)
    s.load(b2)
    res = h.run_tool([h.tool("cardwatch"), "load", "--config", _other_key_config(s),
                      "--breach", b3.id, "--window-start", b3.start, "--window-end", b3.end,
                      "--elements", "pan", _csv(s, b3)])
    assert f"{len(b3.cards)} cards loaded" in (res.stdout + res.stderr).decode()
    assert int(s.redis.call("HGET", f"cw:breach:{b3.id}", "members")) == len(b3.cards)
    level, split = s.redis.call("HMGET", f"cw:layout:{cw.KEY_ID}", "level", "split")
    assert 2 ** int(level) + int(split) > 256, "test data: more than one read of 256 buckets"

    rnd = random.Random(1212)
    pick = big[:150] + big[-50:] + extra[:30] + rotated[:20] + clean[:20]
    txns = [txn(f"edge-{i:04d}", pan, cw.day_ms("2024-03-01") + rnd.randrange(40) * 86_400_000,
                rnd) for i, pan in enumerate(pick)]
    expected = cw.expected_alerts(txns, [b1, b2], issuers)
    assert any(len(e["alert"]["breaches"]) == 2 for e in expected.values())
    d = h.tmpdir("replay")
    rc, out, err = _replay(s, "--input", _write_txns(d, txns), "--output", d / "alerts.jsonl")
    assert rc == 0, err[-3000:]
    assert f"exposed set copied: {len(big) + len(extra)} card(s) from 3 breach(es)" in err, err
    got = {a["alert_id"]: a for a in map(json.loads, (d / "alerts.jsonl").read_text()
                                         .splitlines())}
    extra = sorted(set(got) - set(expected))[:3]
    assert sorted(got) == sorted(expected), \
        f"{len(got)} alerts, {len(expected)} expected; extra {extra}"
    for aid, e in expected.items():
        want = [b["breach_id"] for b in e["alert"]["breaches"]]
        assert [b["breach_id"] for b in got[aid]["breaches"]] == want, (aid, got[aid])
    assert b3.id not in (d / "alerts.jsonl").read_text()


def _csv(s, b):
    csv = s.dir / f"breach-{b.id}.csv"
    csv.write_text("pan,expiry\n" + "".join(p + ",2612\n" for p in b.cards))
    return csv


def test_replay_copy_refused_by_the_acl_or_a_corrupt_breach_list():
    """The documented ACL user (deploy/redis/cardwatch.acl) with one
    command taken away at a time, and a breach list holding an id no load
    writes. Without INFO (the eviction and persistence check is
    best-effort) the replay works. Without HKEYS (the copy's read of the
    card buckets, in its script) it stops at once naming the refusal. Without HGETALL (the
    breach metadata the copy resolves cards with) it stops after [replay]
    redis_wait_s naming the refusal - it once said "Redis did not answer"
    (it did: it refused), while a WARN line per 100 ms filled the log; a
    refusal that ends within redis_wait_s is waited out and the replay
    completes. An id too long to be a breach stops it naming the id. No
    output is left by a replay that stopped."""
    from test_redis_security import _acl_redis, USER
    issuers = cw.three_issuers()
    mk = CardMaker(1213)
    cards = mk.cards(["400001", "510000"], 20)
    b1 = Breach("edge-acl", "2024-01-01", "2024-06-30", ["pan"], cards)
    pw = "edge-acl-" + os.urandom(6).hex()
    r = _acl_redis(pw)
    s = cw.Stack(issuers, partitions=1, redis=r,
                 redis_ini=f"username = {USER}\npassword_file = "
                           f"{_secret_file(h.tmpdir('secret'), pw)}\n",
                 extra_ini="[replay]\nredis_wait_s = 1\n")
    s.load(b1)
    rnd = random.Random(1213)
    txns = [txn(f"acl-{i:03d}", cards[i % 20], cw.day_ms("2024-03-01") + i, rnd)
            for i in range(40)]
    expected = cw.expected_alerts(txns, [b1], issuers)
    d = h.tmpdir("replay")
    src = _write_txns(d, txns)
    out_file = d / "alerts.jsonl"

    def replay_without(*cmds):
        r.call("ACL", "SETUSER", USER, *(f"-{c}" for c in cmds))
        try:
            return _replay(s, "--input", src, "--output", out_file)
        finally:
            r.call("ACL", "SETUSER", USER, *(f"+{c}" for c in cmds))

    rc, _out, err = replay_without("info")
    assert rc == 0, err[-3000:]
    assert len(out_file.read_text().splitlines()) == len(expected)
    out_file.unlink()

    rc, _out, err = replay_without("hkeys")
    assert rc == 1, err[-3000:]
    assert f"copying the exposed set: Redis {r.address} refused reading the exposed cards: " \
           "ERR The user executing the script can't run this command" in err, err[-3000:]
    assert not out_file.exists()

    rc, _out, err = replay_without("hgetall")
    assert rc == 1, err[-3000:]
    assert f"Redis {r.address} answered the breach metadata lookup NOPERM" in err and \
        "'hgetall'" in err and "(waited 1 s, [replay] redis_wait_s)" in err, err[-3000:]
    assert "did not answer" not in err, err[-3000:]
    refusals = [ln for ln in err.splitlines() if " WARN exposure: breach metadata for "
                f"'{b1.id}' answered NOPERM" in ln]
    assert len(refusals) == 1, err[-3000:]
    assert not out_file.exists()
    # refused for a moment only (a longer redis_wait_s): the replay waits
    # and finishes once HGETALL is allowed again
    patient = s.dir / "patient.ini"
    patient.write_text(s.config.read_text().replace("redis_wait_s = 1", "redis_wait_s = 60"))
    r.call("ACL", "SETUSER", USER, "-hgetall")
    p = h.spawn([h.tool("cardwatch"), "replay", "--config", patient, "--input", src,
                 "--output", out_file], name="cardwatch-replay", log=d / "patient.log")
    try:
        h.wait_until(lambda: "WARN exposure: breach metadata for" in p.log_text() or
                     not p.alive, 20, "the refusal logged")
    finally:
        r.call("ACL", "SETUSER", USER, "+hgetall")
    assert p.wait(30) == 0, p.log_text()[-3000:]
    assert f"Redis {r.address} answers breach metadata again" in p.log_text()
    assert len(out_file.read_text().splitlines()) == len(expected)
    out_file.unlink()

    long_id = "x" * 200
    r.call("SADD", "cw:breaches", long_id)
    rc, _out, err = _replay(s, "--input", src, "--output", out_file)
    assert rc == 1, err[-3000:]
    assert f"copying the exposed set: breach id too long: {long_id}" in err, err[-3000:]
    assert not out_file.exists()
    r.call("SREM", "cw:breaches", long_id)
    rc, _out, err = _replay(s, "--input", src, "--output", out_file)
    assert rc == 0 and len(out_file.read_text().splitlines()) == len(expected), err[-3000:]


def _stop_at(redis, command, nth=1, word=None):
    """Watches Redis with MONITOR (from a thread) and stops it (SIGSTOP)
    right after it executed the nth `command` (or the nth command whose
    MONITOR line holds `word`, lower case, e.g. a line of a script's text):
    returns the thread (join() it) whose .seen is set once that
    happened."""
    mon = redis.client()
    mon.sock.sendall(h.RespConnection.encode(["MONITOR"]))
    assert mon._read() == "OK"
    word = word or f'"{command.lower()}"'

    def watch():
        seen = 0
        try:
            while True:
                line = mon._read()
                seen += isinstance(line, str) and word in line.lower()
                if seen == nth:
                    redis.pause()
                    t.seen = True
                    return
        except (OSError, ConnectionError):
            return
        finally:
            mon.close()
    t = threading.Thread(target=watch, daemon=True)
    t.seen = False
    t.start()
    return t


def test_replay_sigterm_while_copying_the_exposed_set():
    """SIGTERM in the middle of the copy (Redis stopped with SIGSTOP right
    after the copy's second lookup of card records, an EVAL of the lookup
    script, so its next one waits; the breach metadata is cached by then):
    the replay stops at once - exit 143, "interrupted by SIGTERM",
    no output file - and the copy it abandons frees itself when the
    connection answers its waiting lookup with nothing (under ASan: no
    leak, no use after free). Redis resumed, the same replay completes."""
    issuers = cw.three_issuers()
    mk = CardMaker(1214)
    cards = mk.cards(["400001", "510000", "52000042"], 30_000)
    b1 = Breach("edge-sig", "2024-01-01", "2024-06-30", ["pan"], cards)
    s = cw.Stack(issuers, partitions=1, redis_ini="timeout_ms = 300\n")
    s.load(b1)
    txns = [txn("sig-1", cards[0], cw.day_ms("2024-03-01"))]
    d = h.tmpdir("replay")
    src = _write_txns(d, txns)
    out_file = d / "alerts.jsonl"
    log = d / "replay.log"
    # (the lookup script's EVAL: its first line in the MONITOR line)
    watch = _stop_at(s.redis, "EVAL", nth=2, word="local out = {redis.call('get', keys[1])}")
    p = h.spawn([h.tool("cardwatch"), "replay", "--config", s.config, "--input", src,
                 "--output", out_file], name="cardwatch-replay", log=log)
    try:
        h.wait_until(lambda: watch.seen or not p.alive, 30, "the copy's second lookup")
        assert p.alive, p.log_text()
        # the copy waits for Redis now: 30,000 cards are not looked up in
        # two lookups of 1,000
        h.wait_until(lambda: "Redis 127.0.0.1:%d" % s.redis.port in p.log_text()
                     and "no answer within" in p.log_text(), 10,
                     "the replay to notice that Redis does not answer")
        assert "exposed set copied" not in p.log_text(), p.log_text()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
    finally:
        s.redis.resume()
        watch.join(5)
    text = p.log_text()
    assert rc == 143, (rc, text[-3000:])
    assert "interrupted by SIGTERM" in text, text[-3000:]
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in text, text[-4000:]
    assert not out_file.exists() and not list(d.glob("*.partial")), list(d.iterdir())
    rc, _out, err = _replay(s, "--input", src, "--output", out_file)
    assert rc == 0 and f"exposed set copied: {len(cards)} card(s)" in err, err[-3000:]
    assert len(out_file.read_text().splitlines()) == 1


def test_replay_names_corrupt_records_and_breaches_in_redis():
    """What no `cardwatch load` writes but a foreign writer or a hand edit
    can: a card record that does not parse ("nobreach") and a breach hash
    without its window. Each is named in a WARN line (the record by the
    first 12 hex digits of its fingerprint, never a card number; the
    breach by its id) and its cards count as not exposed through it, as
    exposure.c documents; every other card alerts exactly as expected."""
    issuers = cw.three_issuers()
    mk = CardMaker(1215)
    good = mk.cards(["400001", "510000"], 10)
    bad_record = mk.card("400001")
    windowless = mk.cards(["52000042"], 3)
    b1 = Breach("edge-good", "2024-01-01", "2024-06-30", ["pan"], good + [bad_record])
    b2 = Breach("edge-nowindow", "2024-01-01", "2024-06-30", ["pan"], windowless)
    s = cw.Stack(issuers, partitions=1)
    s.load(b1)
    s.load(b2)
    fp = cw.fingerprint(bad_record)
    assert cw.card_record(s.redis, fp) is not None
    cw.put_card_record(s.redis, fp, "nobreach")
    assert s.redis.call("HDEL", f"cw:breach:{b2.id}", "window_start_ms") == 1
    rnd = random.Random(1215)
    pans = good + [bad_record] + windowless
    txns = [txn(f"cor-{i:03d}", pan, cw.day_ms("2024-03-01") + i * 60_000, rnd)
            for i, pan in enumerate(pans)]
    expected = cw.expected_alerts(txns, [Breach(b1.id, b1.start, b1.end, b1.elements, good)],
                                  issuers)
    assert len(expected) == len(good)
    d = h.tmpdir("replay")
    rc, _out, err = _replay(s, "--input", _write_txns(d, txns), "--output", d / "alerts.jsonl")
    assert rc == 0, err[-3000:]
    got = sorted(json.loads(ln)["alert_id"] for ln in
                 (d / "alerts.jsonl").read_text().splitlines())
    assert got == sorted(expected), (len(got), len(expected))
    hexfp = fp.split(":")[1]
    assert f"WARN exposure: malformed card record in Redis (fingerprint {hexfp[:12]}...); " \
           "treated as not exposed" in err, err[-3000:]
    assert hexfp[12:] not in err and bad_record not in err
    assert f"WARN exposure: breach '{b2.id}' has no window in Redis; its cards are ignored " \
           "until it is loaded again" in err, err[-3000:]


def test_empty_redis_password_file_is_refused():
    """A [redis] password_file that holds no password (one empty line) is
    refused before any connection, naming the file - not sent as an empty
    AUTH."""
    s = cw.Stack(cw.three_issuers(), partitions=1)
    empty = _secret_file(h.tmpdir("secret"), "")
    cfg = s.dir / "empty-password.ini"
    cfg.write_text(s.config.read_text().replace(
        "[redis]\n", f"[redis]\nusername = cw\npassword_file = {empty}\n"))
    def connections():
        return int(s.redis.info("stats")["total_connections_received"])
    before = connections()
    res = h.run_tool([h.tool("cardwatch"), "breaches", "--config", cfg], check=False)
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 1, (res.returncode, err)
    assert f"[redis] password_file {empty}: empty" in err, err
    assert connections() == before, "cardwatch connected to Redis"


# --------------------------------------------------------------------------
# the live service: window state and the record of delivered alerts

def test_run_shutdown_while_recording_and_a_window_entry_of_another_version():
    """Two things `cardwatch run` meets in Redis, on one stack (Apache
    Kafka, one partition):
    1. Redis pauses writes (CLIENT PAUSE WRITE) after an alert was
       delivered to Kafka but before its delivery record was written, and
       the service is stopped (SIGTERM, --drain-timeout 2): the drain gives
       up (exit 1, the event unacknowledged); the next run, writes
       allowed again, takes the event again and sends the alert again -
       at least once, never lost - and the issuer's feed holds it once.
    2. A window entry that an instance of another version wrote (format
       "w9", which this one cannot read) is skipped with a WARN line, not
       counted: two small payments on the card do not make three in ten
       minutes (card-testing), and the alerts of the default pack are
       exactly the oracle's."""
    import oracle
    issuers = cw.three_issuers()
    mk = CardMaker(1216)
    pa, px, py = mk.card("400001"), mk.card("510000"), mk.card("52000042")
    clean = mk.card("400002")
    b1 = Breach("edge-run", "2024-01-01", "2024-06-30", ["pan"], [pa, px, py])
    s = cw.Stack(issuers, partitions=1)
    s.load(b1)
    base = cw.day_ms("2024-03-10") + 12 * 3_600_000

    # 1. the record waits, SIGTERM
    a1 = txn("rec-1", pa, base, random.Random(1))
    proc = s.run("--drain-timeout", "2")
    h.wait_until(lambda: not proc.alive or s.ready()[0] == 200, 30, "/readyz 200")
    assert proc.alive, proc.log_text(30)
    assert s.redis.call("CLIENT", "PAUSE", "60000", "WRITE") == "OK"
    try:
        s.send([a1], name="rec")
        h.wait_until(lambda: s.metrics().sum("cardwatch_alerts_total") == 1 and
                     s.metrics().get("cardwatch_in_flight_events") == 1, 30,
                     "the alert produced, its event in flight")
        h.wait_until(lambda: len(s.alerts(timeout=5)) == 1, 30, "the alert on Kafka")
        rc = proc.stop(timeout=20, sig=signal.SIGTERM)
    finally:
        s.redis.call("CLIENT", "UNPAUSE")
    log = proc.log_text()
    assert rc == 1, (rc, log[-3000:])
    assert "drain timed out with 1 event(s) unacknowledged" in log, log[-3000:]
    aid = cw.alert_id("rec-1")
    assert s.redis.call("EXISTS", f"cw:delivered:{aid}") == 0
    out = s.finish(s.run("--exit-at-end", name="run-2"), timeout=60)
    assert cw.parse_summary(out)["alerted"] == 1, out
    expected = cw.expected_alerts([a1], [b1], issuers)
    copies = cw.check_alerts(s.alerts(expect_count=2), expected, exact_once=False)
    assert copies == {aid: 2}, copies
    issuer = expected[aid]["alert"]["issuer_id"]
    feed = [dict(zip(f[::2], f[1::2]))[b"alert_id"].decode()
            for _sid, f in s.redis.call("XRANGE", f"cw:feed:{issuer}", "-", "+")]
    assert feed == [aid], feed

    # 2. the default pack over a window entry it cannot read
    cfg = s.dir / "pack.ini"
    cfg.write_text(s.config.read_text() + f"\n[rules]\npath = {oracle.DEFAULT_PACK}\n")
    from test_rules import _t
    txns = [_t("win-x1", px, base + 60_000, amount_minor=150),
            _t("win-x2", px, base + 120_000, amount_minor=150),
            _t("win-y1", py, base, mcc=4829),
            _t("win-c1", clean, base)]
    foreign = f"{base}:1:{base}:{cw.wall_ms()}:w9|{base}|150|0|GB|from-a-newer-version|m-9"
    s.redis.call("HSET", f"cw:live:win:{cw.fingerprint(px)}", "from-a-newer-version", foreign)
    s.send(txns, name="pack")
    s._n += 1
    out_path = s.dir / f"run-3-{s._n:02d}.stdout"
    with open(out_path, "wb") as f:
        p3 = h.spawn([h.tool("cardwatch"), "run", "--config", cfg, "--no-progress",
                      "--exit-at-end"], name="run-3", log=s.dir / "run-3.log", stdout=f)
    p3.stdout_path = out_path
    s.finish(p3, timeout=60)
    log = p3.log_text()
    assert "WARN state: skipping a malformed window entry" in log, log[-3000:]
    want = oracle.pack_expected(txns, [b1], issuers)
    assert sorted(e["alert"]["txn_id"] for e in want.values()) == ["win-y1"], want
    got = [a for a in s.alerts() if a[2]["alert_id"] != aid]
    cw.check_alerts(got, want, exact_once=True)


# --------------------------------------------------------------------------
# subscriber mode: the feed's subscription

def test_feed_subscription_keep_alive_and_a_refused_channel():
    """`cardwatch feed` keeps a second connection subscribed to the feed
    channel (redis_conn.c's subscriber mode). Redis stopped (SIGSTOP): the
    idle subscription's keep-alive PING goes unanswered, the loss is
    logged ("no answer within 300 ms") and cardwatch_feed_subscribed is 0
    while the feed polls; after SIGCONT it subscribes again. The service
    user's ACL then loses the channel (ACL SETUSER resetchannels: Redis
    drops the subscription): SUBSCRIBE is refused, which is said once
    (WARN naming SUBSCRIBE, the user and NOPERM) while the feed goes on
    serving (/readyz 200, polling); the channel allowed again, it
    subscribes again by itself."""
    from test_redis_security import _acl_redis, USER
    class TokenIssuer(cw.Issuer):       # the feed wants a token to serve
        def ini(self):
            return super().ini() + "token_sha256 = %s\n" % ("ab" * 32)
    pw = "edge-feed-" + os.urandom(6).hex()
    r = _acl_redis(pw)
    s = cw.Stack([TokenIssuer("alpha", "GB", ["400000-400099"])], redis=r,
                 redis_ini=f"username = {USER}\npassword_file = "
                           f"{_secret_file(h.tmpdir('secret'), pw)}\ntimeout_ms = 300\n",
                 extra_ini=f"\n[feed]\nlisten = 127.0.0.1:{h.free_port()}\n")
    s.cardwatch("breaches", "--confirm")
    feed = h.spawn([h.tool("cardwatch"), "feed", "--config", s.config], name="cardwatch-feed")

    def subscribed(v):
        return lambda: h.scrape(s.url + "/metrics").get("cardwatch_feed_subscribed") == v
    h.wait_until(lambda: s.ready()[0] == 200 and subscribed(1)(), 20, "the feed ready")
    r.pause()
    try:
        h.wait_until(lambda: f"feed subscriber: Redis {r.address} lost (no answer within "
                     "300 ms)" in feed.log_text(), 10, "the subscription's loss logged")
        h.wait_until(subscribed(0), 5, "cardwatch_feed_subscribed 0")
    finally:
        r.resume()
    h.wait_until(lambda: s.ready()[0] == 200 and subscribed(1)(), 20,
                 "subscribed again after SIGCONT")

    r.call("ACL", "SETUSER", USER, "resetchannels")
    refused = f"WARN feed subscriber: Redis {r.address} refused SUBSCRIBE for user " \
              f"'{USER}': NOPERM"
    h.wait_until(lambda: refused in feed.log_text(), 10, "the refused SUBSCRIBE logged")
    assert subscribed(0)()
    assert s.ready()[0] == 200, s.ready()     # the feed polls meanwhile
    r.call("ACL", "SETUSER", USER, "&cw:*")
    h.wait_until(subscribed(1), 20, "subscribed again once the channel is allowed")
    assert feed.log_text().count(refused) == 1, feed.log_text()[-3000:]
    assert pw not in feed.log_text()
    assert feed.stop() == 0
