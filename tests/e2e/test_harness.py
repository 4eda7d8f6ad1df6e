"""Tests of the e2e harness itself and of the tools it drives."""

import http.server
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import harness as h


def _pid_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (not reaped by its parent) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] == "Z"
    except OSError:
        return True


def test_free_port_is_bindable():
    p = h.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", p))


def test_free_port_is_outside_the_ephemeral_range_and_never_given_twice():
    # An ephemeral port can be taken by any outgoing connection before the
    # server binds it (CI once failed so: "cannot listen on 127.0.0.1:33207").
    lo, hi = (int(x) for x in
              open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    ports = [h.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports), ports
    assert not [p for p in ports if lo <= p <= hi], (lo, hi, ports)
    # Two processes never get the same port while both live: 800 ports each
    # from ~26,000 would overlap ~25 times without the lock files.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import kafka_cluster as k\n"
            "print(' '.join(str(k.free_port()) for _ in range(800)), flush=True)\n"
            "sys.stdin.read()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(h.REPO / "scripts")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        got = [set(int(x) for x in p.stdout.readline().split()) for p in procs]
    finally:
        for p in procs:
            p.communicate("", timeout=30)
    assert [len(g) for g in got] == [800, 800], [len(g) for g in got]
    assert not got[0] & got[1], sorted(got[0] & got[1])


def test_wait_until():
    t0 = time.monotonic()
    assert h.wait_until(lambda: time.monotonic() - t0 > 0.1 and "yes", 5, "time") == "yes"
    try:
        h.wait_until(lambda: 1 / 0, 0.2, "the impossible")
    except AssertionError as e:
        assert "the impossible" in str(e) and "ZeroDivisionError" in str(e), e
    else:
        raise AssertionError("wait_until did not time out")


def test_redis_start_restart_stop():
    r = h.Redis()
    port = r.port
    assert r.cli("PING") == "PONG"
    blob = b"\x00\n\r\n\xffbinary"
    assert r.call("SET", "k", blob) == "OK"
    assert r.call("GET", "k") == blob
    assert r.call("SADD", "s", "a", "b") == 2
    try:
        r.call("INCR", "k")
    except h.RespError as e:
        assert "ERR" in str(e)
    else:
        raise AssertionError("error reply not raised")

    # restart keeps data (SHUTDOWN SAVE + reload) on the same port
    r.restart()
    assert r.port == port and r.call("GET", "k") == blob
    assert r.cli("SCARD", "s") == "2"

    # an outage: refused while down, back on the same port afterwards, empty
    pid = r.proc.pid
    r.stop()
    assert not r.ping()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("port still open after stop")
    assert _pid_gone(pid)
    r.start()
    assert r.port == port and r.call("EXISTS", "k") == 0

    # a crash, then context-manager stop
    r.call("SET", "x", "1")
    r.stop(kill=True)
    assert r.proc.returncode == -signal.SIGKILL
    with r.start() as r2:
        assert r2.call("DBSIZE") == 0
    assert not r.ping()


def test_redis_pipeline_and_pause():
    with h.Redis() as r:
        c = r.client()
        replies = c.pipeline([("SET", f"k{i}", i) for i in range(1000)])
        assert replies == ["OK"] * 1000
        assert r.call("DBSIZE") == 1000
        c.close()
        r.pause()
        assert not r.ping()
        r.resume()
        h.wait_until(r.ping, 5, "Redis to answer after SIGCONT")


def _messages(n, rng):
    msgs = []
    for i in range(n):
        key = None if i % 10 == 0 else b"k\x00\n%d" % i
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        if i % 7 == 0:
            value = b"\x00\n\x00\n" + value + b"\n"
        if i == 5:
            value = None  # tombstone
        if i == 6:
            value = b""
        msgs.append((key, value, [("seq", b"%d" % i), ("bin", b"\x00\n\xff")] if i % 3 == 0 else []))
    return msgs


def test_kafka_binary_round_trip_4_partitions():
    rng = random.Random(1234)
    k = h.Kafka({"rt": 4})
    assert k.bootstraps.startswith("127.0.0.1:")
    assert k.partitions("rt") == 4
    sent = _messages(2000, rng)
    assert h.produce(k.bootstraps, "rt", sent) == 2000
    got = h.consume(k.bootstraps, "rt", expect_count=2000, timeout=30)
    assert len(got) == 2000, len(got)

    # every partition used, offsets contiguous from 0 per partition
    by_part = {}
    for m in got:
        by_part.setdefault(m.partition, []).append(m.offset)
    assert sorted(by_part) == [0, 1, 2, 3], sorted(by_part)
    for offs in by_part.values():
        assert offs == list(range(len(offs)))

    # same multiset of (key, value, headers); producer timestamps kept
    def norm(key, value, headers):
        return (key, value, tuple((n, v) for n, v in headers))
    want = sorted((norm(*m) for m in sent), key=repr)
    have = sorted((norm(m.key, m.value, m.headers) for m in got), key=repr)
    assert want == have
    assert any(m.value is None for m in got) and any(m.value == b"" for m in got)
    assert any(m.key is None for m in got)
    assert all(m.timestamp > 1e12 for m in got)
    seq0 = [m for m in got if m.header("seq") == b"0"]
    assert len(seq0) == 1 and seq0[0].header("bin") == b"\x00\n\xff"

    # a keyed message goes to a fixed partition; explicit partition works
    h.produce(k.bootstraps, "rt", [(b"x", b"p3")] * 3, partition=3)
    again = h.consume(k.bootstraps, "rt")
    assert len(again) == 2003
    assert [m.partition for m in again if m.value == b"p3"] == [3, 3, 3]

    if k.apache:
        # stopped: every node gone
        k.stop()
        assert not any(n.alive for n in k.cluster.nodes)
    else:
        # clean shutdown: exit 0, bootstraps file removed
        assert k.stop() == 0, k.proc.log_text()
        assert not k.bootstraps_file.exists()


def test_kafka_topics_are_created_explicitly():
    """Apache Kafka as production runs it: no topic appears on first use."""
    k = h.Kafka({"present": 2})
    if not k.apache:
        raise h.Skip("CARDWATCH_E2E_KAFKA=embedded: the mock auto-creates topics")
    assert h.consume(k.bootstraps, "present") == []
    # producing to an unknown topic fails at once, naming it; nothing is created
    try:
        h.produce(k.bootstraps, "never.created", [(None, b"v")], timeout=20)
    except AssertionError as e:
        assert "never.created does not exist" in str(e), e
    else:
        raise AssertionError("produced to a topic that does not exist")
    md = k.cluster.metadata()
    assert "never.created" not in [t["topic"] for t in md["topics"]], md
    # reading an unknown topic reads as empty and creates nothing either
    assert k.consume("never.created") == []
    # created explicitly (idempotent), it works
    k.create_topics({"made": 3})
    k.create_topics({"made": 3})
    assert k.partitions("made") == 3
    h.produce(k.bootstraps, "made", [(None, b"v%d" % i) for i in range(50)])
    assert len(k.consume("made", expect_count=50)) == 50
    # expect_count that never arrives: AssertionError naming the count
    t0 = time.monotonic()
    try:
        k.consume("present", expect_count=1, timeout=1)
    except AssertionError as e:
        assert "got 0 message(s), expected 1" in str(e), e
    else:
        raise AssertionError("consume did not time out")
    assert time.monotonic() - t0 < 10


def test_embedded_kafka_auto_creates_topics():
    """The mock (kept for in-process fault injection) differs: it creates
    unknown topics with 4 partitions on first use."""
    k = h.Kafka({"present": 2}, kind="embedded")
    assert h.consume(k.bootstraps, "present") == []
    h.produce(k.bootstraps, "auto.created", [(None, b"v%d" % i) for i in range(50)])
    assert k.partitions("auto.created") == 4
    assert len(k.consume("auto.created", expect_count=50)) == 50
    assert k.consume("never.produced") == []
    assert k.stop() == 0, k.proc.log_text()


def test_plain_consumer_counts():
    k = h.Kafka({"bench": 4})
    msgs = [(None, b"x" * 100)] * 20000
    h.produce(k.bootstraps, "bench", msgs)
    res = h.run_tool([h.tool("plain_consumer"), "--brokers", k.bootstraps, "--topic", "bench"],
                     timeout=60)
    r = json.loads(res.stdout)
    assert set(r) == {"messages", "bytes", "seconds", "rate"}, r
    assert r["messages"] == 20000 and r["bytes"] == 2000000, r
    assert r["seconds"] > 0 and r["rate"] > 0
    res = h.run_tool([h.tool("plain_consumer"), "--brokers", k.bootstraps, "--topic", "bench",
                      "--expect", "5000"], timeout=60)
    assert json.loads(res.stdout)["messages"] >= 5000


def test_processes_are_cleaned_up():
    p = h.spawn(["sh", "-c", "sleep 600 & echo $! ; sleep 600"], name="sleepers")
    child = int(h.wait_until(lambda: open(p.log).read().strip(), 5, "child pid"))
    assert p.alive and not _pid_gone(child)
    h.cleanup_processes()
    assert not p.alive
    h.wait_until(lambda: _pid_gone(child), 5, "the grandchild to be killed")


def test_stack_script_up_down():
    import subprocess
    d = h.tmpdir("stack")
    kind = h.kafka_kind()
    env = dict(os.environ, BUILD=str(h.config.build), STACK_TOPICS="extra.topic:3",
               STACK_KAFKA=kind)
    script = str(h.REPO / "scripts" / "stack.sh")

    def stack(cmd, check=True):
        return subprocess.run([script, cmd, str(d)], env=env, capture_output=True, text=True,
                              timeout=60, check=check)
    try:
        out = stack("up").stdout
        assert "up in" in out, out
        e = dict(line.split("=", 1) for line in (d / "env").read_text().split())
        port, boot = int(e["REDIS_PORT"]), e["KAFKA_BOOTSTRAPS"]
        assert h.RespConnection(port).call("PING") == "PONG"
        assert h.topic_partitions(boot, "cardwatch.transactions") == 16
        assert h.topic_partitions(boot, "cardwatch.deadletter") == 4
        assert h.topic_partitions(boot, "extra.topic") == 3
        again = stack("up").stdout
        assert "already up" in again and f"REDIS_PORT={port}" in again, again
        assert stack("status").returncode == 0
        assert e["KAFKA_KIND"] == kind, e
        kpids = ["kafka-1.pid"] if kind == "apache" else ["kafka.pid"]
        pids = [int((d / f).read_text()) for f in ["redis.pid", *kpids]]
    finally:
        down = stack("down", check=False)
    assert down.returncode == 0, down.stderr
    word = "stopped Apache Kafka node" if kind == "apache" else "stopped embedded Kafka"
    assert word in down.stdout and "stopped redis-server" in down.stdout, down.stdout
    for pid in pids:
        assert _pid_gone(pid), pid
    assert not (d / "env").exists()
    assert "nothing running" in stack("down").stdout
    assert stack("status", check=False).returncode == 3


def test_luhn_scan():
    rng = random.Random(7)
    noise = bytes(rng.choice(b"\x00\x01\n\xff{}\":,abcXYZ") for _ in range(5000))
    blob = (noise[:1000] + b"4111111111111111" + noise[1000:3000]
            + b"pan=378282246310005;" + noise[3000:])
    assert h.luhn_scan(blob) == ["4111111111111111", "378282246310005"]
    assert h.luhn_scan(blob.decode("latin-1")) == ["4111111111111111", "378282246310005"]
    # not Luhn-valid, too short, too long, masked: ignored
    assert h.luhn_scan(b"x4111111111111112x") == []
    assert h.luhn_scan(b"\x00411111111118\x00") == []            # 12 digits
    assert h.luhn_scan(b"41111111111111110000") == []            # 20 digits
    assert h.luhn_scan(b'"pan_masked":"411111******1111"') == []
    assert h.luhn_scan(b"\n4111111111111111\n") == ["4111111111111111"]
    assert h.luhn_valid("79927398713") and not h.luhn_valid("79927398710")
    # logs: a generation marker whose digits hold a Luhn-valid run (seen in
    # CI) is set aside; a card number next to it, or in any other form, is not
    gen = b"generation 9cd9393808c02945a55565232349536a"
    assert h.luhn_scan(gen, min_len=14) == ["55565232349536"]
    assert h.text_card_numbers(gen) == []
    assert h.text_card_numbers(gen + b" 4111111111111111") == ["4111111111111111"]
    assert h.text_card_numbers("card=4111111111111111,") == ["4111111111111111"]
    assert h.text_card_numbers(b"id 55565232349536") == ["55565232349536"]  # digits only
    assert h.text_card_numbers(b"x4111111111111111y") == ["4111111111111111"]
    assert h.text_card_numbers(b"t=1721952000123") == []                  # epoch ms


def test_protobuf_decoder():
    s = h.ProtoSchema()
    txn = {"txn_id": "t-1", "pan": "4111111111111111", "expiry": "2712",
           "amount_minor": -1250, "currency": "EUR", "mcc": 5999, "channel": "CHANNEL_ECOMMERCE",
           "cvv2_presented": True, "response": "RESPONSE_APPROVED",
           "event_time_ms": 1721952000123}
    raw = s.encode("Transaction", txn)
    # generic wire view
    f = h.pb_decode(raw)
    assert f[1] == [b"t-1"] and f[2] == [b"4111111111111111"]
    assert h.pb_signed(f[4][0]) == -1250 and f[6] == [5999] and f[11] == [1]
    assert f[13] == [1721952000123]
    assert h.luhn_scan(raw) == ["4111111111111111"]
    # schema view round trip
    assert s.decode("Transaction", raw) == txn

    alert = {"alert_id": "a-1", "pan_masked": "411111******1111", "severity": "SEVERITY_HIGH",
             "hits": [{"rule_id": "r1", "severity": "SEVERITY_LOW"},
                      {"rule_id": "r2", "severity": "SEVERITY_HIGH"}],
             "breaches": [{"breach_id": "b", "window_start": 1, "window_end": 2,
                           "elements": ["pan", "cvv2"]}],
             "mode": "MODE_REPLAY", "detected_at_ms": 5}
    araw = s.encode("Alert", alert)
    assert s.decode("Alert", araw) == alert
    assert len(h.pb_decode(araw)[14]) == 2

    # fixed32/fixed64, packed repeated, unknown fields, truncation
    hand = (h.pb_tag(1, h.I64) + struct.pack("<d", 2.5) + h.pb_tag(2, h.I32)
            + struct.pack("<I", 7) + h.pb_tag(3, h.LEN) + h.pb_varint(3) + h.pb_varint(1)
            + h.pb_varint(300))
    g = h.pb_decode(hand)
    assert h.pb_double(g[1][0]) == 2.5 and g[2] == [7] and g[3] == [b"\x01\xac\x02"]
    assert h.pb_zigzag(3) == -2 and h.pb_zigzag(4) == 2
    packed = h.pb_tag(4, h.LEN) + h.pb_varint(3) + b"pan"  # elements is repeated string
    assert s.decode("BreachExposure", packed + h.pb_tag(99, h.VARINT) + b"\x01") == \
        {"elements": ["pan"], "_unknown": {99: [1]}}
    try:
        h.pb_decode(raw[:-1])
    except ValueError:
        pass
    else:
        raise AssertionError("truncated message decoded")


def test_metrics_http_and_blob():
    text = ('# HELP cardwatch_events_total Input events by outcome.\n'
            '# TYPE cardwatch_events_total counter\n'
            'cardwatch_events_total{outcome="clean"} 12\n'
            'cardwatch_events_total{outcome="alerted"} 3\n'
            'cardwatch_redis_up 1\n'
            'odd{a="x\\"y",b="z"} 2.5 1700000000000\n')
    m = h.Metrics(text)
    assert m.get("cardwatch_redis_up") == 1.0 and m.get("nope") is None
    assert m.get("cardwatch_events_total", outcome="clean") == 12
    assert m.get("cardwatch_events_total") is None           # label sets must match
    assert m.sum("cardwatch_events_total") == 15
    assert m.by("cardwatch_events_total", "outcome") == {"clean": 12, "alerted": 3}
    assert m.get("odd", a='x"y', b="z") == 2.5
    # http_get returns error statuses instead of raising
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 503 if self.path == "/readyz" else 200
            body = b"not ready\n" if code == 503 else text.encode()
            self.send_response(code)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        assert h.http_get(base + "/readyz") == (503, "not ready\n")
        assert h.scrape(base + "/metrics").get("cardwatch_redis_up") == 1.0
    finally:
        srv.shutdown()
        srv.server_close()
    # blob: leaves separated, so no number is glued together from two
    msg = h.Message(0, 1, b"k", b"4111111111111111", [("h", b"v"), ("n", None)])
    assert h.blob([b"4111111", {"k": [1111, None]}], "x", msg) == \
        b"4111111\nk\n1111\nx\nk\n4111111111111111\nh\nv\nn"
    assert h.luhn_scan(h.blob([b"4111111", b"11111111"])) == []


def test_redis_dump_every_type():
    r = h.Redis()
    r.call("SET", "s", b"\x00bin")
    r.call("SADD", "set", "a", "b")
    r.call("HSET", "hash", "f", "v")
    r.call("RPUSH", "list", "x", "y")
    r.call("ZADD", "zset", 1, "m")
    r.call("XADD", "stream", "1-1", "f", "v")
    d = {k: (t, v) for k, t, v, dump in r.dump()}
    assert d[b"s"] == ("string", b"\x00bin")
    assert d[b"set"][0] == "set" and sorted(d[b"set"][1]) == [b"a", b"b"]
    assert d[b"hash"] == ("hash", [b"f", b"v"])
    assert d[b"list"] == ("list", [b"x", b"y"])
    assert d[b"zset"] == ("zset", [b"m", b"1"])
    assert d[b"stream"] == ("stream", [[b"1-1", [b"f", b"v"]]])
    assert all(isinstance(dump, bytes) and dump for _, _, _, dump in r.dump())
    r.stop()


def test_redis_tls():
    import ssl
    t = h.make_tls()
    assert h.make_tls() is t                       # made once per session
    for key in (t.ca_key, t.server_key, t.client_key, t.other_ca_key):
        assert os.stat(key).st_mode & 0o777 == 0o600, key
    with h.Redis(tls=t) as r:
        assert r.url.startswith("rediss://") and r.ping()
        assert r.call("SET", "k", b"\x00tls") == "OK" and r.call("GET", "k") == b"\x00tls"
        assert r.cli("STRLEN", "k") == "4"          # redis-cli over TLS too
        # TLS only: plain text on the port gets no answer
        try:
            h.RespConnection(r.port, timeout=2).call("PING")
        except (OSError, ConnectionError):
            pass
        else:
            raise AssertionError("plain-text PING answered on the TLS port")
        # an unrelated CA and a wrong host name are refused by the client
        try:
            h.RespConnection(r.port, ssl_context=t.context(ca=t.other_ca)).call("PING")
        except ssl.SSLCertVerificationError as e:
            assert "certificate verify failed" in str(e), e
        else:
            raise AssertionError("server certificate accepted with other_ca")
        try:
            h.RespConnection(r.port, ssl_context=t.context(), server_hostname="wrong.example")
        except ssl.SSLCertVerificationError as e:
            assert "wrong.example" in str(e), e
        else:
            raise AssertionError("server certificate accepted for wrong.example")
        c = h.RespConnection(r.port, ssl_context=t.context(), server_hostname="localhost")
        assert c.call("PING") == "PONG"
        c.close()
    # mutual TLS: the harness presents the client certificate, others fail
    with h.Redis(tls=t, tls_auth_clients="yes") as m:
        assert m.ping() and m.cli("PING") == "PONG"
        c = h.RespConnection(m.port, ssl_context=t.context(client_cert=True))
        assert c.call("PING") == "PONG"
        c.close()
        try:
            h.RespConnection(m.port, ssl_context=t.context(), timeout=2).call("PING")
        except (OSError, ConnectionError):
            pass
        else:
            raise AssertionError("answered a client without a certificate")


def test_redis_acl_users():
    users = {"cw": ("cw-test-pass", "~cw:* &cw:* +@all")}
    with h.Redis(users=users) as r:
        assert r.ping() and r.cli("ACL", "WHOAMI") == "admin"
        assert r.call("ACL", "WHOAMI") == b"admin"
        assert os.stat(r.aclfile).st_mode & 0o777 == 0o600
        cw = r.client(auth=("cw", "cw-test-pass"))
        assert cw.call("SET", "cw:x", "1") == "OK"
        try:
            cw.call("SET", "other:x", "1")
        except h.RespError as e:
            assert str(e).startswith("NOPERM"), e
        else:
            raise AssertionError("cw wrote outside cw:*")
        cw.close()
        assert r.call("EXISTS", "other:x") == 0 and r.call("GET", "cw:x") == b"1"
        for auth, word in ((("cw", "not-the-password"), "WRONGPASS"), ((), "NOAUTH")):
            try:
                r.client(auth=auth).call("PING")
            except h.RespError as e:
                assert str(e).startswith(word), e
            else:
                raise AssertionError(f"{auth or 'no AUTH'} accepted")
    with h.Redis(requirepass="simple-test-pass") as r:
        assert r.ping() and r.cli("PING") == "PONG"
        try:
            r.client(auth=()).call("GET", "k")
        except h.RespError as e:
            assert str(e).startswith("NOAUTH"), e
        else:
            raise AssertionError("no AUTH accepted with requirepass")


def test_redis_ha_failover():
    t0 = time.monotonic()
    ha = h.RedisHA("cw-master", users={"cw": ("cw-test-pass", "~cw:* &cw:* +@all")})
    first, second = ha.nodes
    assert ha.name == "cw-master" and len(ha.sentinels.split(",")) == 3
    assert all(a.startswith("127.0.0.1:") for a in ha.sentinels.split(","))
    assert ha.wait_ready() is first and ha.master() is first
    assert ha.replicas() == [second] and second.role() == "slave"
    first.call("SET", "cw:k", "v1")
    h.wait_until(lambda: second.call("GET", "cw:k") == b"v1", 5, "the write to replicate")
    ready = time.monotonic() - t0

    old = ha.kill_master()
    t1 = time.monotonic()
    assert old is first and not old.proc.alive
    new = ha.wait_failover(old, timeout=30)
    failover = time.monotonic() - t1
    assert new is second and new.role() == "master" and ha.master() is second
    assert new.call("GET", "cw:k") == b"v1"
    new.call("SET", "cw:k", "v2")

    ha.restart(old)
    assert ha.wait_ready() is second
    assert old.role() == "slave" and ha.replicas() == [old]
    assert int(old.info()["master_port"]) == second.port
    h.wait_until(lambda: old.call("GET", "cw:k") == b"v2", 5, "the old master to catch up")
    ha.stop()
    assert not any(n.proc.alive for n in ha.nodes)
    assert not any(s.proc.alive for s in ha.sentinel_nodes)
    print(f"figure: RedisHA ready {ready:.1f}s, failover {failover:.1f}s, "
          f"whole test {time.monotonic() - t0:.1f}s")
