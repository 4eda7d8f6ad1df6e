"""Out of memory, everywhere: each allocation our code makes in a scenario
is made to fail in turn, and the user must see a clear failure or an exact
result - never a crash, a leak, a misleading message or a lost alert.

The binary is cardwatch-failalloc (Makefile): cardwatch with malloc,
calloc, realloc, strdup and strndup of our own objects wrapped
(tests/unit/failalloc.c) and armed from the environment
(tests/unit/failalloc_env.c). A first run of the scenario records every
allocation site it passes (the return address of the call); then one run
per site makes the first call from that site fail with ENOMEM. Allocations
inside the libraries (librdkafka, hiredis, libevent, OpenSSL, protobuf-c)
are not failed: the sweep is about our error branches.

Each failing run must either
- exit 1 (a command) with a message that says "out of memory" (not some
  other error it is not), or
- complete with exactly the result of the run without a failure (the
  allocation was retried, or the work it served was redone: a live event
  whose lookup could not be queued is consumed again),
and in both cases not die of a signal, not print a card number, and under
the ASan build not leak or trip a sanitizer. After a failed `load` or
`run`, the same command again (no failure) finishes the job exactly:
nothing is lost. Sites a run did not reach (a different path on the
second run) are counted and printed, not failed.

The unit-level sweep of the pure modules (every allocation of each call,
not only the first per site) is tests/unit/test_oom.c."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import harness as h
import cwstack as cw
import oracle
from test_replay_file import _check_alert_lines, _no_leftovers, _pack_alerts
from test_replay_kafka import publish, stream

BINARY = "cardwatch-failalloc"
SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation")
OOM_WORDS = re.compile(r"out of memory|Cannot allocate memory")
DEFAULT_PACK = str(Path(__file__).resolve().parents[2] / "rules" / "default.rules")


class Sites:
    """Allocation sites of the failalloc binary: offset -> source line."""

    def __init__(self):
        self.binary = h.tool(BINARY)
        nm = h.run_tool(["nm", self.binary]).stdout.decode()
        m = re.search(r"^([0-9a-f]+) T failalloc_at$", nm, re.M)
        assert m, "failalloc_at not found in the binary"
        self.base = int(m.group(1), 16)
        self._where = {}

    def where(self, off):
        if off not in self._where:
            # the return address is just after the call
            res = h.run_tool(["addr2line", "-f", "-e", self.binary,
                              hex(self.base + off - 1)], check=False)
            lines = res.stdout.decode().split()
            fn, loc = (lines + ["?", "?"])[:2]
            self._where[off] = f"{loc.rsplit('/', 1)[-1]} ({fn})"
        return self._where[off]


def _fa_env(d, **kw):
    env = dict(os.environ)
    for k in ("CARDWATCH_FAILALLOC_RECORD", "CARDWATCH_FAILALLOC_SITE",
              "CARDWATCH_FAILALLOC_FIRED"):
        env.pop(k, None)
    for k, v in kw.items():
        env["CARDWATCH_FAILALLOC_" + k.upper()] = str(v)
    return env


def _run(args, env, timeout=60):
    """Runs the binary to its end; a run still going after timeout seconds
    gets SIGTERM (then SIGKILL) and is marked hung."""
    p = subprocess.Popen([h.tool(BINARY), *[str(a) for a in args]], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    hung = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        p.terminate()
        try:
            out, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
    res = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    res.hung = hung
    return res


def _generic(res, pans):
    """What every run must respect, failed or not."""
    out = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    assert not getattr(res, "hung", False), f"still running after a minute:\n{out[-2000:]}"
    assert res.returncode >= 0, f"killed by signal {-res.returncode}:\n{out[-2000:]}"
    for w in SANITIZER_WORDS:
        assert w not in out, f"sanitizer report:\n{out[-3000:]}"
    assert res.returncode in (0, 1), f"exit {res.returncode}:\n{out[-2000:]}"
    if res.returncode == 1:
        # (a check command's findings, this one included, go to stdout)
        said = [ln for ln in out.splitlines() if re.search(r"ERROR|error|cardwatch", ln)]
        assert OOM_WORDS.search(out), \
            "exit 1 without saying out of memory:\n" + "\n".join(said[-8:] or [out[-1500:]])
    for p in pans:
        assert p not in out, "a card number in the output"
    return out


def sweep(problems, name, args, ok, failed=None, setup=None, pans=(), run=None):
    """Runs `cardwatch-failalloc ARGS` once recording its allocation sites
    (it must exit 0 and pass ok(res)), then once per site with that site's
    first call failing. ok(res) checks a run that exited 0, failed(res) one
    that exited 1 (after the generic checks); setup() runs before each.
    run(args, env) replaces the plain subprocess run (a service). Returns
    the counts; every site whose run broke a rule goes to the list
    `problems` (the test asserts it empty at the end: _none)."""
    d = h.tmpdir("oom")
    sites = Sites()
    rec = d / "sites.txt"
    fired = d / "fired.txt"
    run = run or _run
    if setup:
        setup()
    res = run(args, _fa_env(d, record=rec))
    _generic(res, pans)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    ok(res)
    recorded = sorted(int(line.split()[0]) for line in rec.read_text().splitlines())
    assert recorded, "no allocation site recorded"
    counts = {"sites": len(recorded), "exit 1": 0, "exact": 0, "not reached": 0}
    mine = []
    t0 = time.monotonic()
    for off in recorded:
        if setup:
            setup()
        fired.unlink(missing_ok=True)
        res = run(args, _fa_env(d, site=off, fired=fired))
        if not fired.exists():
            counts["not reached"] += 1
            continue
        try:
            _generic(res, pans)
            if res.returncode == 0:
                ok(res)
                counts["exact"] += 1
            else:
                if failed:
                    failed(res)
                counts["exit 1"] += 1
        except AssertionError as e:
            mine.append(f"{name}: {sites.where(off)} [site {off}]: {str(e)[:1200]}")
    secs = time.monotonic() - t0
    print(f"    {name}: {counts['sites']} allocation sites; failed in turn: "
          f"{counts['exit 1']} exit 1 saying out of memory, {counts['exact']} completed "
          f"exactly, {counts['not reached']} not reached again ({secs:.1f} s, "
          f"{secs / len(recorded):.2f} s per run)")
    problems.extend(mine)
    return counts


def _none(problems):
    assert not problems, f"{len(problems)} site(s) mishandled:\n" + "\n".join(problems)


# --------------------------------------------------------------------------

def _same(read, what):
    """ok(): read(res) gives what it gave for the recording run."""
    first = []

    def ok(res):
        got = read(res)
        if not first:
            first.append(got)
        assert got == first[0], f"{what}:\n{got[-1500:]!r}"
    return ok


def _same_stdout():
    return _same(lambda res: res.stdout, "printed another result")


def test_oom_offline_commands():
    """gen, rules check / test and check: no Redis, no Kafka."""
    probs = []
    issuers, breaches, txns = stream(4242, "om", n_exposed=6, n_clean=4, per_card=6)
    s = cw.Stack(issuers)
    d = h.tmpdir("offline")
    pans = sorted({t["pan"] for t in txns})
    txn_file = d / "txns.jsonl"
    txn_file.write_text("".join(json.dumps(t) + "\n" for t in txns))
    exposed = d / "exposed.csv"
    exposed.write_text("pan,expiry\n" + "".join(f"{p},2712\n" for p in breaches[0].cards))

    # gen cards: the same cards as without the failure
    cards = d / "cards.csv"
    sweep(probs, "gen cards", ["gen", "cards", "--config", s.config, "--count", 40, "--seed", 7,
                               "--out", cards],
          _same(lambda res: cards.read_bytes(), "gen cards wrote other cards"),
          setup=lambda: cards.unlink(missing_ok=True))

    h.run_tool([h.tool("cardwatch"), "gen", "cards", "--config", s.config, "--count", "40",
                "--seed", "7", "--out", cards])

    # gen txns, protobuf
    out = d / "gen.pb"
    sweep(probs, "gen txns", ["gen", "txns", "--config", s.config, "--count", 60, "--seed", 3,
                              "--exposed", cards, "--exposed-share", 0.3, "--format",
                              "protobuf", "--output", out],
          _same(lambda res: out.read_bytes(), "gen txns wrote other transactions"),
          setup=lambda: out.unlink(missing_ok=True))

    # rules check and rules test of the default pack, check of the config
    sweep(probs, "rules check", ["rules", "check", DEFAULT_PACK], _same_stdout())
    sweep(probs, "rules test", ["rules", "test", DEFAULT_PACK, "--input", txn_file,
                                "--exposed", exposed, "--config", s.config, "--all"],
          _same_stdout(), pans=pans)
    sweep(probs, "check", ["check", "--config", s.config], _same_stdout())
    _none(probs)


def _redis_view(redis):
    """Every key with its value, the times of the breach records and the
    exposed-set marker's nonce left out (each load writes its own)."""
    out = {}
    for k, typ, value, _dump in redis.dump():
        if k.endswith(b":exposed") and typ == "string":
            value = "(a marker)"
        elif typ == "hash":
            pairs = dict(zip(value[0::2], value[1::2]))
            value = sorted((f, v) for f, v in pairs.items()
                           if not re.search(rb"(_at|_ms|time)$", f))
        elif typ in ("set", "zset", "list"):
            value = sorted(value)
        out[k] = (typ, value)
    return out


