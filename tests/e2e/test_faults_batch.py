"""Real faults during the batch commands - `cardwatch load` and `cardwatch
replay` (from a file and from the transactions topic) - for the error
branches that the other scenarios do not reach: a redis-server paused with
SIGSTOP or stopped in the middle of the run, an ACL that refuses a command
for a moment (or the user's login: credentials revoked mid-load), and an
output on a full disk (/dev/full, a 64 KiB tmpfs).

What the user sees: the exit status, the message naming the list file and
line count, the output file or the Redis address (never a card number),
the replay's summary marked FAILED. What is not lost: a paused Redis costs
nothing (the load ends with every card, counted right; the replay with
exactly the alerts the inputs call for), and after a failure nothing is
left that looks complete (a breach stays `loading`, invisible to lookups;
no --output file, no *.partial) and running the same command again
finishes the job exactly. Expectations come from the inputs: the cards of
the list (the documented key model: card records in the hash buckets
<p>:cards:<kid>:<n>, a breach's members count in <p>:breach:<id>), oracle's
model of the default rule pack.

Where a fault must land in the middle of a run, the command reads stdin
and the test holds back the rest of the input until the fault is in
place, so it hits the same point on a fast or a slow machine. A topic
replay reads what is already on the broker, so its Redis is reached
through a small proxy that holds the first request for the replay's own
window state (the exposed set copied, no event finished): the fault lands
there, however fast the replay is.

Not here: load's SIGTERM and Redis out of memory (test_redis_guard.py),
bad CSV input (test_load.py), replay's bad input, caps and signals
(test_replay_file.py, test_replay_kafka.py), Redis faults against the live
service (test_faults_redis.py)."""

import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import harness as h
import cwstack as cw
import oracle
from cwstack import CardMaker
from test_replay_file import _check_alert_lines, _no_leftovers, _pack_alerts
from test_replay_kafka import json_as_proto, positions, proto_view, publish, stream

PREFIX = "cw"                # [redis] prefix (the Stack does not set it)
TIMEOUT_MS = 300             # [redis] timeout_ms of these stacks: a pause is seen at once
WAIT_S = 2                   # [replay] redis_wait_s of these stacks
DEFAULT_PACK = oracle.DEFAULT_PACK
SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation")



@contextlib.contextmanager
def _refused(s, acl):
    """The default user's ACL changed by `acl` (e.g. "-evalsha") for the
    block; every command allowed again after it."""
    s.redis.call("ACL", "SETUSER", "default", acl)
    try:
        yield
    finally:
        s.redis.call("ACL", "SETUSER", "default", "+@all")

def _stack(extra_ini="", **kw):
    return cw.Stack(cw.three_issuers(), redis_ini=f"timeout_ms = {TIMEOUT_MS}\n",
                    extra_ini=f"[replay]\nredis_wait_s = {WAIT_S}\n" + extra_ini, **kw)


def _spawn(s, name, args, stdin=None, config=None):
    """`cardwatch ARGS --config ...` (s.config unless config is given) in the
    background, its stdin a pipe when asked; stdout and stderr into one log
    kept in s.logs."""
    s._n += 1
    log = s.dir / f"{name}-{s._n:02d}.log"
    s.logs.append(log)
    return h.spawn([h.tool("cardwatch"), args[0], "--config", config or s.config, *args[1:]],
                   name=name, log=log, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)


