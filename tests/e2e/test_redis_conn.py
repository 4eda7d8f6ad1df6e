"""The Redis connection module (processor/redis_conn.c) end to end,
through its probe tool build/redis_probe against real redis-server and
redis-sentinel processes (harness: Redis, RedisHA, make_tls).

    redis_probe [options] COMMAND [ARG...]
    stdout: one line per reply element; stderr: log lines and, on failure,
    one "redis_probe: <message>" line.
    Exit: 0 answered; 1 not reachable / timed out; 2 auth refused; 3 TLS;
    4 a replica; 5 usage / bad option; 6 not a Redis.

What must hold: commands are answered (error replies passed through); an
outage, a hang (SIGSTOP) and a sentinel failover under a stream of
commands cost time, not answers; each configuration error (wrong or
missing password, a password file others can read, an untrusted CA, a
certificate for another name, TLS to a plain-text port, no client
certificate where one is required, a replica instead of the master) ends
the probe with its own exit status and a message naming the cause and
never the password."""

import os
import re
import secrets
import time

import harness as h

CW_RULES = "~cw:* &cw:* +@all"


def _probe(*args, timeout=60):
    """Run the probe to completion: (exit status, stdout lines, stderr, seconds)."""
    t0 = time.monotonic()
    res = h.run_tool([h.tool("redis_probe"), *map(str, args)], timeout=timeout, check=False)
    secs = time.monotonic() - t0
    return (res.returncode, res.stdout.decode(errors="replace").splitlines(),
            res.stderr.decode(errors="replace"), secs)


def _last_error(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("redis_probe: ")]
    assert lines, f"no 'redis_probe: ' line on stderr:\n{err}"
    return lines[-1]


class _Stream:
    """The probe in the background, stdout and stderr in separate files,
    so a test can wait on answers (complete stdout lines) and log lines."""

    def __init__(self, *args):
        d = h.tmpdir("probe")
        self.out_path = d / "stdout"
        with open(self.out_path, "wb") as out:
            self.proc = h.spawn([h.tool("redis_probe"), *map(str, args)], name="redis_probe",
                                log=d / "stderr.log", stdout=out)

    def lines(self):
        data = self.out_path.read_bytes()
        return data[:data.rfind(b"\n") + 1].decode(errors="replace").splitlines()

    def count(self):
        return self.out_path.read_bytes().count(b"\n")

    def err(self):
        return self.proc.log_text()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except Exception:
            raise AssertionError(f"redis_probe still running after {timeout}s; stderr:\n"
                                 + self.err()) from None


def _secret_file(d, text, mode=0o600, name="redis-password"):
    path = d / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    return path


def test_probe_plain_set_get():
    with h.Redis() as r:
        a = ["--address", r.address]
        assert _probe(*a, "SET", "k", "v")[:2] == (0, ["OK"])
        assert r.call("GET", "k") == b"v"              # the server has it
        assert _probe(*a, "GET", "k")[:2] == (0, ["v"])
        assert _probe(*a, "GET", "missing")[:2] == (0, ["(nil)"])
        assert _probe(*a, "RPUSH", "l", "a", "b")[:2] == (0, ["2"])
        assert _probe(*a, "LRANGE", "l", "0", "-1")[:2] == (0, ["a", "b"])
        # "-1" after the command is an argument, not an option
        assert _probe(*a, "INCRBY", "n", "-1")[:2] == (0, ["-1"])
        rc, out, err, _ = _probe(*a, "INCR", "k")
        assert rc == 0 and len(out) == 1 and out[0].startswith("(error) ERR "), (rc, out, err)


def test_probe_redis_not_running():
    port = h.free_port()
    rc, out, err, secs = _probe("--address", f"127.0.0.1:{port}", "--timeout-ms", 500,
                                "--wait-ms", 1500, "PING")
    assert rc == 1, (rc, out, err)
    assert out == []
    assert f"127.0.0.1:{port}" in _last_error(err), err
    assert secs < 1.5 + 2.0, f"took {secs:.1f}s with --wait-ms 1500"
    print(f"figure: not reachable reported after {secs:.2f}s (--wait-ms 1500)")


