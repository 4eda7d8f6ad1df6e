"""Branches of the issuer feed (`cardwatch feed`, processor/feed.c and
app_feed.c) that test_feed.py, test_feed_edges.py, test_feed_hardening.py
and test_faults_feed.py leave untaken (issue 12, branch coverage), end to
end: real redis-server and `cardwatch feed` processes, raw sockets as the
issuers' clients. Entries and records a writer other than the ledger could
leave in Redis are written there directly (XADD, HSET, SET), as an
operator's script or a corrupted restore would.

Covered, each as what the client, the log and Redis show:
  - stream entries of odd shapes: an 8-letter field that is not alert_id,
    an alert_id that is not an id, a 5-letter field that is not alert, an
    alert value too short, not starting with '{' or not ending with '}'
    (alert null in the list, the stream and include=outcome), an alert with
    line breaks (split into SSE data lines, one JSON document again)
  - cursors with ms 0: after=0-1 and order=newest&before=0-2; an empty
    Last-Event-ID (the stream starts from the beginning)
  - the access log of a long path with a quote (cut, '?' for the quote)
  - alert records without their JSON or stream id (500 and logged, a
    cursor null), a feedstats key of the wrong type (500, logged, the
    metrics keep answering)
  - an outcome body that arrives in three pieces (201, recorded once)
  - an event stream whose client stops reading while an alert arrives and
    the keep-alive period passes (every event delivered once, in order,
    then the keep-alive resumes)
  - a feed without an [http] admin endpoint: news met while a long poll's
    query is held behind a held outcome script; SIGINT while a long poll's
    outcome script and a plain list's query are held (both answered with
    their alerts and outcome null, exit 0)
  - accept() out of descriptors while every connection is a held long
    poll: none closed, retried every 100 ms, one log line per 10 s with the
    count in between (this found a bug: the connection that took the last
    descriptor was closed unread; fixed in on_accept_error)
"""

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import harness as h
from cwstack import CardMaker
from test_faults_feed import _read_by_peer
from test_feed import (PREFIX, SSE, Feed, Store, TokenIssuer, _access_lines,
                       _check_log_secrets, _redis_only_ini, _token)
from test_feed_hardening import _read_all, _responses

INTERNAL = {"error": "internal error"}


# --------------------------------------------------------------------------
# helpers

def _s(v):
    """A Redis reply (bytes or str) as str."""
    return v.decode() if isinstance(v, bytes) else v


def _cmdstat(r, name):
    """{calls, failed_calls, ...} of Redis command name (INFO commandstats)."""
    text = _s(r.call("INFO", "commandstats")).replace("\r", "")
    m = re.search(rf"^cmdstat_{name}:(\S+)$", text, re.M)
    if not m:
        return {"calls": 0, "failed_calls": 0}
    return {k: float(v) for k, v in (x.split("=") for x in m.group(1).split(","))}


def _outcome_head(aid, token, n):
    """The head of POST /v1/alerts/<aid>/outcome for a body of n bytes."""
    return (f"POST /v1/alerts/{aid}/outcome HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {n}\r\n\r\n").encode()


def _feed_peer_unsent(port, sock):
    """Bytes the feed on port has queued for sock and not sent (its tx
    queue in /proc/net/tcp): > 0 while the client does not read."""
    mine = sock.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        lp, rp = int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16)
        if (lp, rp) == (port, mine):
            return int(f[4].split(":")[0], 16)
    return 0


def _recv_until(sock, marker, timeout):
    """Reads sock until marker has arrived (chunks kept in a list: several
    MB arrive in small pieces); returns every byte read."""
    parts, tail, end = [], b"", time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        assert left > 0, f"{marker!r} did not arrive within {timeout}s"
        sock.settimeout(left)
        chunk = sock.recv(1 << 20)
        assert chunk, f"the feed closed the stream before {marker!r}"
        parts.append(chunk)
        if marker in tail + chunk:
            return b"".join(parts)
        tail = (tail + chunk)[-len(marker):]