class _HoldingProxy:
    """A TCP proxy on a free loopback port in front of 127.0.0.1:target.
    Replies pass; requests pass until a client's bytes contain `hold_on`,
    then every request is held (kept, not sent) and `held` is set: the
    client waits for an answer at a known point. release() sends what was
    held and lets everything pass from then on. close() shuts the listener
    and every connection: the port refuses, as a stopped Redis does."""

    def __init__(self, target, hold_on):
        self.target, self.hold_on = target, hold_on
        self.held = threading.Event()
        self._holding, self._kept = True, []
        self._socks, self._lock = [], threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def config(self, s, path):
        """Writes s's config with its Redis address turned to the proxy's
        to path; returns path."""
        text = Path(s.config).read_text()
        old, new = f"127.0.0.1:{self.target}\n", f"127.0.0.1:{self.port}\n"
        assert old in text, "test config: no Redis address to turn"
        path.write_text(text.replace(old, new))
        return path

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self._lock:
                self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False),
                             daemon=True).start()

    def _pump(self, src, dst, requests):
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:    # in order with release()
                    if requests and self._holding and \
                            (self.held.is_set() or self.hold_on in tail + data):
                        self.held.set()
                        self._kept.append((dst, data))
                        continue
                    tail = data[-len(self.hold_on):]
                    dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def release(self):
        with self._lock:
            self._holding = False
            for dst, data in self._kept:
                with contextlib.suppress(OSError):
                    dst.sendall(data)
            self._kept = []

    def close(self):
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _feed_rest(p, data):
    """Writes data to p's stdin and closes it, in the background (a paused
    command stops reading; the pipe must not block the test)."""
    def write():
        try:
            p.popen.stdin.write(data)
            p.popen.stdin.close()
        except BrokenPipeError:
            pass
    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def _done(p, timeout, what):
    """Waits for p to exit (at most timeout s); returns (status, log)."""
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{what}: still running after {timeout} s:\n{p.log_text(30)}") \
            from None
    text = p.log_text()
    for bad in SANITIZER_WORDS:
        assert bad not in text, f"{what}: {bad}:\n{text[-4000:]}"
    return rc, text


def _no_card_numbers(s, cards, extra=()):
    """No test card number in any log of the stack, nor in extra files."""
    for f in [*s.logs, *extra]:
        data = Path(f).read_bytes() if Path(f).exists() else b""
        for pan in cards:
            assert pan.encode() not in data, f"{f} holds test card number {cw.mask(pan)}"


# --------------------------------------------------------------------------
# load

def _csv(cards):
    """The list as CSV: pan, expiry and a cardholder column (ignored) that
    makes a row 59 bytes, so the loader's first HEAD_BYTES (four reads of
    64 KiB) hold 4,442 rows: more than one chunk of CHUNK cards, less than
    two."""
    return ("pan,expiry,holder\n" + "".join(
        f"{p},2612,holder {i:05d} {'x' * 23}\n" for i, p in enumerate(cards))).encode()


CHUNK = 4000                 # cards the loader sends before it waits (loader.c CHUNK)
HEAD_BYTES = 4 * 65536       # the head of a list written before a fault
LOAD_ARGS = ["--window-start", "2024-01-01", "--window-end", "2024-06-30",
             "--elements", "pan,expiry"]


def _cardwatch(s, *args):
    """A short command to its end: (exit status, stdout + stderr); no
    sanitizer report in it."""
    res = s.cardwatch(*args, check=False)
    out = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    for bad in SANITIZER_WORDS:
        assert bad not in out, f"cardwatch {args[0]}: {bad}:\n{out[-4000:]}"
    return res.returncode, out


def _load(s, breach, path):
    return _cardwatch(s, "load", "--breach", breach, *LOAD_ARGS, path)


def _card_set(s, breach):
    """The breach's cards in Redis: its members count (the cards whose
    record names it, kept by the load's script)."""
    return int(s.redis.call("HGET", f"{PREFIX}:breach:{breach}", "members") or 0)


def _breach_hash(s, breach):
    flat = s.redis.call("HGETALL", f"{PREFIX}:breach:{breach}")
    return {k.decode(): v.decode() for k, v in zip(flat[::2], flat[1::2])}


def _listed(s):
    out = s.cardwatch("breaches", "--json", check=False).stdout.decode()
    return {r["breach_id"]: r for r in map(json.loads, out.splitlines())}


