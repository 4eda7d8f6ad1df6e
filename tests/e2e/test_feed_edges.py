"""Edges of the issuer feed (`cardwatch feed`) that test_feed.py,
test_feed_hardening.py and test_faults_feed.py leave unrun (issue 12,
"every failure path tested"), end to end: real redis-server and
`cardwatch feed` processes, raw sockets as the issuers' clients.

Covered, each as what the client, the log and /metrics show:
  - the request gate when bytes arrive in awkward pieces: a body that ends
    in the same read as the next request starts (both answered, in order);
    a refused head followed by more bytes in one large TLS record (one 400,
    EOF, nothing after it answered); a stream client that keeps sending
    (past 64 KiB: closed)
  - event streams: a stream entry without an alert (alert null in the
    list, the stream and include=outcome), the keep-alive comment of an
    idle stream (15 s)
  - the request deadline when nothing came at all, and when a body stalls
    (closed without an answer; counted as timeouts)
  - outcome reports on an id that is not an alert id, on an alert whose
    stored JSON is unreadable (500, logged) and on an alert that expires
    between the feed's read and its outcome script (404, nothing recorded);
    a CONNECT request (no path: "-" in the access log, which had an empty
    field before)
  - start-up: the open-file limit raised towards the hard limit (and capped
    by it), [feed] listen on IPv6, an empty [redis] password_file and a TLS
    key of another type than the certificate (exit 1, named)
  - shutdown: /readyz says "shutting down" while the feed drains, a request
    pipelined behind an event stream gets 503, and a client that stops
    reading its answer holds the exit up for 5 + 1 s only (exit 0, logged)

Clients connect to 127.0.0.1 (and ::1) only.
"""

import json
import signal
import socket
import threading
import time

import harness as h
from cwstack import CardMaker
from test_faults_feed import _feed_config, _read_by_peer, _with_redis_keys
from test_feed import (PREFIX, SSE, Feed, Store, TokenIssuer, _access_lines,
                       _check_log_secrets, _redis_only_ini, _token)
from test_feed_hardening import _read_all, _responses

NOT_FOUND = {"error": "not found"}
INTERNAL = {"error": "internal error"}


# --------------------------------------------------------------------------
# helpers

def _alpha(r, n=3, seed=91, bin_="400001", redis_lines="", **feed_keys):
    """A feed of issuer alpha on Redis r ([redis] gets redis_lines) with n
    alerts of one card stored: (feed, token, store, docs)."""
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    feed = Feed(_with_redis_keys(_redis_only_ini(r, [alpha]), redis_lines), **feed_keys)
    store = Store(r)
    pan = CardMaker(seed).card(bin_)
    docs = [store.synthetic("alpha", pan) for _ in range(n)]
    for d in docs:
        assert store.record("alpha", d)[0] == 1
    return feed, alpha.token, store, docs


def _get_req(path, token, extra=b""):
    """The bytes of GET path with a bearer token (extra: more header lines)."""
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n".encode()
            + extra + b"\r\n")


def _outcome_req(aid, token, body):
    """The head of POST /v1/alerts/<aid>/outcome for body (bytes)."""
    return (f"POST /v1/alerts/{aid}/outcome HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()


def _recv_until(sock, marker, timeout=10):
    """Reads sock until marker has arrived; returns the bytes read."""
    data, deadline = b"", time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"{marker!r} did not arrive within {timeout}s; got {data[:300]!r}"
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}; got {data[:300]!r}"
        data += chunk
    return data


# --------------------------------------------------------------------------
# tests