def _view_diff(got, want):
    keys = sorted(set(got) | set(want))
    return "; ".join(f"{k!r}: {got.get(k)!r} vs {want.get(k)!r}"
                     for k in keys if got.get(k) != want.get(k))[:1500]


def test_oom_load_and_unload():
    """`cardwatch load` and `unload`: a failed load leaves the breach
    invisible to lookups and the same load again gives exactly the data
    of a load without a failure."""
    probs = []
    issuers, breaches, txns = stream(4343, "ol", n_exposed=9, n_clean=3, per_card=2)
    s = cw.Stack(issuers)
    b = breaches[0]
    csv = s.dir / "breach.csv"
    csv.write_text("pan,expiry\n" + "".join(f"{p},2712\n" for p in b.cards))
    args = ["load", "--config", s.config, "--breach", b.id, "--window-start", b.start,
            "--window-end", b.end, "--elements", ",".join(b.elements), csv]
    want = []

    def loaded(res):
        view = _redis_view(s.redis)
        if not want:
            want.append(view)
        assert view == want[0], ("the loaded data differ from a load without a failure: "
                                 + _view_diff(view, want[0]))
        assert f"{len(b.cards)} cards loaded" in res.stdout.decode() + res.stderr.decode()

    def load_failed(res):
        # not monitored as if complete: absent, or marked as a load to redo
        for line in s.cardwatch("breaches", "--json").stdout.decode().splitlines():
            rec = json.loads(line)
            assert rec.get("breach_id", rec.get("id")) != b.id \
                or rec.get("status") != "committed", rec
        again = s.cardwatch(*args[:1], *args[3:], check=False)
        assert again.returncode == 0, again.stderr.decode()[-1500:]
        loaded(again)

    sweep(probs, "load", args, loaded, load_failed, setup=lambda: s.redis.call("FLUSHALL"),
          pans=b.cards)

    def reload():
        s.redis.call("FLUSHALL")
        s.cardwatch(*args[:1], *args[3:])
    empty = []

    def unloaded(res):
        view = _redis_view(s.redis)
        if not empty:
            empty.append(view)
        assert view == empty[0], ("unload left other data than an unload without a "
                                  "failure: " + _view_diff(view, empty[0]))
        assert not any(b":cards:" in k or b":card:" in k for k in view), "card records left"
        lay = [v for k, (typ, v) in view.items() if b":layout:" in k]
        assert all(dict(v).get(b"entries", b"0") == b"0" for v in lay), \
            f"the layout counts cards after the unload: {lay}"

    sweep(probs, "unload", ["unload", "--config", s.config, b.id],
          unloaded, setup=reload, pans=b.cards)
    _none(probs)