def test_probe_survives_a_hang():
    with h.Redis() as r:
        p = _Stream("--address", r.address, "--timeout-ms", 500, "--wait-ms", 10000,
                    "--repeat", 40, "--interval-ms", 50, "INCR", "n")
        h.wait_until(lambda: int(r.call("GET", "n") or 0) >= 5, 10, "the probe to INCR n 5 times")
        r.pause()
        t_stop = time.monotonic()
        try:
            answered_at_stop = p.count()
            h.wait_until(lambda: re.search(r"Redis 127\.0\.0\.1:%d lost \(" % r.port, p.err()),
                         10, "the probe to log the lost connection")
            t_lost = time.monotonic()
        finally:
            r.resume()
        rc = p.wait(30)
        out, err = p.lines(), p.err()
        assert rc == 0, (rc, out, err)
        assert answered_at_stop < 40, "the stream was over before Redis stopped"
        assert len(out) == 40, (len(out), out, err)
        values = [int(x) for x in out]
        # one answer per INCR sent: strictly increasing (a re-sent INCR
        # may count twice on the server, never answer twice)
        assert all(b > a for a, b in zip(values, values[1:])), values
        assert 40 <= int(r.call("GET", "n")) <= 42, r.call("GET", "n")
        assert "no answer within 500 ms" in err, err
        print(f"figure: hang noticed {t_lost - t_stop:.2f}s after SIGSTOP (--timeout-ms 500); "
              f"{answered_at_stop} of 40 answered before it")


def test_probe_auth_acl_user():
    password = "cw-e2e-" + secrets.token_hex(8)
    wrong = "not-it-" + secrets.token_hex(8)
    with h.Redis(users={"cw": (password, CW_RULES)}) as r:
        d = h.tmpdir("secrets")
        good, bad = _secret_file(d, password), _secret_file(d, wrong, name="wrong-password")
        a = ["--address", r.address, "--user", "cw"]

        assert _probe(*a, "--password-file", good, "SET", "cw:k", "v")[:2] == (0, ["OK"])
        assert r.call("GET", "cw:k") == b"v"
        assert _probe(*a, "--password-file", good, "GET", "cw:k")[:2] == (0, ["v"])

        rc, out, err, _ = _probe(*a, "--password-file", bad, "--wait-ms", 5000, "GET", "cw:k")
        assert rc == 2 and out == [], (rc, out, err)
        assert "'cw'" in _last_error(err), err
        assert wrong not in err and password not in err, err

        # no password against a server that has users
        rc, out, err, _ = _probe("--address", r.address, "--wait-ms", 5000, "PING")
        assert rc == 2 and out == [], (rc, out, err)
        _last_error(err)
        # a user name without a password: refused before connecting, as a
        # bad option (rconn_new: "Redis user 'cw' has no password")
        rc, out, err, _ = _probe(*a, "--wait-ms", 5000, "PING")
        assert rc == 5 and out == [], (rc, out, err)
        assert "'cw'" in _last_error(err) and "no password" in err, err

        # the ACL is enforced and its refusal passed through as an answer
        rc, out, err, _ = _probe(*a, "--password-file", good, "SET", "other:k", "v")
        assert rc == 0 and len(out) == 1 and out[0].startswith("(error) NOPERM"), (rc, out, err)
        assert r.call("EXISTS", "other:k") == 0
        assert password not in err
    # requirepass: AUTH without a user name
    with h.Redis(requirepass=password) as r:
        assert _probe("--address", r.address, "--password-file", good, "PING")[:2] == (0, ["PONG"])


def test_probe_password_file_mode():
    password = "cw-e2e-" + secrets.token_hex(8)
    with h.Redis(users={"cw": (password, CW_RULES)}) as r:
        d = h.tmpdir("secrets")
        loose = _secret_file(d, password, mode=0o644)
        rc, out, err, _ = _probe("--address", r.address, "--user", "cw",
                                 "--password-file", loose, "PING")
        assert rc == 5 and out == [], (rc, out, err)
        msg = _last_error(err)
        assert "chmod 600" in msg and str(loose) in msg, msg
        assert password not in err
        os.chmod(loose, 0o400)          # stricter than 0600 is fine
        assert _probe("--address", r.address, "--user", "cw", "--password-file", loose,
                      "PING")[:2] == (0, ["PONG"])


def test_probe_tls_verification():
    t = h.make_tls()
    with h.Redis(tls=t) as r:
        a = ["--address", r.address, "--tls", "--wait-ms", 5000]
        assert _probe(*a, "--ca", t.ca, "SET", "k", "over-tls")[:2] == (0, ["OK"])
        assert r.call("GET", "k") == b"over-tls"
        assert _probe(*a, "--ca", t.ca, "--server-name", "localhost",
                      "GET", "k")[:2] == (0, ["over-tls"])

        rc, out, err, _ = _probe(*a, "--ca", t.other_ca, "GET", "k")
        assert rc == 3 and out == [], (rc, out, err)
        assert "certificate verify failed" in _last_error(err), err

        rc, out, err, _ = _probe(*a, "--ca", t.ca, "--server-name", "wrong.example", "GET", "k")
        assert rc == 3 and out == [], (rc, out, err)
        msg = _last_error(err)
        assert re.search(r"host ?name mismatch", msg, re.I) or \
            ("wrong.example" in msg and "mismatch" in msg), msg

        # a plain-text client on the TLS port gets nothing either
        rc, out, err, _ = _probe("--address", r.address, "--timeout-ms", 1000, "--wait-ms", 1500,
                                 "PING")
        assert rc != 0 and out == [], (rc, out, err)