def _sse_parse(data):
    """(status, [(id, data)], comment count) of a whole chunked
    text/event-stream answer read so far."""
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"transfer-encoding: chunked" in head.lower(), head
    body, at = [], 0
    while True:
        nl = rest.find(b"\r\n", at)
        if nl < 0:
            break
        n = int(rest[at:nl].split(b";")[0], 16)
        if n == 0 or nl + 2 + n > len(rest):
            break
        body.append(rest[nl + 2:nl + 2 + n])
        at = nl + 2 + n + 2
    events, comments = [], 0
    for block in b"".join(body).split(b"\n\n"):
        lines = block.decode().split("\n")
        comments += sum(1 for ln in lines if ln.startswith(":"))
        fields = [ln.partition(": ") for ln in lines if ln and not ln.startswith(":")]
        ids = [v for k, _, v in fields if k == "id"]
        if ids:
            events.append((ids[0], "\n".join(v for k, _, v in fields if k == "data")))
    return status, events, comments


# --------------------------------------------------------------------------
# tests

def test_odd_entries_cursors_records_and_a_stuck_stream():
    """One feed (keep-alive 1 s) over entries and records Redis may hold
    besides the ledger's: (1) stream entries with foreign fields, an
    alert_id that is no id and alert values that are not a JSON object
    come out as alert null (list, include=outcome, stream), an alert with
    CR/LF is split into SSE data lines and reads back as the same JSON;
    (2) cursors with ms 0 page exactly (after=0-1, newest before 0-2), an
    empty Last-Event-ID starts the stream from the beginning; (3) a long
    path with a quote is logged cut to 95 characters, '?' for the quote;
    (4) an alert record without its JSON answers 500 to GET and to an
    outcome (logged, nothing recorded), one without a stream id answers
    cursor null; a feedstats key of the wrong type answers 500 to
    /v1/stats (logged) while /metrics keeps answering; (5) an outcome
    whose body arrives in three reads is recorded (201); (6) an event
    stream whose client stops reading for more than the keep-alive period
    while an alert arrives delivers every event once and in order once it
    reads again, then sends its keep-alive comment."""
    r = h.Redis()
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    beta = TokenIssuer("beta", "GB", ["400100-400199"], token=_token())
    gamma = TokenIssuer("gamma", "GB", ["400200-400299"], token=_token())
    fa = f"{PREFIX}:feed:alpha"
    # (1) entries of odd shapes, with ids of ms 0
    r.call("XADD", fa, "0-1", "alert_xx", "1", "alert", "x")
    r.call("XADD", fa, "0-2", "alert_id", "not-an-id", "alert", "ab")
    r.call("XADD", fa, "0-3", "alarm", "{}", "alert", "{a")
    r.call("XADD", fa, "0-4", "alert", '{"n":1,\n"m":2\r}')
    r.call("SET", f"{PREFIX}:feedstats:beta", "not a hash")
    feed = Feed(_redis_only_ini(r, [alpha, beta, gamma]), keepalive_s=1)
    tok = alpha.token

    got = feed.json("GET", "/v1/alerts?include=outcome", tok)
    want = [{"cursor": f"0-{i}", "alert": None, "outcome": None} for i in (1, 2, 3)] \
        + [{"cursor": "0-4", "alert": {"n": 1, "m": 2}, "outcome": None}]
    assert got == {"alerts": want, "next": "0-4"}, got
    # (2) ms-0 cursors: after=0-1 leaves 0-1 out; newest before 0-2 is 0-1
    got = feed.json("GET", "/v1/alerts?after=0-1", tok)
    assert [a["cursor"] for a in got["alerts"]] == ["0-2", "0-3", "0-4"], got
    got = feed.json("GET", "/v1/alerts?order=newest&before=0-2", tok)
    assert got == {"alerts": [{"cursor": "0-1", "alert": None}], "next": "0-1"}, got
    sse = SSE(feed, tok, last_event_id="")
    assert sse.status == 200, sse.status
    ev = sse.read_events(4)
    assert [(e[0], e[1]) for e in ev] == [(f"0-{i}", "alert") for i in (1, 2, 3, 4)], ev
    assert [e[2] for e in ev[:3]] == ["null"] * 3, ev
    assert json.loads(ev[3][2]) == {"n": 1, "m": 2}, ev[3]
    assert b'id: 0-4\nevent: alert\ndata: {"n":1,\ndata: "m":2\ndata: }\n\n' \
        in sse.everything, sse.everything[-200:]
    sse.close()

    # (3) a long path with a quote: 404, logged cut and without the quote
    path = '/x"y/' + "a" * 150
    st, _hd, body = feed.request("GET", path)
    assert (st, json.loads(body)) == (404, {"error": "not found"}), (st, body)
    logged = ("/x?y/" + "a" * 150)[:95]
    h.wait_until(lambda: ("-", "GET", logged, 404) in _access_lines(feed), 5,
                 "the access-log line of the long path")

    # (4) records without their JSON / stream id; beta's stats of the wrong type
    aid1, aid2 = "a1" * 16, "b2" * 16
    r.call("HSET", f"{PREFIX}:alert:{aid1}", "issuer", "alpha")
    r.call("HSET", f"{PREFIX}:alert:{aid2}", "issuer", "alpha", "alert", '{"x":1}')
    assert feed.json("GET", f"/v1/alerts/{aid1}", tok, want=500) == INTERNAL
    assert feed.json("POST", f"/v1/alerts/{aid1}/outcome", tok,
                     body={"outcome": "legitimate"}, want=500) == INTERNAL
    assert r.call("HGET", f"{PREFIX}:alert:{aid1}", "outcome") is None
    assert feed.log_text().count(f"alert {aid1}: stored JSON unreadable") == 2
    assert feed.json("GET", f"/v1/alerts/{aid2}", tok) == {
        "cursor": None, "alert": {"x": 1}, "outcome": None, "note": None,
        "outcome_at_ms": None}
    # the feed's first stats refresh (about 1 s after start) failed on beta
    h.wait_until(lambda: _cmdstat(r, "hgetall")["failed_calls"] >= 1, 10,
                 "the feed's stats refresh of beta answered WRONGTYPE")
    assert feed.json("GET", "/v1/stats", beta.token, want=500) == INTERNAL
    assert "Redis answered GET /v1/stats: WRONGTYPE" in feed.log_text()
    m = feed.metrics()
    assert m.get("cardwatch_feed_redis_up") == 1
    assert m.get("cardwatch_feed_requests_total", status="500") == 3, m

    # (5) an outcome body in three reads
    store = Store(r)
    doc = store.synthetic("alpha", CardMaker(94).card("400001"))
    assert store.record("alpha", doc)[0] == 1
    aid = doc["alert_id"]
    body = b'{"outcome":"confirmed_fraud","note":"split"}'
    with feed.socket(10) as s:
        s.sendall(_outcome_head(aid, tok, len(body)) + body[:5])
        h.wait_until(lambda: _read_by_peer(feed.port, s), 10, "the feed read piece 1")
        s.sendall(body[5:20])
        h.wait_until(lambda: _read_by_peer(feed.port, s), 10, "the feed read piece 2")
        s.sendall(body[20:])
        s.shutdown(socket.SHUT_WR)
        data, _eof = _read_all(s, 10)
    got = _responses(data)
    assert [g[0] for g in got] == [201], got
    assert json.loads(got[0][2]) == {"alert_id": aid, "outcome": "confirmed_fraud"}, got
    assert r.call("HMGET", f"{PREFIX}:alert:{aid}", "outcome", "note") == \
        [b"confirmed_fraud", b"split"]

    # (6) gamma: 60 alerts of 100 KB (more than the socket buffers hold)
    fg = f"{PREFIX}:feed:gamma"
    ids = [_s(r.call("XADD", fg, "*", "alert", json.dumps({"n": i, "pad": "p" * 100_000})))
           for i in range(60)]
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", feed.port))
    slow.sendall(f"GET /v1/alerts/stream HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {gamma.token}\r\n\r\n".encode())
    h.wait_until(lambda: _feed_peer_unsent(feed.port, slow) > 0, 10,
                 "the feed's writes to the stream stopped (client not reading)")
    last = _s(r.call("XADD", fg, "*", "alert", '{"n":"late"}'))
    r.call("PUBLISH", f"{PREFIX}:feed", "gamma")
    # two more checks of the 1 s poll: the stream stayed stuck > 1 s
    c0 = _cmdstat(r, "xrevrange")["calls"]
    h.wait_until(lambda: _cmdstat(r, "xrevrange")["calls"] >= c0 + 3, 10,
                 "the feed's poll checked gamma twice more")
    data = _recv_until(slow, f"id: {last}\n".encode(), 30)
    if b": keepalive\n\n" not in data.partition(f"id: {last}\n".encode())[2]:
        data += _recv_until(slow, b": keepalive\n\n", 10)
    slow.close()
    st, ev, comments = _sse_parse(data)
    assert st == 200
    assert [e[0] for e in ev] == ids + [last], [e[0] for e in ev][-3:]
    assert [json.loads(e[1])["n"] for e in ev] == list(range(60)) + ["late"]
    assert comments == 1 and data.rindex(b": keepalive\n\n") > data.rindex(b"id: "), \
        data[-100:]
    _check_log_secrets(feed, [alpha.token, beta.token, gamma.token])
    feed.stop()