def test_bodies_split_across_reads_and_large_tls_records_stay_framed():
    """Over TLS (the feed's production setup), the gate in front of evhttp
    when a read does not end where a request does: (1) an outcome whose
    body arrives in two pieces, the second in the same TLS record as the
    next request: both are answered, in order (201, then the stats that
    count it); (2) a head refused for a duplicate Host, followed in the same
    16 KiB TLS record (libevent's TLS layer hands it over 4 KiB at a time) by a
    valid request: exactly one 400 naming the problem, then EOF, and the
    request behind it is never answered (no 200 more in /metrics)."""
    tls = h.make_tls()
    r = h.Redis()
    feed, tok, _store, docs = _alpha(r, tls=(tls.server_cert, tls.server_key))
    feed.ssl_ctx = tls.context()          # the feed's certificate is signed by the CA
    aid = docs[0]["alert_id"]
    body = b'{"outcome":"legitimate"}'

    # (1) the body split: head + 10 bytes, then 14 bytes + the next request
    with feed.socket(10) as s:
        s.sendall(_outcome_req(aid, tok, body) + body[:10])
        h.wait_until(lambda: _read_by_peer(feed.port, s), 10, "the feed read the first piece")
        s.sendall(body[10:] + _get_req("/v1/stats", tok, b"Connection: close\r\n"))
        data, eof = _read_all(s, 10)
    got = _responses(data)
    assert [g[0] for g in got] == [201, 200] and eof, [g[0] for g in got]
    assert json.loads(got[0][2]) == {"alert_id": aid, "outcome": "legitimate"}, got[0][2]
    assert json.loads(got[1][2])["by_outcome"]["legitimate"] == 1, got[1][2]
    assert r.call("HGET", f"{PREFIX}:alert:{aid}", "outcome") == b"legitimate"

    # (2) a refused head and 12 KB more in one TLS record
    ok_before = feed.metrics().get("cardwatch_feed_requests_total", status="200")
    behind = _get_req("/v1/stats", tok, b"X-Pad: " + b"p" * 11000 + b"\r\n")
    refused = b"GET /v1/alerts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    record = refused + behind
    assert 4096 < len(record) <= 16384
    with feed.socket(10) as s:
        s.sendall(record)                 # one write: one TLS record
        data, eof = _read_all(s, 10)
    got = _responses(data)
    assert [g[0] for g in got] == [400] and eof, (data[:300], eof)
    assert json.loads(got[0][2]) == {"error": "duplicate Host header"}, got[0][2]
    assert got[0][1].get("connection", "").lower() == "close", got[0][1]
    assert feed.metrics().get("cardwatch_feed_requests_total", status="200") == ok_before
    assert feed.request("GET", "/v1/stats", tok)[0] == 200      # still serving
    feed.stop()
    acc = _access_lines(feed)
    assert ("alpha", "POST", f"/v1/alerts/{aid}/outcome", 201) in acc, acc
    assert ("-", "GET", "/v1/alerts", 400) in acc, acc
    _check_log_secrets(feed, [tok])


