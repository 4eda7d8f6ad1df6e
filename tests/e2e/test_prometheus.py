"""A real prometheus (Debian's package, as the README's "Alerting rules"
section runs it) scrapes a running `cardwatch run` and `cardwatch feed`
with deploy/prometheus/cardwatch-rules.yml loaded as shipped.

What an SRE relies on: the series the rules and the dashboard name are
there with the values the service reports (events, alerts by issuer, the
feed's Redis), every rule evaluates without error against real data (a
label mismatch in a ratio, say, shows only here: promtool's unit tests
feed the rules made-up series), and a real fault - Redis stopped - turns
CardwatchRedisDown pending for both processes and CardwatchNotReady for
the processor, and inactive again once Redis is back.

promtool's checks and the rules' unit tests (when each alert fires and
when it stays silent) run in `make prometheus-check`."""

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn
from test_feed import Feed, TokenIssuer, _start_live, _token

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "cardwatch-rules.yml"


class Prometheus:
    """prometheus on a free loopback port, scraping `targets` (job ->
    host:port) every second and evaluating `rules` every second; its data
    in a directory of the test."""

    def __init__(self, targets, rules):
        exe = shutil.which("prometheus")
        assert exe, "prometheus is missing: scripts/install-deps.sh installs Debian's package"
        self.dir = h.tmpdir("prometheus")
        self.port = h.free_port()
        scrape = "".join(f"  - job_name: {job}\n    static_configs:\n"
                         f"      - targets: [\"{addr}\"]\n" for job, addr in targets.items())
        cfg = self.dir / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                       f"rule_files:\n  - {rules}\nscrape_configs:\n{scrape}")
        check = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = h.spawn([exe, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir}/data",
                             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                            name="prometheus", log=self.dir / "prometheus.log")
        h.wait_until(lambda: self.api("status/runtimeinfo") is not None or not self.proc.alive,
                     30, "prometheus answering")
        assert self.proc.alive, self.proc.log_text(30)

    def api(self, path, **params):
        """GET /api/v1/PATH; returns its data, or None when it does not
        answer (yet) or answers an error."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            status, body = h.http_get(url)
        except OSError:
            return None
        doc = json.loads(body)
        return doc["data"] if status == 200 and doc.get("status") == "success" else None

    def query(self, expr):
        """{frozenset(labels): value} of an instant query."""
        data = self.api("query", query=expr) or {"result": []}
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in data["result"]}

    def alerts(self):
        """[(alertname, job, state)] of the active alerts."""
        data = self.api("alerts") or {"alerts": []}
        return sorted((a["labels"]["alertname"], a["labels"].get("job", ""), a["state"])
                      for a in data["alerts"])


def test_prometheus_scrapes_run_and_feed_and_redis_down_goes_pending():
    """Real series and rules on a live stack, then Redis stopped and
    started: the alerts a page would come from go pending and go away."""
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    mk = CardMaker(9151)
    cards = mk.cards("400001", 4)
    b = Breach("e2e-prom", "2024-01-01", "2024-12-31", ["pan", "expiry"], cards)
    s = cw.Stack([alpha], partitions=2)
    s.load(b)
    _start_live(s)
    feed = Feed(s.config.read_text())
    txns = [txn(f"prom-{i:03d}", cards[i % 4] if i % 3 == 0 else mk.card("400001"),
                cw.day_ms("2024-05-01") + i * 60_000) for i in range(30)]
    want = cw.expected_alerts(txns, [b], [alpha])
    s.send(txns, name="prom")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") == len(txns) and
                 s.metrics().get("cardwatch_in_flight_events") == 0, 60,
                 "the transactions processed")

    prom = Prometheus({"cardwatch": f"127.0.0.1:{s.http_port}",
                       "cardwatch-feed": f"127.0.0.1:{feed.http_port}"}, RULES)
    h.wait_until(lambda: sorted(dict(k)["job"] for k, v in prom.query("up").items()
                                if v == 1) == ["cardwatch", "cardwatch-feed"], 30,
                 "both targets scraped and up")

    # the series, with the values the service reports
    events = prom.query('sum(cardwatch_events_total{job="cardwatch"})')
    assert list(events.values()) == [len(txns)], events
    by_issuer = {dict(k).get("issuer"): v for k, v in
                 prom.query('cardwatch_alerts_total{job="cardwatch"}').items()}
    assert by_issuer.get("alpha") == len(want), (by_issuer, len(want))
    for expr in ('cardwatch_ready{job="cardwatch"}', 'cardwatch_redis_up{job="cardwatch"}',
                 'cardwatch_feed_redis_up{job="cardwatch-feed"}',
                 'cardwatch_exposed_set_ok{job="cardwatch"}'):
        assert list(prom.query(expr).values()) == [1.0], (expr, prom.query(expr))
    # the recording rules produce series from real data (two scrapes in)
    h.wait_until(lambda: prom.query("cardwatch:events:rate5m"), 30,
                 "cardwatch:events:rate5m recorded")

    # every rule loaded as shipped and evaluating without error
    def rules():
        data = prom.api("rules") or {"groups": []}
        return [r for g in data["groups"] for r in g["rules"]]
    h.wait_until(lambda: all(r.get("lastEvaluation", "").startswith("20") for r in rules())
                 and rules(), 30, "every rule evaluated once")
    shipped = RULES.read_text().count("- alert:") + RULES.read_text().count("- record:")
    got = rules()
    assert len(got) == shipped, (len(got), shipped)
    bad = [(r["name"], r.get("lastError")) for r in got if r["health"] != "ok"]
    assert not bad, bad
    # nothing wrong: no alert, but CardwatchNoEvents may be pending (no
    # transaction arrived since prometheus began to scrape, partitions
    # assigned: what it is for, firing after 30 minutes of that)
    quiet = {"CardwatchNoEvents"}
    assert {a[0] for a in prom.alerts()} <= quiet, prom.alerts()

    # Redis stopped: the processor and the feed lose it, the processor is
    # not ready - pending now, firing after the rules' `for`
    s.redis.stop()
    want_pending = {("CardwatchRedisDown", "cardwatch"), ("CardwatchRedisDown", "cardwatch-feed"),
                    ("CardwatchNotReady", "cardwatch")}
    h.wait_until(lambda: want_pending <= {(n, j) for n, j, st in prom.alerts()
                                          if st == "pending"}, 30,
                 f"{sorted(want_pending)} pending")
    s.redis.start()
    s.load(b)                  # the restarted Redis is empty: the set comes back
    h.wait_until(lambda: {a[0] for a in prom.alerts()} <= quiet, 60,
                 "no alert but CardwatchNoEvents once Redis is back")
    print(f"    prometheus: {len(got)} rules healthy; {len(want)} alerts, "
          f"{len(txns)} events seen; Redis down -> {len(want_pending)} pending, gone once it is back")
