"""Real faults against `cardwatch feed` (the issuer feed; Redis only), for
the error branches test_feed.py and test_feed_hardening.py do not reach:
what the issuer's client sees (status, body, Retry-After, a stream that
stays open or ends), what the operator sees (/readyz, /metrics, the log
line, the exit status) and that no alert is lost (every client ends with
exactly what Store recorded, in order, once).

Faults: a Redis paused with SIGSTOP (requests answered 503 when their
answer is late, the late answer dropped; the stop deadline of a shutdown),
an ACL that denies the commands the handlers use, the subscriber
connection killed and refused, a Redis restart with alerts stored before
the feed reconnects, and start-up errors (ports in use, a TLS certificate
that is not one, no Redis yet). Clients connect to 127.0.0.1 only.
"""

import http.client
import json
import secrets
import signal
import socket
import threading
import time
import types
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness as h
from cwstack import CardMaker
from test_feed import (PREFIX, SSE, Feed, LongPoll, Store, TokenIssuer, _access_lines,
                       _check_log_secrets, _check_stats, _redis_only_ini, _stats_want,
                       _stream, _token)

USER = "cwfeed"               # the feed's own ACL user where a test denies it commands
LATE = {"error": "redis did not answer in time"}
INTERNAL = {"error": "internal error"}
SHUTTING_DOWN = {"error": "shutting down"}


# --------------------------------------------------------------------------
# helpers

def _with_redis_keys(ini, text):
    """ini (from _redis_only_ini) with more [redis] keys."""
    assert "[redis]\n" in ini
    return ini.replace("[redis]\n", "[redis]\n" + text, 1)


def _acl_redis():
    """Redis with an ACL user of the feed's own (every command, every key);
    the harness and Store act as its admin user, so a test can deny the
    feed a command without denying it to the writer. Returns (redis,
    [redis] keys for the feed's config)."""
    pw = secrets.token_urlsafe(18)
    r = h.Redis(users={USER: (pw, "~* &* +@all")})
    pwf = h.tmpdir("secret") / "redis.pw"
    pwf.write_text(pw + "\n")
    pwf.chmod(0o600)
    return r, f"username = {USER}\npassword_file = {pwf}\n"


def _feed_config(base_ini, **feed_keys):
    """A config file as Feed writes it, for a feed started by hand: returns
    (path, feed port, admin port)."""
    d = h.tmpdir("feedcfg")
    port, http_port = h.free_port(), h.free_port()
    text = base_ini + f"\n[http]\nlisten = 127.0.0.1:{http_port}\n" \
        + f"\n[feed]\nlisten = 127.0.0.1:{port}\n" \
        + "".join(f"{k} = {v}\n" for k, v in feed_keys.items())
    path = d / "feed.ini"
    path.write_text(text)
    return path, port, http_port


def _request(port, method, path, token, timeout=10):
    """One request without a body on a new connection to the feed on port
    (for a feed started by hand): (status, {lower-case header: value},
    body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, headers={"Authorization": f"Bearer {token}"})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def _raw_request(port, path, token):
    """Sends GET path on a new connection and returns the socket unread."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              f"Authorization: Bearer {token}\r\n\r\n".encode())
    return s


def _read_by_peer(port, sock):
    """True once the server on port has read every byte sock sent (nothing
    unacknowledged on our side, nothing unread on its side: the tx and rx
    queues of both ends in /proc/net/tcp). The feed handles a request in
    the same read that takes it off the socket, so the request is then in
    progress."""
    mine = sock.getsockname()[1]
    ours = theirs = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        lp, rp = int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16)
        tx, rx = (int(x, 16) for x in f[4].split(":"))
        if (lp, rp) == (mine, port):
            ours = tx
        elif (lp, rp) == (port, mine):
            theirs = rx
    return ours == 0 and theirs == 0