def test_stream_edges_null_entries_a_flooding_client_and_the_keepalive():
    """Event streams and lists over entries the feed did not write itself,
    and over clients that misbehave or stay idle: (1) a stream entry
    without an alert field (written by hand, or by another writer) is an
    item with alert null in the list (both orders, with include=outcome:
    outcome null) and an event with data null in the stream, between the
    real alerts, nothing skipped; (2) a stream client that keeps sending
    while it reads (here 800 pipelined requests, 70 KiB) is closed once
    64 KiB wait unread, none of those requests is answered, and the other
    stream is not affected; (3) an idle stream gets a keep-alive comment
    (": keepalive") after [feed] keepalive_s (2 s here) without an alert,
    and stays open."""
    r = h.Redis()
    feed, tok, store, docs = _alpha(r, n=2, seed=92, keepalive_s=2)
    fid = r.call("XADD", f"{PREFIX}:feed:alpha", "*", "note", "written by hand").decode()
    pan = CardMaker(92).card("400001")
    last = store.synthetic("alpha", pan)
    assert store.record("alpha", last)[0] == 1
    ids = [e[0].decode() for e in r.call("XRANGE", f"{PREFIX}:feed:alpha", "-", "+")]
    assert ids[2] == fid and len(ids) == 4, ids
    want = [docs[0], docs[1], None, last]
    assert feed.json("POST", f"/v1/alerts/{docs[0]['alert_id']}/outcome", tok,
                     {"outcome": "legitimate"}, want=201)

    # (1) lists and a stream over the entry without an alert
    page = feed.json("GET", "/v1/alerts", tok)
    assert [(g["cursor"], g["alert"]) for g in page["alerts"]] == list(zip(ids, want)), page
    assert page["next"] == ids[-1]
    page = feed.json("GET", "/v1/alerts?include=outcome", tok)
    assert [(g["cursor"], g["alert"], g["outcome"]) for g in page["alerts"]] == \
        list(zip(ids, want, ["legitimate", None, None, None])), page
    page = feed.json("GET", "/v1/alerts?order=newest&include=outcome", tok)
    assert [(g["cursor"], g["alert"], g["outcome"]) for g in page["alerts"]] == \
        list(zip(ids, want, ["legitimate", None, None, None]))[::-1], page
    idle = SSE(feed, tok, timeout=10)
    events = idle.read_events(4)
    t_last_event = time.monotonic()
    assert [(e[0], e[1]) for e in events] == [(i, "alert") for i in ids], events
    assert [json.loads(e[2]) for e in events] == want, [e[2][:60] for e in events]

    # (2) a stream client that sends 70 KiB of pipelined requests
    flood = _get_req("/v1/stats", tok) * 800
    assert len(flood) > 65536
    with feed.socket(10) as s:
        s.sendall(_get_req(f"/v1/alerts/stream?after={ids[-1]}", tok))
        _recv_until(s, b"retry: 2000")
        h.wait_until(lambda: feed.waiting("stream") == 2, 10, "two streams open")
        try:
            s.sendall(flood)
        except (BrokenPipeError, ConnectionResetError):
            pass                          # closed before we were done: as meant
        data, eof = _read_all(s, 10)
    assert eof, "the flooding stream client was not closed"
    assert b"HTTP/1.1 " not in data, f"a pipelined request was answered: {data[:300]!r}"
    h.wait_until(lambda: feed.waiting("stream") == 1, 10, "the flooding stream closed")
    assert not idle.closed

    # (3) the idle stream: a keep-alive comment, nothing else
    h.wait_until(lambda: idle.read_some(1) or idle.comments > 0 or idle.closed, 30,
                 "a keep-alive comment on the idle stream")
    print(f"    keep-alive comment {time.monotonic() - t_last_event:.1f}s after the last event")
    assert idle.comments == 1 and not idle.closed and len(idle.events) == 4, \
        (idle.comments, idle.closed, idle.events[4:])
    assert b": keepalive\n\n" in idle.everything
    assert feed.waiting("stream") == 1
    idle.close()
    feed.stop()
    acc = _access_lines(feed)
    assert sum(1 for a in acc if a[1:] == ("GET", "/v1/alerts/stream", 200)) == 2, acc
    assert not any(a[2] == "/v1/stats" for a in acc), "a flooded request was answered"


def test_request_deadline_closes_silent_and_stalled_connections():
    """[feed] request_timeout_s (1 s here) for the two connections the
    slowloris test does not make: one that never sends a byte, and one
    whose outcome body stops short of its Content-Length (evhttp already
    has the head, so no answer can be slipped in). Both are closed without
    an answer, counted as timeouts, not logged as requests; nothing is
    recorded and the feed keeps serving."""
    r = h.Redis()
    feed, tok, _store, docs = _alpha(r, seed=93, request_timeout_s=1)
    aid = docs[0]["alert_id"]
    body = b'{"outcome":"legitimate"}'
    silent = feed.socket(10)
    stalled = feed.socket(10)
    try:
        stalled.sendall(_outcome_req(aid, tok, body) + body[:10])
        got = [_read_all(s, 10) for s in (silent, stalled)]
    finally:
        silent.close()
        stalled.close()
    assert got == [(b"", True), (b"", True)], got
    m = feed.metrics()
    assert m.get("cardwatch_feed_connections_shed_total", reason="timeout") == 2, \
        m.by("cardwatch_feed_connections_shed_total", "reason")
    assert r.call("HGET", f"{PREFIX}:alert:{aid}", "outcome") is None
    st, _hd, data = feed.request("GET", "/v1/alerts", tok)
    assert st == 200 and len(json.loads(data)["alerts"]) == 3, (st, data[:200])
    feed.stop()
    acc = _access_lines(feed)
    assert [a for a in acc if a[1] != "GET"] == [], acc


