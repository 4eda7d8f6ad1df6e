"""Rebalances while the batch intake runs: a second cardwatch instance joins
the consumer group mid-stream and later leaves it. librdkafka 2.0.x's batch
consume API may lose or repeat messages when a rebalance runs in parallel
with it; cardwatch serves every consumer call on its one loop thread, so
nothing may be lost. Both the eager and the cooperative protocol."""


import harness as h
import cwstack as cw
from test_pipeline import _big_stream


def _distinct_alerts(s):
    return {a.get("alert_id") for _, _, a in s.alerts(timeout=10)}


def _second_config(s, name):
    """The same config with another HTTP port, for a second instance."""
    port = h.free_port()
    text = s.config.read_text().replace(f"listen = 127.0.0.1:{s.http_port}",
                                        f"listen = 127.0.0.1:{port}")
    path = s.dir / f"{name}.ini"
    path.write_text(text)
    return path, f"http://127.0.0.1:{port}"


def _rebalance_scenario(strategy, seed):
    issuers, b1, txns = _big_stream(seed, 12_000, f"rb{seed}")
    expected = cw.expected_alerts(txns, [b1], issuers)
    thirds = [0, 4000, 8000, len(txns)]
    s = cw.Stack(issuers, partitions=8,
                 extra_ini=f"[kafka.consumer]\npartition.assignment.strategy = {strategy}\n")
    s.load(b1)
    a = s.run(name="a")
    h.wait_until(lambda: s.metrics().get("cardwatch_assigned_partitions") == 8, 30,
                 "instance a owns all 8 partitions")
    s.send(txns[:thirds[1]], name="part-1")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") >= thirds[1], 60,
                 "instance a processed the first part")

    # b joins while the second part arrives: the group rebalances under load.
    cfg_b, url_b = _second_config(s, "b")
    with open(s.dir / "b.stdout", "wb") as out:
        b = h.spawn([h.tool("cardwatch"), "run", "--config", cfg_b, "--no-progress"],
                    name="b", log=s.dir / "b.log", stdout=out)
    sender = s.send_async(txns[thirds[1]:thirds[2]], name="part-2")

    def split():
        ma, mb = s.metrics(), h.scrape(url_b + "/metrics")
        pa = ma.get("cardwatch_assigned_partitions")
        pb = mb.get("cardwatch_assigned_partitions")
        return pa and pb and pa + pb == 8 and (pa, pb)
    shares = h.wait_until(split, 60, "the partitions split between a and b")
    assert sender.wait(60) == 0, sender.log_text(10)
    s.send(txns[thirds[2]:], name="part-3")

    def done():
        n = (s.metrics().sum("cardwatch_events_total")
             + h.scrape(url_b + "/metrics").sum("cardwatch_events_total"))
        return n >= len(txns) and set(expected) <= _distinct_alerts(s)
    h.wait_until(done, 90, "every event processed and every expected alert out",
                 interval=0.5)
    # b leaves (another rebalance), then a drains and exits.
    rc = b.stop(timeout=30)
    assert rc == 0, f"instance b exited {rc}:\n{b.log_text(20)}"
    h.wait_until(lambda: s.metrics().get("cardwatch_assigned_partitions") == 8, 60,
                 "a owns all partitions again after b left")
    s.terminate(a)

    got = s.alerts(expect_count=len(expected))
    copies = cw.check_alerts(got, expected, exact_once=False)
    dup = sum(n - 1 for n in copies.values())
    print(f"    {strategy}: split {shares[0]}+{shares[1]}; {len(expected)} alerts "
          f"expected, {len(got)} produced ({dup} again after rebalances)")


def test_rebalance_eager_loses_nothing():
    _rebalance_scenario("range,roundrobin", 31)


def test_rebalance_cooperative_loses_nothing():
    _rebalance_scenario("cooperative-sticky", 32)