def _read_to_eof(sock, timeout=30):
    """Everything sock receives until the peer closes (AssertionError when
    it does not within timeout)."""
    data, deadline = b"", time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the connection was not closed within {timeout}s; got {data[:200]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _response(data):
    """(status, {lower-case header: value}, body) of one HTTP/1.1 answer
    with Content-Length; (None, {}, b"") for no bytes at all."""
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hd = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return int(lines[0].split()[1]), hd, body[:int(hd.get("content-length", len(body)))]


def _stream_end(sse, timeout=20):
    """Reads sse until the feed ends it (its last chunk); returns True."""
    return h.wait_until(lambda: sse.read_some(1) or sse.closed, timeout, "the stream's end")


def _log_has(feed_or_proc, text, timeout=20):
    log = getattr(feed_or_proc, "proc", feed_or_proc)
    return h.wait_until(lambda: text in log.log_text(), timeout, f"'{text}' in {log.log}")


class PollFollower(threading.Thread):
    """An issuer's client that follows its feed with long polls, as a real
    one does: each answer's `next` is the next `after`; a 503 is asked
    again after its Retry-After. .got = [(cursor, alert id)] in order;
    .statuses counts the answers by status."""

    def __init__(self, feed, token, after="0-0", wait=5):
        super().__init__(daemon=True)
        self.feed, self.token, self.cursor, self.wait = feed, token, after, wait
        self.got, self.statuses, self.errors = [], Counter(), []
        self.done = threading.Event()
        self.start()

    def run(self):
        while not self.done.is_set():
            try:
                st, hd, data = self.feed.request(
                    "GET", f"/v1/alerts?after={self.cursor}&wait={self.wait}", self.token,
                    timeout=60)
            except OSError as e:
                if not self.done.is_set():
                    self.errors.append(repr(e))
                    self.done.wait(0.2)
                continue
            self.statuses[st] += 1
            if st == 503:
                self.done.wait(float(hd.get("retry-after", "1")))   # as the feed asks
                continue
            if st != 200:
                self.errors.append((st, data[:200]))
                return
            body = json.loads(data)
            self.got.extend((g["cursor"], g["alert"]["alert_id"]) for g in body["alerts"])
            self.cursor = body["next"]

    def stop(self):
        self.done.set()


class StreamFollower(threading.Thread):
    """An EventSource-like client: reads the stream, and when the feed ends
    it (or refuses it) connects again with Last-Event-ID. .got = [(id,
    alert id)]; .connects = streams opened (200)."""

    def __init__(self, feed, token, last=None):
        super().__init__(daemon=True)
        self.feed, self.token, self.last = feed, token, last
        self.got, self.connects, self.refused, self.errors = [], 0, 0, []
        self.done = threading.Event()
        self.start()

    def run(self):
        while not self.done.is_set():
            try:
                sse = SSE(self.feed, self.token, last_event_id=self.last, timeout=10)
            except (OSError, AssertionError) as e:
                self.errors.append(repr(e))
                self.done.wait(0.2)
                continue
            if sse.status != 200:
                self.refused += 1
                sse.close()
                self.done.wait(0.2)
                continue
            self.connects += 1
            n = 0
            while not self.done.is_set():
                try:
                    sse.read_events(n + 1, timeout=0.5)
                except AssertionError:
                    pass                      # nothing new yet, or the end
                except OSError:
                    break
                for ev in sse.events[n:]:
                    self.got.append((ev[0], json.loads(ev[2])["alert_id"]))
                    self.last = ev[0]
                n = len(sse.events)
                if sse.closed:
                    break
            sse.close()

    def stop(self):
        self.done.set()


def _want(r, issuer="alpha"):
    return [(sid, aid) for sid, aid, _a in _stream(r, issuer)]


# --------------------------------------------------------------------------
# tests


def _alpha_feed(r, redis_lines, seed, bin_):
    """A feed of issuer alpha on Redis r ([redis] gets redis_lines) with 3
    alerts of one card stored: (feed, token, store, pan, docs, newest
    stream id)."""
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    feed = Feed(_with_redis_keys(_redis_only_ini(r, [alpha]), redis_lines))
    store = Store(r)
    pan = CardMaker(seed).card(bin_)
    docs = [store.synthetic("alpha", pan) for _ in range(3)]
    for d in docs:
        assert store.record("alpha", d)[0] == 1
    return feed, alpha.token, store, pan, docs, _stream(r, "alpha")[-1][0]

def test_a_paused_redis_gets_503_in_time_and_the_late_answers_are_dropped():
    """Redis paused (SIGSTOP) under requests: each request whose answer is
    late gets 503 {"error":"redis did not answer in time"} with
    Retry-After: 1 ([redis] timeout_ms 3000: after 2 x 3000 + 1000 ms; a
    long poll after its wait and 5 s of grace for its query), /readyz and
    cardwatch_feed_redis_up say Redis is gone, the waiting long poll and
    stream are kept. After SIGCONT the late answers find their requests
    gone (the outcome asked for was never recorded; a retry records it),
    and the waiting clients get the new alerts. A long poll with nothing
    new is answered empty at its deadline. A shutdown while a request
    waits for the paused Redis answers it 503 {"error":"shutting down"}
    after 5 s and exits 0."""
    r = h.Redis()
    feed, tok, store, pan, docs, newest = _alpha_feed(r, "timeout_ms = 3000\n", 61, "400007")
    empty = LongPoll(feed, tok, newest, wait=1)      # nothing new: empty at its deadline
    poll = LongPoll(feed, tok, newest, wait=60)
    sse = SSE(feed, tok, last_event_id=newest)
    st, body = empty.get(30)
    assert st == 200 and body == {"alerts": [], "next": newest}, (st, body)
    h.wait_until(lambda: feed.waiting("long_poll") == 1 and feed.waiting("stream") == 1, 10,
                 "a long poll and a stream waiting")

    t_pause = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        r.pause()
        try:
            late = {
                "GET /v1/stats": ex.submit(feed.request, "GET", "/v1/stats", tok, timeout=60),
                "GET /v1/alerts/{id}": ex.submit(feed.request, "GET",
                                                 f"/v1/alerts/{docs[0]['alert_id']}", tok,
                                                 timeout=60),
                "POST outcome": ex.submit(feed.request, "POST",
                                          f"/v1/alerts/{docs[1]['alert_id']}/outcome", tok,
                                          {"outcome": "legitimate"}, timeout=60),
                "long poll": ex.submit(feed.request, "GET", "/v1/alerts?after=0-0&wait=1", tok,
                                       timeout=60),
            }
            why = h.wait_until(lambda: (lambda s: s[0] == 503 and s[1])(
                h.http_get(feed.admin + "/readyz")), 20, "/readyz 503 while Redis is paused")
            assert f"127.0.0.1:{r.port}" in why, why
            assert feed.metrics().get("cardwatch_feed_redis_up") == 0
            for what, fut in late.items():
                st, hd, data = fut.result(60)
                assert st == 503 and hd.get("retry-after") == "1" and json.loads(data) == LATE, \
                    (what, st, hd, data[:200])
            t_503 = time.monotonic() - t_pause
            assert poll.is_alive() and not sse.closed, "a waiting client was dropped"
            assert feed.waiting("long_poll") == 1 and feed.waiting("stream") == 1
        finally:
            r.resume()
    _log_has(feed, f"WARN feed: Redis 127.0.0.1:{r.port} lost (no answer within 3000 ms)")
    h.wait_until(feed._ready, 30, "the feed ready again after SIGCONT")

    # the late answers were dropped: the outcome asked for was never recorded
    one = feed.json("GET", f"/v1/alerts/{docs[1]['alert_id']}", tok)
    assert one["outcome"] is None and one["alert"] == docs[1], one
    # the waiting clients get what is stored now, nothing else, nothing twice
    new = [store.synthetic("alpha", pan) for _ in range(2)]
    for d in new:
        assert store.record("alpha", d)[0] == 1
    st, body = poll.get(30)
    assert st == 200, (st, body)
    got = [g["alert"] for g in body["alerts"]]
    if len(got) < 2:
        got += [g["alert"] for g in feed.json("GET", f"/v1/alerts?after={body['next']}", tok)
                ["alerts"]]
    assert got == new, [g["alert_id"] for g in got]
    assert [json.loads(e[2]) for e in sse.read_events(2, timeout=20)] == new
    assert feed.json("POST", f"/v1/alerts/{docs[1]['alert_id']}/outcome", tok,
                     {"outcome": "legitimate"}, want=201)["outcome"] == "legitimate"
    assert [g["alert"] for g in feed.list_all(tok)] == docs + new
    m = feed.metrics()
    assert m.get("cardwatch_feed_requests_total", status="503") == 4, m
    late_lines = [a for a in _access_lines(feed) if a[3] == 503]
    assert sorted(a[1:3] for a in late_lines) == sorted(
        [("GET", "/v1/stats"), ("GET", f"/v1/alerts/{docs[0]['alert_id']}"),
         ("POST", f"/v1/alerts/{docs[1]['alert_id']}/outcome"), ("GET", "/v1/alerts")]), \
        late_lines

    # shutdown while a request waits for the paused Redis: waiting clients
    # are answered at once, a new request on an open connection 503 (and
    # closed), the request in progress after 5 s (503), exit 0
    last = _stream(r, "alpha")[-1][0]
    poll = LongPoll(feed, tok, last, wait=60)
    h.wait_until(lambda: feed.waiting("long_poll") == 1, 10, "a long poll waiting")
    kept = http.client.HTTPConnection("127.0.0.1", feed.port, timeout=30)
    kept.request("GET", "/")                 # the page (no Redis); kept alive
    resp = kept.getresponse()
    assert resp.status == 200 and resp.read()
    r.pause()
    try:
        sock = _raw_request(feed.port, "/v1/stats", tok)
        h.wait_until(lambda: _read_by_peer(feed.port, sock), 10, "the feed read the request")
        t_stop = time.monotonic()
        feed.proc.send_signal(signal.SIGTERM)
        st, body = poll.get(20)
        assert st == 200 and body == {"alerts": [], "next": last}, (st, body)
        assert _stream_end(sse) and sse.events[2:] == [], sse.events
        _log_has(feed, "INFO feed: SIGTERM: stopping")
        kept.request("GET", "/v1/alerts", headers={"Authorization": f"Bearer {tok}"})
        resp = kept.getresponse()
        assert (resp.status, json.loads(resp.read()), resp.getheader("Connection")) == \
            (503, SHUTTING_DOWN, "close")
        kept.close()
        st, hd, data = _response(_read_to_eof(sock))
        t_answer = time.monotonic() - t_stop
        assert st == 503 and json.loads(data) == SHUTTING_DOWN, \
            f"the request in progress at shutdown got {st} {hd} {data[:200]!r} (no answer: " \
            "the connection was closed with its answer unsent)"
        rc = feed.proc.wait(30)
    finally:
        r.resume()
    log = feed.log_text()
    assert rc == 0, f"cardwatch feed exited {rc}:\n{log[-2000:]}"
    assert "WARN feed: 1 request(s) still in progress after 5000 ms; answering them 503" \
        in log, log[-2000:]
    sock.close()
    sse.close()
    print(f"    paused Redis: every late request answered 503 within {t_503:.1f}s of SIGSTOP; "
          f"at shutdown the request in progress answered after {t_answer:.1f}s")


def test_commands_denied_by_the_acl_answer_500_and_nothing_is_lost():
    """The feed's ACL user is denied, for a while, the commands its
    handlers use (ACL SETUSER -xrange -hmget -hgetall, then -eval
    -xrevrange; Redis answers NOPERM): each request that needs one gets
    500 {"error":"internal error"}, a stream is ended (its client comes
    back with Last-Event-ID), a waiting long poll woken by a new alert gets
    500, one line per refusal names the request (path only) and the
    error; a waiter whose wake-up check is refused stays waiting. Once the
    ACL is restored every alert stored meanwhile reaches the clients, the
    refused outcomes were never recorded, the stats are right."""
    r, redis_keys = _acl_redis()
    feed, tok, store, pan, docs, newest = _alpha_feed(r, redis_keys, 62, "400011")
    poll = LongPoll(feed, tok, newest, wait=60)
    sse = SSE(feed, tok, last_event_id=newest)
    h.wait_until(lambda: feed.waiting("long_poll") == 1 and feed.waiting("stream") == 1, 10,
                 "a long poll and a stream waiting")
    r.call("ACL", "LOG", "RESET")

    def denied(cmd):
        """Commands cmd Redis refused so far (ACL LOG groups alike refusals
        into one entry with a count)."""
        return sum(int(f[b"count"]) for f in (dict(zip(e[::2], e[1::2]))
                                              for e in r.call("ACL", "LOG", 1000))
                   if f.get(b"object") == cmd.encode())

    # 1. no XRANGE, HMGET, HGETALL for the feed
    r.call("ACL", "SETUSER", USER, "-xrange", "-hmget", "-hgetall")
    aid = docs[0]["alert_id"]
    for method, path, body in (("GET", "/v1/alerts", None), ("GET", f"/v1/alerts/{aid}", None),
                               ("GET", "/v1/stats", None),
                               ("POST", f"/v1/alerts/{aid}/outcome", {"outcome": "legitimate"})):
        st, _hd, data = feed.request(method, path, tok, body)
        assert st == 500 and json.loads(data) == INTERNAL, (method, path, st, data[:200])
    fresh = SSE(feed, tok)                 # its first query is refused: the stream ends
    assert fresh.status == 200 and _stream_end(fresh) and fresh.events == [], fresh.events
    fresh.close()
    d4 = store.synthetic("alpha", pan)     # wakes the waiters; their queries are refused
    assert store.record("alpha", d4)[0] == 1
    st, body = poll.get(20)
    assert st == 500 and body == INTERNAL, (st, body)
    assert _stream_end(sse) and sse.events == [], sse.events
    sse.close()
    assert denied("xrange") >= 4 and denied("hmget") == 2 and denied("hgetall") >= 1
    log = feed.log_text()
    for line in ("GET /v1/alerts: NOPERM", f"GET /v1/alerts/{aid}: NOPERM",
                 "GET /v1/stats: NOPERM", f"POST /v1/alerts/{aid}/outcome: NOPERM",
                 "GET /v1/alerts/stream: NOPERM"):
        assert f"WARN feed: Redis answered {line}" in log, (line, log[-3000:])

    # 2. no EVAL (outcomes), no XREVRANGE (newest first, and the check that
    # wakes waiters): the outcome's first read works, its script is refused
    r.call("ACL", "SETUSER", USER, "+@all", "-eval", "-xrevrange")
    for method, path, body in (("GET", "/v1/alerts?include=outcome", None),
                               ("GET", "/v1/alerts?order=newest", None),
                               ("POST", f"/v1/alerts/{aid}/outcome", {"outcome": "legitimate"})):
        st, _hd, data = feed.request(method, path, tok, body)
        assert st == 500 and json.loads(data) == INTERNAL, (method, path, st, data[:200])
    cursor = _stream(r, "alpha")[-1][0]
    poll = LongPoll(feed, tok, cursor, wait=60)
    h.wait_until(lambda: feed.waiting("long_poll") == 1, 10, "a long poll waiting")
    checks = denied("xrevrange")
    d5 = store.synthetic("alpha", pan)
    assert store.record("alpha", d5)[0] == 1
    h.wait_until(lambda: denied("xrevrange") > checks, 10, "the feed's refused check for news")
    assert poll.is_alive(), "a long poll was answered while its check was refused"

    # restored: the waiter gets d5, a client coming back gets d4 and d5
    r.call("ACL", "SETUSER", USER, "+@all")
    st, body = poll.get(20)
    assert st == 200 and [g["alert"] for g in body["alerts"]] == [d5], (st, body)
    sse = SSE(feed, tok, last_event_id=newest)
    assert [json.loads(e[2]) for e in sse.read_events(2)] == [d4, d5]
    sse.close()
    everything = docs + [d4, d5]
    assert [g["alert"] for g in feed.list_all(tok)] == everything
    assert feed.json("GET", f"/v1/alerts/{aid}", tok)["outcome"] is None
    assert feed.json("POST", f"/v1/alerts/{aid}/outcome", tok, {"outcome": "legitimate"},
                     want=201)["outcome"] == "legitimate"
    _check_stats(feed.json("GET", "/v1/stats", tok),
                 _stats_want(everything, {aid: "legitimate"}, "alpha"), "after the ACL")
    m = feed.metrics()
    assert m.get("cardwatch_feed_requests_total", status="500") == 8, m
    h.wait_until(lambda: h.http_get(feed.admin + "/readyz")[0] == 200, 20, "/readyz 200")
    feed.stop()
    _check_log_secrets(feed, [tok])


def test_subscriber_loss_and_a_redis_restart_lose_no_alert():
    """Three long-poll clients and two stream clients follow one issuer's
    feed through two faults: (1) the feed's subscriber connection is
    killed and its SUBSCRIBE refused (ACL) for a while - the feed says so
    (cardwatch_feed_subscribed 0, one log line each), stays ready and finds
    new alerts by polling; (2) Redis stops and starts again, and alerts
    are stored before the feed has reconnected. Every client ends with
    exactly the issuer's stream as Store recorded it, in order, once; the
    streams are never dropped (one connection each)."""
    r, redis_keys = _acl_redis()
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    beta = TokenIssuer("beta", "US", ["510000"], token=_token())
    feed = Feed(_with_redis_keys(_redis_only_ini(r, [alpha, beta]), redis_keys))
    store = Store(r)
    pan = CardMaker(63).card("400021")

    def put(n):
        for _ in range(n):
            assert store.record("alpha", store.synthetic("alpha", pan))[0] == 1

    put(2)
    polls = [PollFollower(feed, alpha.token, wait=w) for w in (2, 5, 30)]
    streams = [StreamFollower(feed, alpha.token) for _ in range(2)]
    other = LongPoll(feed, beta.token, "0-0", wait=60)

    def caught_up():
        want = _want(r)
        return all(f.got == want for f in polls + streams) and want

    h.wait_until(caught_up, 20, "every client has the first alerts")

    # 1. the subscriber connection killed, and refused when it comes back
    r.call("ACL", "SETUSER", USER, "-subscribe")
    assert r.call("CLIENT", "KILL", "USER", USER, "TYPE", "pubsub") == 1
    h.wait_until(lambda: feed.metrics().get("cardwatch_feed_subscribed") == 0, 10,
                 "cardwatch_feed_subscribed 0")
    _log_has(feed, f"WARN feed: subscription to {PREFIX}:feed lost; polling every 1000 ms")
    _log_has(feed, f"refused SUBSCRIBE for user '{USER}': NOPERM")
    assert h.http_get(feed.admin + "/readyz")[0] == 200, "not ready while only polling"
    put(3)
    h.wait_until(caught_up, 20, "every client has the alerts stored without a subscription")
    r.call("ACL", "SETUSER", USER, "+@all")
    h.wait_until(lambda: feed.metrics().get("cardwatch_feed_subscribed") == 1, 20,
                 "subscribed again")
    assert feed.log_text().count(f"refused SUBSCRIBE for user '{USER}'") == 1, \
        "the refusal is logged once, not at every retry"
    # a notice for an issuer this feed does not know wakes nobody
    r.call("PUBLISH", f"{PREFIX}:feed", "nobody")
    put(1)
    h.wait_until(caught_up, 20, "every client has the alert stored after the resubscription")

    # 2. Redis restarts; alerts are stored before the feed reconnects
    r.stop(save=True)
    h.wait_until(lambda: (lambda m: m.get("cardwatch_feed_redis_up") == 0 and
                          m.get("cardwatch_feed_subscribed") == 0)(feed.metrics()), 10,
                 "the gauges say Redis is gone")
    st, why = h.http_get(feed.admin + "/readyz")
    assert st == 503 and f"127.0.0.1:{r.port}" in why, (st, why)
    r.start()
    put(3)
    h.wait_until(feed._ready, 30, "the feed reconnected and subscribed")
    put(2)
    want = h.wait_until(caught_up, 30, "every client has every alert")
    assert len(want) == 11
    assert all(f.connects == 1 for f in streams), \
        f"a stream was dropped: connections {[f.connects for f in streams]}"
    assert other.is_alive(), "beta's long poll was woken by alpha's alerts or the faults"
    for f in polls + streams:
        f.stop()
    feed.stop()
    assert other.get(10) == (200, {"alerts": [], "next": "0-0"})
    for f in polls + streams:
        f.join(15)
        assert not f.is_alive() and not f.errors, f.errors
    print(f"    {len(want)} alerts reached 3 long-poll and 2 stream clients; long-poll answers "
          f"by status: {dict(sum((f.statuses for f in polls), Counter()))}")


def test_start_up_errors_and_a_feed_started_before_redis():
    """`cardwatch feed` exits 1 naming the problem when its port or its
    admin port is in use or its certificate file is not a certificate; a
    Redis that is not there yet is no start-up error: the feed runs, not
    ready (/readyz names Redis), answers 503, and serves once Redis is up
    and the exposed-card set confirmed. A second SIGTERM while a request
    still waits for Redis exits at once."""
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    tok = alpha.token
    redis_port = h.free_port()
    base = _redis_only_ini(types.SimpleNamespace(port=redis_port), [alpha])
    d = h.tmpdir("bad")
    garbage = d / "cert.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                       "-----END CERTIFICATE-----\n")
    key = d / "key.pem"
    h.run_tool(["openssl", "genpkey", "-algorithm", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-out", key])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        cases = []
        cfg, _p, _hp = _feed_config(base)
        cfg.write_text(cfg.read_text().replace(f"127.0.0.1:{_p}", f"127.0.0.1:{taken}"))
        cases.append((cfg, f"ERROR feed: feed: cannot listen on 127.0.0.1:{taken} "
                           "(in use or not a local address)"))
        cfg, _p, hp = _feed_config(base)
        cfg.write_text(cfg.read_text().replace(f"127.0.0.1:{hp}", f"127.0.0.1:{taken}"))
        cases.append((cfg, f"http: cannot listen on 127.0.0.1:{taken}"))
        cfg, _p, _hp = _feed_config(base, tls_cert=garbage, tls_key=key)
        cases.append((cfg, "ERROR feed: feed: cannot load [feed] tls_cert ("))
        for cfg, want in cases:
            res = h.run_tool([h.tool("cardwatch"), "feed", "--config", cfg], check=False,
                             timeout=30)
            err = (res.stdout + res.stderr).decode(errors="replace")
            assert res.returncode == 1 and want in err, (cfg.read_text(), res.returncode, err)

    # no Redis yet
    cfg, port, http_port = _feed_config(base, rate_per_s=100000, burst=100000)
    proc = h.spawn([h.tool("cardwatch"), "feed", "--config", cfg], name="cardwatch-feed")
    admin = f"http://127.0.0.1:{http_port}"
    st, why = h.wait_until(lambda: h.http_get(admin + "/readyz"), 20, "/readyz answering")
    assert st == 503 and f"Redis 127.0.0.1:{redis_port} unavailable" in why, (st, why)
    m = h.scrape(admin + "/metrics")
    assert m.get("cardwatch_feed_redis_up") == 0 and m.get("cardwatch_feed_subscribed") == 0
    st, hd, data = _request(port, "GET", "/v1/alerts", tok)
    assert st == 503 and hd.get("retry-after") == "1" and \
        json.loads(data) == {"error": "redis unavailable"}, (st, data)
    assert proc.alive
    r = h.Redis(port=redis_port)
    h.run_tool([h.tool("cardwatch"), "breaches", "--confirm", "--config", cfg])
    h.wait_until(lambda: h.http_get(admin + "/readyz")[0] == 200 and
                 h.scrape(admin + "/metrics").get("cardwatch_feed_subscribed") == 1, 30,
                 "the feed ready once Redis is up")
    st, _hd, data = _request(port, "GET", "/v1/alerts", tok)
    assert st == 200 and json.loads(data) == {"alerts": [], "next": "0-0"}, (st, data)

    # a second SIGTERM while a request waits for (a paused) Redis: exit now
    r.pause()
    try:
        sock = _raw_request(port, "/v1/stats", tok)
        h.wait_until(lambda: _read_by_peer(port, sock), 10, "the feed read the request")
        proc.send_signal(signal.SIGTERM)
        _log_has(proc, "INFO feed: SIGTERM: stopping")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        _read_to_eof(sock, 10)            # closed, not left hanging
        sock.close()
    finally:
        r.resume()
    log = proc.log_text()
    assert rc == 0 and "WARN feed: second signal: exiting now" in log, (rc, log[-2000:])
    assert "still in progress" not in log, log[-2000:]
