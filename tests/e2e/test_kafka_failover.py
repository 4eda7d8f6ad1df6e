"""Broker failures under a stream, on three Apache Kafka brokers.

Replication factor 3, min.insync.replicas 2, alerts produced with
acks=all (the idempotent producer). One `cardwatch run` consumes while the
test keeps producing transactions (20% on exposed cards) in batches, and
injects, one after the other:
  1. kill -9 of the broker leading partition 0 of the transactions topic
     (and the alert partitions it leads), later started again;
  2. a broker stopped (controlled shutdown) for 20 s, then started;
  3. a rolling restart of all three brokers, each back in every ISR
     before the next one stops.
What must hold: every expected alert is delivered (ids, issuers and
contents computed here from the inputs), none is lost, a repeat is only
a repeated alert id with the same content, cardwatch never exits, and its
readiness and metrics say what happened (Kafka errors counted, brokers up
dipping, ready again). Each phase prints its figures: events, alerts
expected / delivered / repeated, and the longest stall (the longest time
in which no event was processed while produced events were waiting)."""

import threading
import time

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn

PARTITIONS = 6
BATCH = 300          # transactions per produce call
EVERY_S = 0.25       # between produce calls: ~1,200 transactions/s


class Stream:
    """Produces batches of known transactions in the background (through
    `cardwatch send`, which must itself survive the broker failures)."""

    def __init__(self, s, exposed, clean):
        self.s, self.exposed, self.clean = s, exposed, clean
        self.txns = []
        self.produced = []          # (monotonic time, cumulative count)
        self.sent_ms = {}           # txn_id -> wall ms its batch was acknowledged
        self.error = None
        self.stop = threading.Event()
        self.n = 0
        self.t = threading.Thread(target=self._run, daemon=True)

    def batch(self):
        out = []
        base = cw.day_ms("2024-02-10")
        for _ in range(BATCH):
            i = self.n
            self.n += 1
            pan = self.exposed[i % len(self.exposed)] if i % 5 == 0 else \
                self.clean[i % len(self.clean)]
            out.append(txn(f"fo-{i:06d}", pan, base + i * 1000))
        return out

    def _run(self):
        try:
            while not self.stop.is_set():
                b = self.batch()
                self.s.send(b, name="stream")
                now = cw.wall_ms()
                self.sent_ms.update((t["txn_id"], now) for t in b)
                self.txns.extend(b)
                self.produced.append((time.monotonic(), len(self.txns)))
                self.stop.wait(EVERY_S)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def start(self):
        self.t.start()
        return self

    def finish(self):
        self.stop.set()
        self.t.join(120)
        assert not self.t.is_alive(), "the producer thread did not end"
        if self.error:
            raise AssertionError(f"producing failed: {self.error!r}")
        return self.txns


class Watch:
    """Samples the service's /metrics and /readyz every 0.2 s."""

    def __init__(self, s):
        self.s = s
        self.samples = []   # (t, events, ready, brokers_up consumer, producer, errors)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                m = self.s.metrics()
                status, _ = self.s.ready()
                self.samples.append((
                    time.monotonic(), m.sum("cardwatch_events_total"), status,
                    m.get("cardwatch_kafka_brokers_up", client="consumer"),
                    m.get("cardwatch_kafka_brokers_up", client="producer"),
                    m.sum("cardwatch_kafka_errors_total")))
            except OSError:
                pass
            self.stop.wait(0.2)

    def start(self):
        self.t.start()
        return self

    def events(self):
        return self.samples[-1][1] if self.samples else 0

    def since(self, t0):
        return [x for x in self.samples if x[0] >= t0]

    def finish(self):
        self.stop.set()
        self.t.join(10)


def longest_stall(samples, produced):
    """Longest span with no new event processed while produced events were
    waiting (samples: Watch samples; produced: Stream.produced)."""
    worst, since = 0.0, None
    for t, events, *_ in samples:
        made = max([n for pt, n in produced if pt <= t], default=0)
        if since is not None and events > since[1]:
            worst = max(worst, t - since[0])
            since = None
        if since is None and events < made:
            since = (t, events)
    return worst


def wait_progress(w, stream, n, timeout, what):
    """Until the service processed n more events than now."""
    start = w.events()
    h.wait_until(lambda: w.events() >= start + n and stream.error is None, timeout,
                 f"{n} more events processed {what}")


def wait_isr_full(k, topics, timeout=90):
    def full():
        return all(len(isr) == 3 for t in topics for isr in k.cluster.isr(t).values())
    h.wait_until(full, timeout, "every partition back to 3 in-sync replicas", interval=0.5)