def test_outcome_reports_on_odd_alerts_and_a_connect_request():
    """POST /v1/alerts/{id}/outcome where the alert is not what it should
    be: an id that is not an alert id (404; a bad body is still 400
    first); an alert whose stored JSON is unreadable (500 internal error,
    one log line naming the alert); an alert that expires (its TTL) after
    the feed read it and before its outcome script runs - held there by
    CLIENT PAUSE WRITE - answers 404 like a missing one and records
    nothing. A CONNECT request (authority form, no path) gets 404 and an
    access-log line whose path is "-"."""
    r = h.Redis()
    # (a Redis answer may take the second the pause below lasts)
    feed, tok, _store, docs = _alpha(r, seed=94, redis_lines="timeout_ms = 10000\n")
    legit = {"outcome": "legitimate"}

    # an id that is not an alert id
    for bad in ("not-an-alert-id", docs[0]["alert_id"].upper(), "x" * 32):
        st, _hd, data = feed.request("POST", f"/v1/alerts/{bad}/outcome", tok, legit)
        assert st == 404 and json.loads(data) == NOT_FOUND, (bad, st, data)
    st, _hd, data = feed.request("POST", "/v1/alerts/not-an-alert-id/outcome", tok,
                                 {"outcome": "nope"})
    assert st == 400 and "outcome" in json.loads(data)["error"], (st, data)

    # an alert whose stored JSON is unreadable
    aid = docs[0]["alert_id"]
    r.call("HSET", f"{PREFIX}:alert:{aid}", "alert", '{"alert_id": "' + aid + '", oops')
    st, _hd, data = feed.request("POST", f"/v1/alerts/{aid}/outcome", tok, legit)
    assert st == 500 and json.loads(data) == INTERNAL, (st, data)
    assert f"WARN feed: alert {aid}: stored JSON unreadable" in feed.log_text()
    assert r.call("HGET", f"{PREFIX}:alert:{aid}", "outcome") is None

    # an alert that expires between the feed's read and its outcome script
    aid = docs[1]["alert_id"]
    key = f"{PREFIX}:alert:{aid}"
    stats_before = r.call("HGETALL", f"{PREFIX}:feedstats:alpha")
    res = {}
    r.call("PEXPIRE", key, 1500)
    r.call("CLIENT", "PAUSE", 8000, "WRITE")
    try:
        t = threading.Thread(target=lambda: res.update(
            out=feed.request("POST", f"/v1/alerts/{aid}/outcome", tok,
                             {"outcome": "confirmed_fraud"}, timeout=30)), daemon=True)
        t.start()

        def script_held():
            return any(b"cmd=eval" in ln and b"flags=b" in ln
                       for ln in r.call("CLIENT", "LIST").split(b"\n"))
        h.wait_until(script_held, 5, "the feed's outcome script held by the pause")
        assert r.call("HGET", key, "issuer") == b"alpha", "expired before the feed read it"
        h.wait_until(lambda: r.call("PTTL", key) == -2, 5, "the alert's TTL passed")
    finally:
        r.call("CLIENT", "UNPAUSE")
    t.join(30)
    st, _hd, data = res["out"]
    assert st == 404 and json.loads(data) == NOT_FOUND, (st, data)
    assert r.call("EXISTS", key) == 0
    assert r.call("HGETALL", f"{PREFIX}:feedstats:alpha") == stats_before
    assert feed.request("GET", f"/v1/alerts/{aid}", tok)[0] == 404

    # CONNECT: the authority form has no path (evhttp keeps such a
    # connection open whatever it asks: read the one answer)
    with feed.socket(10) as s:
        s.sendall(b"CONNECT feed.example:443 HTTP/1.1\r\nHost: feed.example:443\r\n\r\n")
        data = _recv_until(s, b'"not found"}')
    got = _responses(data)
    assert [g[0] for g in got] == [404] and json.loads(got[0][2]) == NOT_FOUND, data[:300]
    feed.stop()
    acc = _access_lines(feed)
    assert ("-", "CONNECT", "-", 404) in acc, [a for a in acc if a[1] == "CONNECT"] or \
        [ln for ln in feed.log_text().splitlines() if "CONNECT" in ln]
    assert ("alpha", "POST", f"/v1/alerts/{aid}/outcome", 404) in acc
    assert ("alpha", "POST", f"/v1/alerts/{docs[0]['alert_id']}/outcome", 500) in acc
    _check_log_secrets(feed, [tok])