def test_oom_replay_file():
    """`cardwatch replay --input FILE` with the default pack: exactly the
    alerts of the inputs, or exit 1 with nothing left behind."""
    probs = []
    issuers, breaches, txns = stream(4444, "or", n_exposed=6, n_clean=3, per_card=8)
    s = cw.Stack(issuers)
    for b in breaches:
        s.load(b)
    d = h.tmpdir("replay")
    inp = d / "txns.jsonl"
    inp.write_text("".join(json.dumps(t) + "\n" for t in txns))
    want = _pack_alerts(txns, breaches, issuers)
    assert len(want) >= 20, len(want)
    out = d / "out.jsonl"
    args = ["replay", "--config", s.config, "--input", inp, "--output", out,
            "--rules", DEFAULT_PACK, "--no-progress"]

    def clean():
        out.unlink(missing_ok=True)

    def replay_failed(res):
        _no_leftovers(d, "out.jsonl")

    sweep(probs, "replay file", args, lambda res: _check_alert_lines(out, want), replay_failed,
          setup=clean, pans=sorted({t["pan"] for t in txns}))
    _none(probs)


def test_oom_run():
    """`cardwatch run --exit-at-end` with the default rule pack (window
    state in Redis) on Apache Kafka, each run a new consumer group reading
    the whole stream over a Redis loaded afresh: it ends with every alert
    of the stream on the issuer topics (oracle.pack_expected), none else,
    or exits 1 at start-up; an event that failed is left unacknowledged
    (the log says so) and the same group run again (no failure) delivers
    what is missing. No valid event is ever dead-lettered."""
    probs = []
    issuers, breaches, txns = stream(4545, "ou", n_exposed=6, n_clean=4, per_card=5)
    s = cw.Stack(issuers, partitions=2, extra_ini=f"[rules]\npath = {DEFAULT_PACK}\n")
    for b in breaches:
        s.load(b)
    publish(s, txns)  # keyed by card: each card's events in order
    expected = oracle.pack_expected(txns, breaches, issuers)
    assert len(expected) >= 10, len(expected)
    seen = set()
    groups = iter(range(10**6))

    def new_alerts():
        ids = []
        for topic, m, a in s.alerts():
            if (topic, m.partition, m.offset) not in seen:
                seen.add((topic, m.partition, m.offset))
                ids.append(a["alert_id"])
        return ids

    spent = {"run": 0.0, "read": 0.0}

    def run(args, env):
        group = f"oom-{next(groups)}"
        t = time.monotonic()
        res = _run([*args, "--group", group], env, timeout=30)
        spent["run"] += time.monotonic() - t
        t = time.monotonic()
        res.group = group
        # the topics are read back unless the run stopped before the ledger
        # recorded any delivery (most runs that exit 1 fail at start-up)
        if res.returncode == 0 or s.redis.call("KEYS", "cw:delivered:*"):
            res.ids = new_alerts()
        else:
            res.ids = []
        spent["read"] += time.monotonic() - t
        return res

    def delivered(res):
        got = set(res.ids)
        extra = got - set(expected)
        assert not extra, f"alerts no event calls for: {sorted(extra)[:5]}"
        missing = set(expected) - got
        if missing:
            # left unacknowledged, and said so
            assert OOM_WORDS.search(res.stderr.decode(errors="replace")), \
                f"{len(missing)} alert(s) missing and no word of it"
            again = h.run_tool([h.tool("cardwatch"), "run", "--config", s.config,
                                "--no-progress", "--exit-at-end", "--group", res.group],
                               timeout=90, check=False)
            assert again.returncode == 0, again.stderr.decode(errors="replace")[-1500:]
            later = set(new_alerts())
            assert missing <= later, f"lost after a restart: {sorted(missing - later)[:5]}"

    # the ledger would skip what an earlier run delivered (ledger.h), the
    # window state would remember its events: each run gets the Redis of
    # the loads (restored from DUMP: quicker than loading again)
    loaded = [(k, d) for k, _t, _v, d in s.redis.dump()]

    def afresh():
        c = s.redis.client()
        try:
            replies = c.pipeline([("FLUSHALL",)] + [("RESTORE", k, 0, d) for k, d in loaded])
        finally:
            c.close()
        assert not [r for r in replies if isinstance(r, h.RespError)], replies

    sweep(probs, "run", ["run", "--config", s.config, "--no-progress", "--exit-at-end"],
          delivered, setup=afresh, pans=sorted({t["pan"] for t in txns}), run=run)
    print(f"    (cardwatch run {spent['run']:.1f} s, reading the alerts back "
          f"{spent['read']:.1f} s)")
    assert s.dead_letters() == [], "a valid event dead-lettered"
    _none(probs)