def _holds_exactly(s, breach, cards):
    """The breach holds exactly these cards, each with its own record (the
    key model: field <fp> of a bucket <p>:cards:<kid>:<n> = "breach=tag;...",
    and the breach's members count)."""
    fps = {cw.fingerprint(p) for p in cards}
    c = s.redis.client()
    try:
        recs = cw.card_records(c, prefix=PREFIX)
    finally:
        c.close()
    named = {fp for fp, rec in recs.items()
             if any(e.split("=")[0] == breach for e in rec.split(";"))}
    assert named == fps, (f"breach {breach}: {len(named)} records name it, "
                          f"{len(named - fps)} not of the list, "
                          f"{len(fps - named)} of the list missing")
    assert _card_set(s, breach) == len(fps), \
        f"breach {breach}: members {_card_set(s, breach)}, {len(fps)} cards"


def test_load_faults_stop_it_clearly_and_a_rerun_finishes_it():
    """`cardwatch load` meets Redis failing under it:
    - paused (SIGSTOP) between two chunks of 4,000 cards, longer than
      [redis] timeout_ms: the chunk is sent again after the reconnect and
      the load ends with exit 0, every card, and the summary counts each
      card once as new (before: about 93 % of them - cards Redis took
      from the dropped connection were counted as already there);
    - its login revoked between two chunks (the ACL turns the user off
      and the connection is killed): exit 1 at once, the Redis address
      and why, how far it got; the breach stays `loading`;
    - an ACL refusing the card script (EVALSHA) for the last, partial
      chunk of a reload: exit 1, Redis's answer, the breach stays as it
      was committed;
    - refusing the commit script (its keys: the marker): every card
      staged, nothing committed, exit 1;
    - refusing each metadata command before the first card: exit 1,
      naming the command.
    Each time the same load run again (Redis answering) finishes it:
    exactly the list's cards, committed."""
    s = _stack(partitions=1)
    port = s.redis.port
    mk = CardMaker(1212)
    cards = mk.cards(["400001", "510000", "4000501", "52000042"], 10_000)
    more = mk.cards(["400002", "510000"], 600)
    small = mk.cards(["400003"], 300)
    revoked = mk.cards(["400004", "510000"], 10_000)
    data = _csv(cards)
    assert CHUNK < data[:HEAD_BYTES].count(b"\n") - 1 < 2 * CHUNK   # header + 4,442 rows

    def spawn_stdin(breach, payload):
        p = _spawn(s, "load", ["load", "--breach", breach, *LOAD_ARGS, "-"], stdin=True)
        p.popen.stdin.write(payload[:HEAD_BYTES])
        p.popen.stdin.flush()
        h.wait_until(lambda: _card_set(s, breach) >= CHUNK or not p.alive, 30,
                     f"the first chunk of {breach} in Redis")
        assert p.alive, p.log_text(20)
        return p

    # 1. paused between chunks: waits, re-sends, ends complete
    t0 = time.monotonic()
    p = spawn_stdin("paused", data)
    s.redis.pause()
    try:
        _feed_rest(p, data[HEAD_BYTES:])
        h.wait_until(lambda: f"Redis 127.0.0.1:{port} lost (no answer within {TIMEOUT_MS} ms)"
                     in p.log_text() or not p.alive, 30, "the load to see Redis hang")
    finally:
        s.redis.resume()
    rc, out = _done(p, 60, "load through a paused Redis")
    assert rc == 0, f"exit {rc}:\n{out[-3000:]}"
    assert ("breach paused: 10000 rows read from <stdin>: 10000 cards loaded (10000 new), "
            "0 rejected, 0 loaded without expiry (not YYMM); 10000 cards in the breach") in out, \
        out[-2000:]
    _holds_exactly(s, "paused", cards)
    hs = _breach_hash(s, "paused")
    assert hs["status"] == "committed" and hs["cards"] == "10000", hs
    print(f"    paused Redis mid-load: 10000 cards, exit 0 in {time.monotonic() - t0:.1f} s")

    # 2. credentials revoked between chunks: the reconnect is refused
    s.redis.call("ACL", "SETUSER", "boss", "on", ">boss-pw", "~*", "&*", "+@all")
    boss = s.redis.client(auth=("boss", "boss-pw"))
    try:
        p = spawn_stdin("revoked", _csv(revoked))
        boss.call("ACL", "SETUSER", "default", "off")
        boss.call("CLIENT", "KILL", "USER", "default")
        _feed_rest(p, _csv(revoked)[HEAD_BYTES:])
        rc, out = _done(p, 15, "load whose login was revoked")
    finally:
        boss.call("ACL", "SETUSER", "default", "on")
        boss.close()
    assert rc == 1, f"exit {rc}:\n{out[-3000:]}"
    assert f"Redis at 127.0.0.1:{port} requires a password" in out, out[-2000:]
    assert ("load of breach revoked stopped after 8000 rows read from <stdin> (4000 cards "
            "loaded, 0 rejected): none of it is visible to lookups") in out, out[-2000:]
    assert _listed(s)["revoked"]["status"] == "loading"
    path = s.dir / "revoked.csv"
    path.write_bytes(_csv(revoked))
    rc, out = _load(s, "revoked", path)
    assert rc == 0 and "10000 cards loaded (6000 new)" in out, out[-2000:]
    _holds_exactly(s, "revoked", revoked)
    assert _listed(s)["revoked"]["status"] == "committed"

    # 3. the card script refused for the last chunk of a reload
    path = s.dir / "more.csv"
    path.write_bytes(_csv(more))
    with _refused(s, "-evalsha"):
        rc, out = _load(s, "paused", path)
    assert rc == 1, f"exit {rc}:\n{out[-3000:]}"
    assert f"Redis 127.0.0.1:{port} refused a card: NOPERM" in out and "'evalsha'" in out, \
        out[-2000:]
    assert (f"load of breach paused stopped after 600 rows read from {path} (0 cards loaded, "
            "0 rejected): it stays visible as committed before") in out, out[-2000:]
    hs = _breach_hash(s, "paused")
    assert hs["status"] == "committed" and hs["cards"] == "10000", hs
    rc, out = _load(s, "paused", path)
    assert rc == 0 and "600 cards loaded (600 new)" in out and "10600 cards in the breach" \
        in out, out[-2000:]
    _holds_exactly(s, "paused", cards + more)

    # 4. the commit refused: every card staged, nothing visible (an ACL
    #    granting every key of the load but the marker, which only the
    #    commit script writes: Redis refuses the script for its keys)
    path = s.dir / "small.csv"
    path.write_bytes(_csv(small))
    s.redis.call("ACL", "SETUSER", "default", "resetkeys", f"~{PREFIX}:breach*",
                 f"~{PREFIX}:cards:*", f"~{PREFIX}:layout:*")
    try:
        rc, out = _load(s, "staged", path)
    finally:
        s.redis.call("ACL", "SETUSER", "default", "allkeys")
    assert rc == 1, f"exit {rc}:\n{out[-3000:]}"
    assert f"Redis 127.0.0.1:{port} refused the commit: NOPERM" in out, out[-2000:]
    assert (f"breach staged was not committed after 300 rows read from {path} (300 cards "
            "loaded, 0 rejected): it stays invisible; run the load again") in out, out[-2000:]
    assert _card_set(s, "staged") == 300 and _listed(s)["staged"]["status"] == "loading"
    rc, out = _load(s, "staged", path)
    assert rc == 0 and "300 cards loaded (0 new)" in out, out[-2000:]
    _holds_exactly(s, "staged", small)
    assert _listed(s)["staged"]["status"] == "committed"

    # 5. each command before the first card, refused
    path = s.dir / "meta.csv"
    path.write_bytes(_csv(small[:5]))
    for command, shown in (("script", "SCRIPT LOAD"), ("hset", "HSET"), ("hsetnx", "HSETNX"),
                           ("hget", "HGET"), ("sadd", "SADD")):
        with _refused(s, "-" + command):
            rc, out = _load(s, "meta", path)
        assert rc == 1, f"-{command}: exit {rc}:\n{out[-3000:]}"
        assert f"Redis 127.0.0.1:{port} refused {shown}: NOPERM" in out, (command, out[-2000:])
        assert _card_set(s, "meta") == 0 and _listed(s).get("meta", {}).get("status") != \
            "committed", command
    rc, out = _load(s, "meta", path)
    assert rc == 0 and "5 cards loaded (5 new)" in out, out[-2000:]
    _no_card_numbers(s, cards + more + small + revoked)


