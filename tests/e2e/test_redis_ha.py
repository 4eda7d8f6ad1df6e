"""cardwatch on a Sentinel-managed Redis (harness RedisHA: master, replica,
3 sentinels), end to end with Apache Kafka and a real `cardwatch run`.

The config names the sentinels and the master name only. The master is
killed (kill -9) in the middle of a stream: the service asks the sentinels
again, follows the promoted replica, re-sends what was unanswered and goes
on; every expected alert is delivered (the default rule set is stateless,
and the exposed set and its marker reached the replica before the kill -
WAIT 1 says so), none twice."""

import random
import re
import time
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn


def _stream(seed, n, tag, share=0.05):
    issuers = cw.three_issuers()
    mk = CardMaker(seed)
    exposed = mk.cards(["400001", "400077", "4000503", "510000", "52000042", "999999"], 200)
    clean = mk.cards(["400002", "400090", "4000501", "510000", "52000007", "371234"], 2000)
    b1 = Breach(f"{tag}-breach", "2024-03-01", "2024-05-31", ["pan", "expiry", "cvv2"],
                exposed)
    rnd = random.Random(seed)
    base = cw.day_ms("2024-02-20")
    txns = [txn(f"{tag}-{i:06d}", rnd.choice(exposed) if rnd.random() < share
                else rnd.choice(clean), base + rnd.randrange(0, 60 * 86_400_000), rnd)
            for i in range(n)]
    return issuers, b1, txns


class _Feeder:
    """Sends txns in chunks, one `cardwatch send` at a time: pump() starts
    the next chunk once the previous one is sent; True when all are."""

    def __init__(self, s, txns, chunk):
        self.s = s
        self.chunks = [txns[i:i + chunk] for i in range(0, len(txns), chunk)]
        self.next = 0
        self.sent = 0
        self.proc = None
        self.pending = 0

    def pump(self):
        if self.proc is not None:
            if self.proc.alive:
                return False
            assert self.proc.returncode == 0, self.proc.log_text(20)
            self.sent += self.pending
            self.proc = None
        if self.next == len(self.chunks):
            return True
        chunk = self.chunks[self.next]
        self.proc = self.s.send_async(chunk, name=f"chunk-{self.next:02d}")
        self.pending = len(chunk)
        self.next += 1
        return False


def test_sentinel_failover_mid_stream_loses_no_alert():
    issuers, b1, txns = _stream(31, 6000, "ha")
    expected = cw.expected_alerts(txns, [b1], issuers)
    assert 200 <= len(expected) <= 450, len(expected)

    ha = h.RedisHA("cw-master")
    s = cw.Stack(issuers, partitions=4, redis=ha)
    assert "sentinels = " + ha.sentinels in s.config.read_text()
    assert "\naddress" not in s.config.read_text()
    out = s.cardwatch("check").stdout.decode()
    assert f"master 'cw-master' via sentinels {ha.sentinels}" in out and \
        out.rstrip().endswith("OK"), out
    s.load(b1)
    old = ha.master()
    # the cards and the generation marker are on the replica before the kill
    assert old.call("WAIT", 1, 10_000) == 1, "the replica did not acknowledge the load"
    ha.wait_ready()
    replica = ha.replicas()[0]
    marker = old.call("GET", "cw:exposed")
    assert marker and replica.call("GET", "cw:exposed") == marker
    assert replica.call("DBSIZE") == old.call("DBSIZE")

    proc = s.run()
    h.wait_until(lambda: not proc.alive or s.ready()[0] == 200, 30, "/readyz 200")
    assert proc.alive, proc.log_text(30)
    log = Path(proc.log)
    assert f"Redis master for 'cw-master' is now {old.address}" in log.read_text(), \
        log.read_text()[-3000:]

    # the stream: chunks sent one after the other (the next as soon as the
    # previous `cardwatch send` is done), so events keep arriving before,
    # during and after the failover
    feeder = _Feeder(s, txns, 250)
    h.wait_until(lambda: feeder.pump() and False or
                 s.metrics().sum("cardwatch_events_total") >= 1000, 60,
                 "1000 events processed", interval=0.02)
    t_kill = time.monotonic()
    ha.kill_master()
    done_at_kill = s.metrics().sum("cardwatch_events_total")
    sent_at_kill = feeder.sent

    samples = []   # (seconds after the kill, readiness status, events done)

    def finished():
        all_sent = feeder.pump()
        st = s.ready()[0]
        n = s.metrics().sum("cardwatch_events_total")
        samples.append((time.monotonic() - t_kill, st, n))
        return all_sent and st == 200 and n == len(txns)
    h.wait_until(finished, 30, f"/readyz 200 and all {len(txns)} events processed",
                 interval=0.05)
    new = ha.wait_failover(old, timeout=10)
    assert new is not old

    text = log.read_text(errors="replace")
    assert f"Redis master for 'cw-master' is now {new.address}" in text, text[-3000:]
    assert f"Redis {old.address} lost" in text, text[-3000:]
    m = s.metrics()
    assert m.get("cardwatch_redis_up") == 1
    assert m.get("cardwatch_redis_reconnects_total") >= 2, m.get("cardwatch_redis_reconnects_total")
    assert m.get("cardwatch_exposed_set_ok") == 1
    s.terminate(proc)

    # stall: readiness 503 -> 200, and the longest time without progress
    down = [t for t, st, _n in samples if st != 200]
    ready_stall = (next(t for t, st, _n in samples if st == 200 and t > down[-1]) - down[0]) \
        if down else 0.0
    gap, last_t, last_n = 0.0, 0.0, done_at_kill
    for t, _st, n in samples:
        if n != last_n:
            gap = max(gap, t - last_t)
            last_t, last_n = t, n
    copies = cw.check_alerts(s.alerts(), expected, exact_once=False)
    repeated = sum(c - 1 for c in copies.values() if c > 1)
    failover_lines = [ln for ln in text.splitlines()
                      if re.search(r"WARN|ERROR|master for|connected", ln)]
    print(f"figure: sentinel failover: stall {ready_stall:.1f} s (readiness 503 -> 200), "
          f"{gap:.1f} s without progress; {len(txns)} events ({sent_at_kill} sent in full and "
          f"{int(done_at_kill)} processed at the kill), {len(expected)} alerts expected, "
          f"{len(copies)} delivered, {repeated} repeated ids")
    print("run log around the failover:\n  " + "\n  ".join(failover_lines[-15:]))
    assert done_at_kill < len(txns), "the stream was over before the kill"
    assert down, "readiness never dropped while the master was gone"
    assert repeated == 0, f"{repeated} alerts delivered twice"
    assert m.sum("cardwatch_alerts_total") == len(expected)