def _held_client(r):
    """(qbuf) of the Redis client whose command the pause holds (the
    feed's main connection), or None while there is none."""
    for line in _s(r.call("CLIENT", "LIST")).splitlines():
        f = dict(x.split("=", 1) for x in line.split() if "=" in x)
        if "b" in f.get("flags", "") and f.get("cmd") == "eval":
            return int(f["qbuf"])
    return None


def test_feed_without_admin_held_queries_and_sigint():
    """A feed with no [http] section (no admin endpoint) serves the feed
    alone. With Redis paused for writes, the outcome script of a long poll
    (include=outcome) is held and every later command of the feed's
    connection waits behind it: (1) a long poll that arrives while the
    newest-entry check is queued is answered with exactly the entry after
    its cursor once Redis goes on (news met while its query ran), and the
    first poll gets its alerts with outcome null; (2) SIGINT while a long
    poll's outcome script is held answers that poll at once with its
    alerts and outcome null, and a plain list (include=outcome) whose
    query answers only after the SIGINT gets its alerts with outcome null
    too (no outcome query while stopping); the log says "SIGINT:
    stopping" and the feed exits 0."""
    r = h.Redis()
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    store = Store(r)
    pan = CardMaker(95).card("400002")
    docs = [store.synthetic("alpha", pan) for _ in range(2)]
    sids = []
    for d in docs:
        assert store.record("alpha", d)[0] == 1
        sids.append(_s(r.call("HGET", f"{PREFIX}:alert:{d['alert_id']}", "stream_id")))
    port = h.free_port()
    d = h.tmpdir("feed")
    cfg = d / "feed.ini"
    cfg.write_text(_redis_only_ini(r, [alpha]) + "\n[http]\nlisten =\n"
                   f"\n[feed]\nlisten = 127.0.0.1:{port}\n")
    proc = h.spawn([h.tool("cardwatch"), "feed", "--config", cfg], name="cardwatch-feed",
                   log=d / "feed.log")
    h.wait_until(lambda: "subscribed to" in proc.log_text() or not proc.alive, 20,
                 "the feed subscribed")
    assert proc.alive, proc.log_text(30)
    assert "/healthz /readyz /metrics" not in proc.log_text(), "an admin endpoint was started"

    def get(path, timeout=20):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            c.request("GET", path, headers={"Authorization": f"Bearer {alpha.token}"})
            resp = c.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            c.close()

    def started(path):
        out = {}
        t = threading.Thread(target=lambda: out.update(ans=get(path)), daemon=True)
        t.start()
        return t, out

    def answer(t, out, what):
        t.join(10)
        assert "ans" in out, f"{what} was not answered"
        return out["ans"]

    everything = [{"cursor": c, "alert": x, "outcome": None} for c, x in zip(sids, docs)]
    st, got = get("/v1/alerts")
    assert st == 200 and [a["alert"] for a in got["alerts"]] == docs, got
    try:
        # (1) the check queued behind a held script, then a long poll
        r.call("CLIENT", "PAUSE", "20000", "WRITE")
        p1 = started("/v1/alerts?wait=15&include=outcome")
        h.wait_until(lambda: _held_client(r) is not None, 10, "the outcome script held")
        h.wait_until(lambda: (_held_client(r) or 0) > 0, 10,
                     "the 1 s poll's newest-entry check queued behind it")
        q = _held_client(r)
        p2 = started(f"/v1/alerts?after={sids[0]}&wait=15")
        h.wait_until(lambda: (_held_client(r) or 0) > q, 10, "the long poll's query queued")
        r.call("CLIENT", "UNPAUSE")
        assert answer(*p1, "the first poll") == (200, {"alerts": everything, "next": sids[1]})
        assert answer(*p2, "the second poll") == \
            (200, {"alerts": [{"cursor": sids[1], "alert": docs[1]}], "next": sids[1]})

        # (2) SIGINT with a held script and a list queued behind it
        r.call("CLIENT", "PAUSE", "20000", "WRITE")
        p3 = started("/v1/alerts?wait=15&include=outcome")
        h.wait_until(lambda: _held_client(r) is not None, 10, "the outcome script held")
        q = _held_client(r)
        plain = started("/v1/alerts?include=outcome")
        h.wait_until(lambda: (_held_client(r) or 0) > q, 10, "the list's query queued")
        proc.send_signal(signal.SIGINT)
        assert answer(*p3, "the poll at SIGINT") == \
            (200, {"alerts": everything, "next": sids[1]})
        r.call("CLIENT", "UNPAUSE")
        assert answer(*plain, "the list queued at SIGINT") == \
            (200, {"alerts": everything, "next": sids[1]})
        proc.wait(20)
    finally:
        r.call("CLIENT", "UNPAUSE")
    assert proc.returncode == 0, proc.log_text(30)
    log = proc.log_text()
    assert "SIGINT: stopping" in log and "answered 1 long poll(s)" in log, log[-2000:]