# --------------------------------------------------------------------------
# replay from a file

def _replay_stdin(s, d, data, cut, fault, *extra):
    """`cardwatch replay --input -` with the default pack into d/out.jsonl:
    the input up to byte `cut`, then fault() once the exposed set is
    copied, then the rest."""
    p = _spawn(s, "replay", ["replay", "--input", "-", "--output", d / "out.jsonl",
                             "--report", d / "report.json", "--rules", DEFAULT_PACK,
                             "--no-progress", *extra], stdin=True)
    p.popen.stdin.write(data[:cut])
    p.popen.stdin.flush()
    h.wait_until(lambda: "exposed set copied" in p.log_text() or not p.alive, 30,
                 "the replay's exposed set copied")
    assert p.alive, p.log_text(20)
    fault()
    _feed_rest(p, data[cut:])
    return p


def _rp_keys(s):
    return s.redis.call("KEYS", f"{PREFIX}:rp-*")


def test_replay_file_through_a_paused_lost_and_refusing_redis():
    """`cardwatch replay --input` with the default pack (window state in
    Redis) meets its Redis failing in the middle:
    - paused (SIGSTOP) longer than [redis] timeout_ms: the replay pauses
      (its log says so), resumes after the reconnect and ends with exit 0
      and exactly the alerts of the inputs;
    - stopped for good: the replay waits [replay] redis_wait_s as at start,
      then fails - exit 1, the Redis address, the summary marked FAILED,
      no output file and no *.partial (before: it waited forever);
    - refusing every window update (an ACL that grants the breaches and
      cards but not the replay's own keys): the same, with Redis's answer;
    - refusing the copy of the exposed set at start (HKEYS of the card
      buckets, SISMEMBER):
      exit 1 at once, naming what Redis refused and its answer;
    and the same replay of the file, Redis answering again, gives exactly
    the expected alerts; the aborted replays' window state expires on its
    own."""
    issuers, breaches, txns = stream(1313, "fb", n_exposed=18, n_clean=12, per_card=12)
    s = _stack(partitions=1)
    for b in breaches:
        s.load(b)
    port = s.redis.port
    want = _pack_alerts(txns, breaches, issuers)
    assert len(want) >= 100, len(want)
    data = b"".join(json.dumps(t).encode() + b"\n" for t in txns)
    cut = data.index(b"\n", len(data) // 3) + 1
    d = h.tmpdir("rf")

    # paused: back-pressure, then every alert
    t0 = time.monotonic()
    p = _replay_stdin(s, d, data, cut, s.redis.pause)
    _until_paused(s, p, port)
    rc, log = _done(p, 60, "replay through a paused Redis")
    assert rc == 0, f"exit {rc}:\n{log[-3000:]}"
    _check_alert_lines(d / "out.jsonl", want)
    assert _rp_keys(s) == [], "window state left"
    print(f"    paused Redis: {len(want)} alerts, exit 0 in {time.monotonic() - t0:.1f} s")
    (d / "out.jsonl").unlink()

    def failed(p, what):
        t0 = time.monotonic()
        rc, log = _done(p, WAIT_S + 20, what)
        secs = time.monotonic() - t0
        assert rc == 1, f"{what}: exit {rc}:\n{log[-3000:]}"
        assert "cardwatch replay (FAILED: output removed)" in log, log[-3000:]
        _no_leftovers(d, "out.jsonl")
        assert json.loads((d / "report.json").read_text())["ok"] is False
        return log, secs

    # stopped for good: fails after redis_wait_s, leaves nothing
    p = _replay_stdin(s, d, data, cut, lambda: s.redis.stop(save=True))
    log, secs = failed(p, "replay whose Redis stopped")
    assert f"Redis 127.0.0.1:{port} unavailable" in log and \
        "[replay] redis_wait_s" in log, log[-3000:]
    print(f"    Redis stopped: exit 1 {secs:.1f} s later (redis_wait_s = {WAIT_S})")
    assert re.search(r"the replay's window state cw:rp-[0-9a-f]{12}:\* expires on its own",
                     log), log[-3000:]
    s.redis.start()
    assert all(s.redis.call("PTTL", k) > 0 for k in _rp_keys(s)), \
        "the aborted replay's window state does not expire"

    # an ACL that grants the breaches and cards but not the replay's own
    # keys: the set is checked and copied, every window update refused
    (d / "in.jsonl").write_bytes(data)
    args = ["replay", "--input", d / "in.jsonl", "--output", d / "out.jsonl", "--report",
            d / "report.json", "--rules", DEFAULT_PACK, "--no-progress"]
    s.redis.call("ACL", "SETUSER", "default", "resetkeys", f"~{PREFIX}:breach*",
                 f"~{PREFIX}:cards:*", f"~{PREFIX}:layout:*", f"~{PREFIX}:exposed",
                 f"%R~{PREFIX}:rp-*")
    try:
        p = _spawn(s, "replay", args)
        log, secs = failed(p, "replay whose window updates Redis refused")
    finally:
        s.redis.call("ACL", "SETUSER", "default", "allkeys")
    assert f"Redis 127.0.0.1:{port} refused the window update: NOPERM" in log, log[-3000:]
    print(f"    window updates refused: exit 1 {secs:.1f} s later")

    # the copy of the exposed set refused at start: it fails at once and
    # says what Redis refused and why (before: "... answered unexpectedly")
    # (HKEYS: the copy's read of the card buckets, inside its script,
    # which Redis refuses with its script error)
    for acl, extra, what in (("-hkeys", [], "reading the exposed cards: ERR The user "
                              "executing the script can't run this command"),
                             ("-sismember", ["--breach", "fb-shop"],
                              "the check that breach fb-shop is loaded: NOPERM")):
        with _refused(s, acl):
            rc, out = _cardwatch(s, *args, *extra)
        assert rc == 1, f"{acl}: exit {rc}:\n{out[-3000:]}"
        assert f"copying the exposed set: Redis 127.0.0.1:{port} refused {what}" in out, \
            out[-3000:]
        _no_leftovers(d, "out.jsonl")

    # Redis answering again: the same replay gives exactly the alerts
    p = _spawn(s, "replay", args)
    rc, log = _done(p, 60, "replay with Redis answering again")
    assert rc == 0, log[-3000:]
    _check_alert_lines(d / "out.jsonl", want)
    _no_card_numbers(s, [t["pan"] for t in txns], [d / "out.jsonl"])


# --------------------------------------------------------------------------
# replay from the topic

def test_replay_topic_through_a_paused_and_a_lost_redis():
    """`cardwatch replay --from` over four partitions with the default pack:
    Redis paused while the replay reads pauses the topic's intake and
    resumes it (exit 0, exactly the alerts of the inputs, in partition
    order); Redis lost for good fails it after [replay] redis_wait_s (exit
    1, the address, no output, no *.partial); after a fresh Redis and a
    reload, the replay gives exactly the alerts again. An output disk that
    fills while the other partitions' alerts are appended at the very end
    fails it too, leaving nothing."""
    issuers, breaches, txns = stream(1414, "ft", n_exposed=60, n_clean=40, per_card=40)
    s = _stack(partitions=4, extra_ini=f"[rules]\npath = {DEFAULT_PACK}\n")
    for b in breaches:
        s.load(b)
    port = s.redis.port
    publish(s, txns)
    want = oracle.pack_expected(txns, breaches, issuers)
    assert len(want) >= 1000, len(want)
    d = h.tmpdir("rt")

    def check(path):
        got = [json.loads(x) for x in Path(path).read_text().splitlines()]
        ids = [g["alert_id"] for g in got]
        assert len(ids) == len(set(ids)), "an alert twice"
        assert set(ids) == set(want), (f"{len(set(want) - set(ids))} alerts missing, "
                                       f"{len(set(ids) - set(want))} unexpected")
        for g in got:
            assert json_as_proto(g) == proto_view(want[g["alert_id"]]["alert"]), g["txn_id"]

    # the faults land once the replay has its exposed set and asks for its
    # first card's window state (keys <p>:rp-<id>:...), every event still
    # ahead of it, on any machine
    rp_keys = f"{PREFIX}:rp-".encode()

    def replay(proxy, name):
        p = _spawn(s, "replay", ["replay", "--from", "2023-01-01", "--output", d / "out.jsonl",
                                 "--no-progress"], config=proxy.config(s, d / f"{name}.ini"))
        h.wait_until(lambda: proxy.held.is_set() or not p.alive, 60,
                     "the replay's first window-state request")
        assert p.alive and "exposed set copied" in p.log_text(), p.log_text(30)
        return p

    t0 = time.monotonic()
    proxy = _HoldingProxy(port, rp_keys)
    try:
        p = replay(proxy, "paused")
        s.redis.pause()
        proxy.release()
        _until_paused(s, p, proxy.port)
        rc, log = _done(p, 120, "topic replay through a paused Redis")
    finally:
        proxy.close()
    assert rc == 0, f"exit {rc}:\n{log[-3000:]}"
    assert f"Redis 127.0.0.1:{proxy.port} lost (no answer within {TIMEOUT_MS} ms); the " \
        "replay pauses" in log, log[-3000:]
    check(d / "out.jsonl")
    print(f"    paused Redis: {len(want)} alerts, exit 0 in {time.monotonic() - t0:.1f} s")
    (d / "out.jsonl").unlink()

    t0 = time.monotonic()
    proxy = _HoldingProxy(port, rp_keys)
    try:
        p = replay(proxy, "lost")
        s.redis.stop()
    finally:
        proxy.close()
    rc, log = _done(p, WAIT_S + 30, "topic replay whose Redis stopped")
    assert rc == 1, f"exit {rc}:\n{log[-3000:]}"
    assert f"Redis 127.0.0.1:{proxy.port} unavailable" in log and \
        "[replay] redis_wait_s" in log, log[-3000:]
    assert "cardwatch replay (FAILED: output removed)" in log, log[-3000:]
    _no_leftovers(d, "out.jsonl")
    print(f"    Redis lost: exit 1 in {time.monotonic() - t0:.1f} s")

    s.redis.start()            # empty: the breaches are loaded again
    for b in breaches:
        s.load(b)
    rc, out = _cardwatch(s, "replay", "--from", "2023-01-01", "--output", d / "out.jsonl",
                         "--no-progress")
    assert rc == 0, out[-3000:]
    check(d / "out.jsonl")

    # a disk with room for partition 0's alerts (written as they come) but
    # not for the other partitions' (spooled, appended at the end): the
    # very last step fails, and nothing is left
    where = positions(s)
    lines = (d / "out.jsonl").read_bytes().splitlines(keepends=True)
    lane0 = sum(len(x) for x in lines if where[json.loads(x)["txn_id"]][0] == 0)
    total = sum(map(len, lines))
    assert 64 << 10 < lane0 < total - (64 << 10), (lane0, total)
    with _tmpfs(f"{(lane0 + total) // 2 // 4096 * 4096}") as small:
        if small is not None:
            rc, out = _cardwatch(s, "replay", "--from", "2023-01-01", "--output",
                                 small / "out.jsonl", "--no-progress")
            assert rc == 1, out[-3000:]
            assert f"{small}/out.jsonl.partial: write: No space left on device" in out, \
                out[-3000:]
            assert "cardwatch replay (FAILED: output removed)" in out, out[-3000:]
            assert os.listdir(small) == [], os.listdir(small)


def _until_paused(s, p, port):
    """Waits until replay p logs that its Redis (paused by the caller) hangs
    and it pauses (or p ended), then resumes Redis."""
    try:
        h.wait_until(lambda: f"Redis 127.0.0.1:{port} lost (no answer within {TIMEOUT_MS} ms); "
                     "the replay pauses" in p.log_text() or not p.alive, 30,
                     "the replay to see Redis hang")
    finally:
        s.redis.resume()


# --------------------------------------------------------------------------
# outputs on a full disk

@contextlib.contextmanager
def _tmpfs(size):
    """A tmpfs of `size` mounted on a fresh directory, always unmounted;
    None where it cannot be mounted (not root)."""
    d = h.tmpdir("full")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                         capture_output=True)
    if res.returncode != 0:
        print(f"    no tmpfs ({res.stderr.decode().strip()}): that case is left out")
        yield None
        return
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_replay_outputs_on_a_full_disk():
    """--output, --dead-letter and --report that cannot be written (a full
    64 KiB tmpfs, /dev/full): exit 1, an error naming the file and
    "No space left on device", the summary marked FAILED, and no output
    left behind: neither the file that failed nor the other one (before: a
    dead-letter file or a report that could not be written left the alerts
    file in place, complete-looking, and the summary said nothing). Then
    the same replay to a disk with room writes exactly the alerts."""
    issuers, breaches, txns = stream(1515, "fo", n_exposed=18, n_clean=12, per_card=12)
    s = _stack(partitions=1)
    for b in breaches:
        s.load(b)
    want = _pack_alerts(txns, breaches, issuers)
    d = h.tmpdir("fo")
    inp = d / "in.jsonl"
    inp.write_bytes(b"".join(json.dumps(t).encode() + b"\n" for t in txns)
                    + b'{"txn_id": "no-pan"}\n')   # one dead letter

    def replay(*args):
        return _cardwatch(s, "replay", "--input", inp, "--rules", DEFAULT_PACK,
                          "--no-progress", *args)

    with _tmpfs("64k") as full:
        cases = [
            # the alerts do not fit: the write fails while the replay runs
            (["--output", full / "out.jsonl"],
             f"{full}/out.jsonl.partial: write: No space left on device"),
        ] if full is not None else []
        cases += [
            (["--output", "/dev/full"], "/dev/full: write: No space left on device"),
            # the dead letters or the report cannot be written at the end,
            # the alerts file was fine
            (["--output", d / "out.jsonl", "--dead-letter", "/dev/full"],
             "/dev/full: write: No space left on device"),
            (["--output", d / "out.jsonl", "--report", "/dev/full"],
             "cannot write the report /dev/full"),
        ]
        for args, words in cases:
            rc, out = replay(*args)
            assert rc == 1, f"{args}: exit {rc}:\n{out[-3000:]}"
            assert words in out, (args, out[-3000:])
            assert "cardwatch replay (FAILED: output removed)" in out, (args, out[-3000:])
            _no_leftovers(d, "out.jsonl", "dead.jsonl")
            assert full is None or os.listdir(full) == [], (args, os.listdir(full))
    rc, out = replay("--output", d / "out.jsonl", "--dead-letter", d / "dead.jsonl",
                     "--report", d / "report.json")
    assert rc == 0, out[-3000:]
    _check_alert_lines(d / "out.jsonl", want)
    assert (d / "out.jsonl").stat().st_size > 65536, "the alerts would fit on the small disk"
    assert len((d / "dead.jsonl").read_text().splitlines()) == 1