def test_probe_tls_against_plain_text_port():
    t = h.make_tls()
    with h.Redis() as r:
        rc, out, err, secs = _probe("--address", r.address, "--tls", "--ca", t.ca,
                                    "--timeout-ms", 1000, "--wait-ms", 10000, "PING")
        assert rc == 3 and out == [], (rc, out, err)
        _last_error(err)
        assert secs < 1.0 + 2.0, f"TLS to a plain-text port failed after {secs:.1f}s"
        assert r.ping()                              # Redis is fine afterwards
        print(f"figure: TLS to a plain-text port refused after {secs:.2f}s (--timeout-ms 1000)")


def test_probe_mutual_tls():
    t = h.make_tls()
    with h.Redis(tls=t, tls_auth_clients="yes") as r:
        a = ["--address", r.address, "--tls", "--ca", t.ca, "--wait-ms", 5000]
        assert _probe(*a, "--cert", t.client_cert, "--key", t.client_key,
                      "PING")[:2] == (0, ["PONG"])
        rc, out, err, secs = _probe(*a, "PING")
        assert rc != 0 and out == [], (rc, out, err)
        msg = _last_error(err)
        assert "certificate" in msg.lower(), msg
        print(f"figure: mutual TLS without a client certificate: exit {rc} after {secs:.2f}s: "
              f"{msg}")


def test_probe_refuses_replica():
    with h.Redis() as master:
        replica = h.Redis(replicaof=("127.0.0.1", master.port))
        assert replica.role() == "slave"
        master.call("SET", "k", "v")
        h.wait_until(lambda: replica.call("GET", "k") == b"v", 10, "the replica to sync")
        rc, out, err, _ = _probe("--address", replica.address, "--wait-ms", 5000, "GET", "k")
        assert rc == 4 and out == [], (rc, out, err)
        msg = _last_error(err)
        assert "replica" in msg and replica.address in msg, msg
        assert _probe("--address", master.address, "GET", "k")[:2] == (0, ["v"])
        replica.stop()


def test_probe_finds_master_via_sentinels():
    with h.RedisHA("cw-master") as ha:
        m = ha.master()
        m.call("SET", "k", "from-the-master")
        rc, out, err, _ = _probe("--sentinels", ha.sentinels, "--master", ha.name, "GET", "k")
        assert (rc, out) == (0, ["from-the-master"]), (rc, out, err)
        assert m.address in err, err                   # it logged where it went
        # the sentinels' first entry down: the next one answers
        ha.sentinel_nodes[0].stop(kill=True)
        rc, out, err, _ = _probe("--sentinels", ha.sentinels, "--master", ha.name, "GET", "k")
        assert (rc, out) == (0, ["from-the-master"]), (rc, out, err)
        # a master name no sentinel knows
        rc, out, err, _ = _probe("--sentinels", ha.sentinels, "--master", "no-such-master",
                                 "--wait-ms", 2000, "GET", "k")
        assert rc == 1 and out == [], (rc, out, err)
        assert "no-such-master" in _last_error(err), err


def test_probe_sentinels_with_tls_and_acl():
    """The production shape: sentinels and data nodes TLS only, an ACL user."""
    t = h.make_tls()
    password = "cw-e2e-" + secrets.token_hex(8)
    with h.RedisHA("cw-master", users={"cw": (password, CW_RULES)}, tls=t) as ha:
        pw = _secret_file(h.tmpdir("secrets"), password)
        a = ["--sentinels", ha.sentinels, "--master", ha.name, "--user", "cw",
             "--password-file", pw, "--tls", "--wait-ms", 5000]
        rc, out, err, _ = _probe(*a, "--ca", t.ca, "SET", "cw:k", "v")
        assert (rc, out) == (0, ["OK"]), (rc, out, err)
        assert ha.master().call("GET", "cw:k") == b"v"
        rc, out, err, _ = _probe(*a, "--ca", t.other_ca, "GET", "cw:k")
        assert rc == 3 and out == [], (rc, out, err)
        msg = _last_error(err)
        assert "sentinel" in msg and "certificate verify failed" in msg, msg
        assert password not in err