def _feed_requests(port, token, ids):
    """What an issuer's client does, digested to what must not change:
    [(request, status, the alert ids or what else it answered)]; a
    connection the feed closed or reset reads as status "closed"."""
    import http.client
    import socket
    from test_feed import SSE

    def req(method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            hdrs = {"Authorization": f"Bearer {token}"}
            if body is not None:
                body = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            return "closed", b""
        finally:
            c.close()

    def aid(x):
        return x["alert_id"] if "alert_id" in x else x["alert"]["alert_id"]

    def listed(st, data):
        return [aid(a) for a in json.loads(data)["alerts"]] if st == 200 else None

    out = []
    st, data = req("GET", "/v1/alerts")
    out.append(("list", st, listed(st, data)))
    st, data = req("GET", "/v1/alerts?after=0-0&wait=5&limit=2")
    out.append(("long poll", st, listed(st, data)))
    st, data = req("GET", f"/v1/alerts/{ids[0]}")
    out.append(("one", st, aid(json.loads(data)) if st == 200 else None))
    st, data = req("POST", f"/v1/alerts/{ids[1]}/outcome", {"outcome": "legitimate"})
    # 201 the first time, 200 when recorded before (a round that failed)
    out.append(("outcome", "recorded" if st in (200, 201) else st, None))
    st, data = req("GET", "/v1/stats")
    out.append(("stats", st, sorted(json.loads(data)) if st == 200 else None))
    st, data = req("GET", "/")
    out.append(("page", st, len(data) if st == 200 else None))
    st, data = req("GET", "/v1/alerts?limit=x")
    out.append(("bad limit", st, None))

    class _Peer:
        seen = []

        def socket(self, timeout=10):
            return socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sse = SSE(_Peer(), token, last_event_id="0-0")
        try:
            got = sse.read_events(len(ids), timeout=10) if sse.status == 200 else []
            out.append(("stream", sse.status,
                        [aid(json.loads(e[2])) for e in got[:len(ids)]]))
        finally:
            sse.close()
    except (OSError, AssertionError):
        out.append(("stream", "closed", None))
    return out


def test_oom_feed():
    """`cardwatch feed` (the issuer feed; Redis only): a failed allocation
    at start-up stops it with exit 1 saying so; while serving, the request
    it hits is answered 500/503 or its connection closed (never a wrong
    answer: each other answer is the one a run without the failure gives),
    the log says out of memory, the next round of the same requests gets
    every answer right, and SIGTERM ends the feed with exit 0."""
    import signal
    from test_feed import Feed, Store, TokenIssuer, _redis_only_ini, _token
    probs = []
    r = h.Redis()
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    cfg = Feed(_redis_only_ini(r, [alpha]))
    cfg.stop()
    store = Store(r)
    pan = cw.CardMaker(4646).card("400001")
    docs = [store.synthetic("alpha", pan) for _ in range(3)]
    ids = [d["alert_id"] for d in docs]
    d = h.tmpdir("feed")
    runs = iter(range(10**6))

    def setup():
        r.call("FLUSHALL")
        h.run_tool([h.tool("cardwatch"), "breaches", "--confirm", "--config", cfg.config])
        for doc in docs:
            assert store.record("alpha", doc)[0] == 1

    def ready():
        try:
            m = h.scrape(cfg.admin + "/metrics")
            return h.http_get(cfg.admin + "/readyz")[0] == 200 and \
                m.get("cardwatch_feed_subscribed") == 1 and \
                m.get("cardwatch_feed_redis_up") == 1
        except OSError:
            return False

    def run(args, env):
        log = d / f"feed-{next(runs):03d}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen([h.tool(BINARY), *[str(a) for a in args]], env=env,
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=f)
        res = subprocess.CompletedProcess(p.args, None, b"", b"")
        res.hung, res.rounds = False, []
        try:
            h.wait_until(lambda: p.poll() is not None or ready(), 20, "feed ready")
            if p.poll() is None:
                res.rounds = [_feed_requests(cfg.port, alpha.token, ids) for _ in range(2)]
                p.send_signal(signal.SIGTERM)
            p.wait(20)
        except (AssertionError, subprocess.TimeoutExpired):
            res.hung = True
            p.kill()
            p.wait()
        res.returncode = p.returncode
        res.stderr = log.read_bytes()
        return res

    base = []

    def served(res):
        if not base:
            base.append(res.rounds)
            assert [st for _n, st, _x in res.rounds[0]] == \
                [200] * 3 + ["recorded"] + [200] * 2 + [400, 200], res.rounds[0]
            return
        (first, second), (want1, want2) = res.rounds, base[0]
        assert second == want2, f"the round after the failure: {second} vs {want2}"
        wrong = [(g, w) for g, w in zip(first, want1)
                 if g != w and g[1] not in (500, 503, "closed")]
        assert not wrong, f"wrong answers (got, expected): {wrong}"
        if first != want1:
            assert OOM_WORDS.search(res.stderr.decode(errors="replace")), \
                "an answer failed and the log does not say out of memory"

    sweep(probs, "feed", ["feed", "--config", cfg.config], served, setup=setup,
          pans=[pan], run=run)
    _none(probs)