def test_broker_failures_lose_no_alert():
    if h.kafka_kind() != "apache":
        raise h.Skip("broker failover needs Apache Kafka (CARDWATCH_E2E_KAFKA=embedded)")
    issuers = cw.three_issuers()
    mk = CardMaker(9090)
    exposed = mk.cards(["400001", "510000", "40005012"], 30)
    clean = mk.cards(["400002", "520000", "999999"], 120)
    b = Breach("e2e-failover", "2024-01-01", "2024-12-31", ["pan", "expiry"], exposed)
    s = cw.Stack(issuers, partitions=PARTITIONS, kafka_brokers=3)
    s.load(b)
    k = s.kafka
    topics = [cw.TXN_TOPIC] + cw.alert_topics(issuers)
    run = s.run()
    h.wait_until(lambda: s.ready()[0] == 200, 60, "cardwatch ready")
    w = Watch(s).start()
    stream = Stream(s, exposed, clean).start()
    figures = []

    def phase(name, t0, fn):
        fn()
        assert run.alive, f"{name}: cardwatch exited ({run.returncode}):\n{run.log_text(30)}"
        figures.append((name, t0, time.monotonic()))

    try:
        wait_progress(w, stream, 2 * BATCH, 60, "before the first fault")

        # 1. kill -9 the leader of transactions/0 (and of the alert
        #    partitions it leads), then start it again
        def kill_leader():
            victim = k.leader(cw.TXN_TOPIC, 0)
            led = [(t, p) for t in cw.alert_topics(issuers)
                   for p, _ in k.cluster.isr(t).items() if k.leader(t, p) == victim]
            assert led, f"broker {victim} leads no alert partition"
            errors0 = w.samples[-1][5]
            k.kill_node(victim)
            wait_progress(w, stream, 3 * BATCH, 90, f"with broker {victim} killed")
            assert s.ready()[0] == 200, f"not ready on two brokers: {s.ready()}"
            h.wait_until(lambda: w.samples[-1][5] > errors0, 30,
                         "the broker's failure counted in cardwatch_kafka_errors_total")
            k.start_node(victim)
            wait_isr_full(k, topics)
        phase("kill -9 of the leader", time.monotonic(), kill_leader)

        # 2. a broker stopped for 20 s, then started again
        def stop_20s():
            victim = (k.controller() % 3) + 1   # not the controller this time
            t0 = time.monotonic()
            k.stop_node(victim)
            wait_progress(w, stream, 3 * BATCH, 90, f"with broker {victim} stopped")
            h.wait_until(lambda: time.monotonic() - t0 >= 20 and stream.error is None, 40,
                         "20 s of outage")
            k.start_node(victim)
            wait_isr_full(k, topics)
        phase("broker stopped 20 s", time.monotonic(), stop_20s)

        # 3. rolling restart: each broker stopped, started, back in sync
        def rolling():
            for node in (1, 2, 3):
                k.stop_node(node)
                k.start_node(node)
                wait_isr_full(k, topics)
                wait_progress(w, stream, BATCH, 90, f"after restarting broker {node}")
        phase("rolling restart", time.monotonic(), rolling)
    finally:
        txns = stream.finish()

    # everything produced is processed and every alert delivered
    h.wait_until(lambda: w.events() >= len(txns), 120,
                 f"all {len(txns)} events processed")
    w.finish()
    expected = cw.expected_alerts(txns, [b], issuers)
    got = s.alerts(expect_count=len(expected), timeout=60)
    copies = cw.check_alerts(got, expected, exact_once=False)
    repeated = sum(n - 1 for n in copies.values())
    assert run.alive, run.log_text(30)
    assert s.ready()[0] == 200, s.ready()
    ups = [(c, p) for _, _, _, c, p, _ in w.samples]
    assert any(c is not None and 0 <= c < 3 for c, _ in ups) or \
        any(p is not None and 0 <= p < 3 for _, p in ups), \
        "cardwatch_kafka_brokers_up never showed a broker missing"
    stdout = s.terminate(run, timeout=60)
    assert cw.parse_summary(stdout)["events"] >= len(txns)

    # figures per phase: the transactions whose batch was acknowledged
    # during it, their alerts, and the longest wait of one of them from its
    # batch's acknowledgement to its alert (first copy)
    first_ms = {}
    for _, _, a in got:
        aid = a["alert_id"]
        first_ms[aid] = min(first_ms.get(aid, a["detected_at_ms"]), a["detected_at_ms"])
    mono0, wall0 = time.monotonic(), cw.wall_ms()
    print(f"    failover: {len(txns)} events, {len(expected)} alerts expected, "
          f"{len(copies)} delivered, {repeated} repeated copies, 0 missing")
    for name, t0, t1 in figures:
        lo, hi = wall0 - (mono0 - t0) * 1000, wall0 - (mono0 - t1) * 1000
        ids = [t["txn_id"] for t in txns if lo <= stream.sent_ms[t["txn_id"]] <= hi]
        exp = [cw.alert_id(i) for i in ids if cw.alert_id(i) in expected]
        # detection may precede the acknowledgement of its batch: 0 then
        waits = [max(0, first_ms[a] - stream.sent_ms[expected[a]["alert"]["txn_id"]])
                 for a in exp]
        stall = longest_stall([x for x in w.samples if t0 <= x[0] <= t1], stream.produced)
        samples = [x for x in w.samples if t0 <= x[0] <= t1]
        print(f"    {name}: {t1 - t0:.1f} s, {len(ids)} events, {len(exp)} alerts expected, "
              f"{sum(1 for a in exp if a in copies)} delivered, "
              f"{sum(copies[a] - 1 for a in exp)} repeated; longest wait for detection "
              f"{max(waits, default=0) / 1000:.1f} s, longest stall of all intake "
              f"{stall:.1f} s, readiness 503 in {sum(1 for x in samples if x[2] != 200)} "
              f"of {len(samples)} samples, fewest brokers up "
              f"{min((x[3] for x in samples if x[3] is not None), default='-')}")