def _start_by_hand(cfg, http_port, nofile, name):
    """`cardwatch feed --config cfg` under prlimit --nofile=SOFT:HARD, the
    exposed-card set confirmed first; returns the process once /readyz of
    http_port says 200."""
    h.run_tool([h.tool("cardwatch"), "breaches", "--confirm", "--config", cfg])
    proc = h.spawn(["prlimit", f"--nofile={nofile}", "--", h.tool("cardwatch"), "feed",
                    "--config", cfg], name=name)
    admin = f"http://127.0.0.1:{http_port}"
    h.wait_until(lambda: not proc.alive or h.http_get(admin + "/readyz")[0] == 200, 20,
                 f"{name} ready")
    assert proc.alive, proc.log_text(30)
    return proc


def test_start_up_open_file_limit_ipv6_and_configuration_errors():
    """At start: (1) a soft open-file limit below [feed] max_clients + 64
    descriptors is raised towards the hard limit (logged; the connection
    limit is max_clients); (2) when the hard limit is lower, to the hard
    limit, and the connection limit follows it (limit - 64, warned) - here
    with [feed] listen on [::1], served over IPv6, the peer logged in
    brackets; (3) an empty [redis] password_file and (4) a TLS key of
    another type than the certificate (RSA for an EC certificate) stop the
    start with exit 1 and a message naming them."""
    r = h.Redis()
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    tok = alpha.token
    base = _redis_only_ini(r, [alpha])

    # (1) soft 256, hard 4096: raised to 1000 + 64
    cfg, port, http_port = _feed_config(base, max_clients=1000)
    proc = _start_by_hand(cfg, http_port, "256:4096", "feed-raised")
    assert "INFO feed: open-file limit raised from 256 to 1064 for [feed] max_clients" \
        in proc.log_text(), proc.log_text(30)
    m = h.scrape(f"http://127.0.0.1:{http_port}/metrics")
    assert m.get("cardwatch_feed_connections_limit") == 1000, \
        m.get("cardwatch_feed_connections_limit")
    assert "max_clients is" not in proc.log_text()
    assert proc.stop(timeout=20) == 0, proc.log_text(30)

    # (2) soft 256, hard 300: raised to 300, at most 236 connections; IPv6
    v6 = h.ipv6_loopback()
    cfg, port, http_port = _feed_config(base, max_clients=1000)
    if v6:
        cfg.write_text(cfg.read_text().replace(f"listen = 127.0.0.1:{port}",
                                               f"listen = [::1]:{port}"))
    host = "::1" if v6 else "127.0.0.1"
    proc = _start_by_hand(cfg, http_port, "256:300", "feed-capped")
    log = proc.log_text()
    assert "INFO feed: open-file limit raised from 256 to 300 for [feed] max_clients" in log, \
        log[-2000:]
    assert "WARN feed: [feed] max_clients is 1000 but the open-file limit is 300: at most " \
        "236 connections" in log, log[-2000:]
    m = h.scrape(f"http://127.0.0.1:{http_port}/metrics")
    assert m.get("cardwatch_feed_connections_limit") == 236
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(_get_req("/v1/stats", tok, b"Connection: close\r\n"))
        data, _eof = _read_all(s, 10)
    got = _responses(data)
    assert [g[0] for g in got] == [200] and json.loads(got[0][2])["issuer"] == "alpha", data[:300]
    assert proc.stop(timeout=20) == 0, proc.log_text(30)
    log = proc.log_text()
    if v6:
        assert f"issuer feed listening on [::1]:{port} (http, port {port};" in log, log[-2000:]
        assert "INFO access: [::1]:" in log and " alpha GET /v1/stats 200 " in log, log[-2000:]
    else:
        print("    (no IPv6 loopback here: the [::1] step was left out)")

    # (3) an empty [redis] password_file; (4) an RSA key for an EC certificate
    d = h.tmpdir("bad")
    empty = d / "redis.pw"
    empty.write_text("")
    empty.chmod(0o600)
    tls = h.make_tls()
    rsa = d / "rsa.key"
    h.run_tool(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", rsa])
    rsa.chmod(0o600)
    cases = [
        (_feed_config(_with_redis_keys(base, f"password_file = {empty}\n"))[0],
         f"ERROR feed: [redis] password_file {empty}: empty"),
        (_feed_config(base, tls_cert=tls.server_cert, tls_key=rsa)[0],
         "ERROR feed: feed: [feed] tls_key does not match tls_cert ("),
    ]
    for cfg, want in cases:
        res = h.run_tool([h.tool("cardwatch"), "feed", "--config", cfg], check=False, timeout=30)
        err = (res.stdout + res.stderr).decode(errors="replace")
        assert res.returncode == 1 and want in err, (cfg.read_text()[-300:], res.returncode, err)


def test_shutdown_drains_a_stream_pipelining_and_a_reader_that_stopped():
    """SIGTERM with three clients: (1) an event stream that has a request
    pipelined behind it (6 KiB of head, read by the feed while the stream
    ran): the stream ends, then that request is answered 503
    {"error":"shutting down"} with Connection: close, then EOF; (2) a
    client that asked for 600 alerts (~400 KB) through a small receive
    window and stopped reading: its answer cannot be written out, so the
    feed waits the 5 s given to requests in progress and 1 s more for
    unwritten answers, says so in one line (and does not claim to answer
    requests 503: none was in progress) and exits 0; (3) /readyz
    answers 503 "shutting down" meanwhile, so that a load balancer stops
    sending."""
    r = h.Redis()
    feed, tok, _store, docs = _alpha(r, n=600, seed=95)
    newest = r.call("XREVRANGE", f"{PREFIX}:feed:alpha", "+", "-", "COUNT", 1)[0][0].decode()

    # (2) the reader that stops: a 4 KiB window of 536-byte segments
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    stalled.settimeout(10)
    stalled.connect(("127.0.0.1", feed.port))
    stalled.sendall(_get_req("/v1/alerts?limit=1000", tok))
    h.wait_until(lambda: ("alpha", "GET", "/v1/alerts", 200) in _access_lines(feed), 10,
                 "the large answer given")

    # (1) a stream, and a request sent behind it while it runs
    s = feed.socket(10)
    s.sendall(_get_req(f"/v1/alerts/stream?after={newest}", tok))
    first = _recv_until(s, b"retry: 2000")
    s.sendall(_get_req("/v1/stats", tok, b"X-Pad: " + b"p" * 6000 + b"\r\n"))
    h.wait_until(lambda: _read_by_peer(feed.port, s), 10, "the feed read the pipelined request")
    assert feed.waiting("stream") == 1

    t_stop = time.monotonic()
    feed.proc.send_signal(signal.SIGTERM)
    data, eof = _read_all(s, 10)
    s.close()
    got = _responses(first + data)
    assert [g[0] for g in got] == [200, 503] and eof, (data[:300], eof)
    assert got[0][1].get("content-type") == "text/event-stream" and \
        got[0][2] == b"retry: 2000\n\n", got[0]
    assert json.loads(got[1][2]) == {"error": "shutting down"}, got[1]
    assert got[1][1].get("connection", "").lower() == "close", got[1][1]

    # (3) not ready while draining
    st, why = h.http_get(feed.admin + "/readyz")
    assert st == 503 and "shutting down" in why, (st, why)
    rc = feed.proc.wait(30)
    t_exit = time.monotonic() - t_stop
    log = feed.log_text()
    assert rc == 0, f"cardwatch feed exited {rc}:\n{log[-2000:]}"
    assert "WARN feed: 1 answer(s) still unwritten after 1000 ms more (clients not reading); " \
        "closing them" in log, log[-2000:]
    # no request was in progress (every one had its answer): none is said
    # to be answered 503
    assert "still in progress" not in log, log[-2000:]
    # the reader that stopped got less than its answer
    rest, _eof = _read_all(stalled, 10)
    stalled.close()
    head, _, body = rest.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), rest[:200]
    length = int(next(ln.split(b":", 1)[1] for ln in head.split(b"\r\n")
                      if ln.lower().startswith(b"content-length:")))
    assert 400_000 < length and len(body) < length, (length, len(body))
    print(f"    exit {t_exit:.1f}s after SIGTERM; the stalled reader got {len(body)} of "
          f"{length} bytes")
    _check_log_secrets(feed, [tok])