def _served_conns(port):
    """Sockets of the server on port that still hold a descriptor: its
    side of a connection, not listening, not in TIME_WAIT (/proc/net/tcp)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] not in ("0A", "06"):
            n += 1
    return n


def test_out_of_descriptors_with_only_held_polls_closes_none():
    """When accept() fails for want of a descriptor (EMFILE) and every
    connection is a held long poll (none idle to close): the feed closes
    none of them and retries every 100 ms, logging one line per 10 s with
    the count of the failures in between; once an alert answers the polls
    (and their clients close), the waiting client is accepted and answered.
    The open-file limit is lowered on the running feed (prlimit) to what
    it holds at rest plus 6, so that 6 polls take every free descriptor.
    Before the fix the poll that took the last descriptor was closed
    unanswered at once: Linux's accept() fails with EMFILE when no
    descriptor is free even if no connection waits, and the feed closed
    the oldest connection not yet read - the one it had just accepted."""
    r = h.Redis()
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    feed = Feed(_redis_only_ini(r, [alpha]), nofile=64)
    assert feed.metrics().get("cardwatch_feed_connections_limit") == 32
    h.wait_until(lambda: _served_conns(feed.http_port) == 0, 10,
                 "the admin endpoint's connections closed")
    at_rest = len(os.listdir(f"/proc/{feed.proc.pid}/fd"))
    h.run_tool(["prlimit", f"--pid={feed.proc.pid}", f"--nofile={at_rest + 6}"])
    polls = []
    for _ in range(6):
        s = socket.create_connection(("127.0.0.1", feed.port), timeout=30)
        s.sendall(f"GET /v1/alerts?wait=30 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {alpha.token}\r\nConnection: close\r\n\r\n"
                  .encode())
        polls.append(s)
        # one at a time: connections accepted together and not read yet
        # would be idle ones, closed for the next
        h.wait_until(lambda: _read_by_peer(feed.port, s), 10,
                     "the feed read the long poll (not: closed unread)")
    # (no /metrics from here on: the polls take the last descriptors, the
    # admin endpoint's too)
    def none_closed():
        for s in polls:
            s.setblocking(False)
            try:
                assert s.recv(1) != b"", \
                    f"long poll {polls.index(s) + 1} of {len(polls)} was closed unanswered"
            except BlockingIOError:
                pass
            s.setblocking(True)

    none_closed()
    late = socket.create_connection(("127.0.0.1", feed.port), timeout=30)
    late.sendall(f"GET /v1/alerts HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {alpha.token}\r\nConnection: close\r\n\r\n"
                 .encode())
    h.wait_until(lambda: "more since the last such line" in feed.log_text(), 15,
                 "the second accept() line, 10 s after the first")
    lines = [ln for ln in feed.log_text().splitlines() if "accept() on" in ln]
    assert len(lines) == 2 and "Too many open files" in lines[0], lines
    more = int(re.search(r"; (\d+) more since", lines[1]).group(1))
    assert more >= 10, lines[1]                       # retried, every 100 ms
    none_closed()
    store = Store(r)
    doc = store.synthetic("alpha", CardMaker(96).card("400003"))
    assert store.record("alpha", doc)[0] == 1
    for s in polls:
        data, eof = _read_all(s, 10)
        got = _responses(data)
        assert eof and [g[0] for g in got] == [200], data[:200]
        assert [a["alert"] for a in json.loads(got[0][2])["alerts"]] == [doc]
        s.close()
    data, eof = _read_all(late, 10)
    got = _responses(data)
    assert eof and [g[0] for g in got] == [200], data[:200]
    assert [a["alert"] for a in json.loads(got[0][2])["alerts"]] == [doc]
    late.close()
    m = feed.metrics()
    assert m.get("cardwatch_feed_accept_errors_total") >= more + 2, m
    assert m.get("cardwatch_feed_connections_shed_total", reason="reclaimed") == 0
    feed.stop()
