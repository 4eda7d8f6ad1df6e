#!/usr/bin/env python3
"""The chaos suite: cardwatch under a seeded storm of faults, checked by an
independent checker (tests/chaos/checker.py).

    python3 tests/chaos/chaos.py --build build [--seed S] [--duration SECONDS]
        [--faults N] [--profile short|long] [--report FILE] [--keep]

The system under test: 3 Apache Kafka brokers (KRaft, replication factor
3, min.insync.replicas 2), Redis master + replica + 3 sentinels, 3
`cardwatch run` instances in one consumer group with the default rule
pack, one `cardwatch feed`, and one `cardwatch send --key card` fed a
known stream (tests/chaos/stream.py) without pause from start to end.
Faults (tests/chaos/faults.py) are injected one after the other until
--duration seconds have passed and at least --faults were injected; each
fault ends with its recovery. Then the stream stops, the checker waits for
the system to finish, and prints the report (and writes it as JSON with
--report). Exit status 0 when the run passes, 1 when it does not, 2 on
bad usage.

The seed (default: from the clock) is printed at the start and in the
report: the same seed gives the same stream and the same fault plan.
Everything runs on free loopback ports in a temporary directory, removed
after a passing run (kept, and its path printed, otherwise or with
--keep). Uses tests/e2e/harness.py and cwstack.py.
"""

import argparse
import base64
import hashlib
import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))

import harness as h  # noqa: E402
import cwstack as cw  # noqa: E402
import oracle  # noqa: E402
import faults as fl  # noqa: E402
import checker  # noqa: E402
from stream import Scenario, Stream  # noqa: E402

PARTITIONS = 6
MIN_INSTANCES, MAX_INSTANCES = 2, 4
RATE = 400                  # events per second into `cardwatch send`
SESSION_TIMEOUT_MS = 3000   # a killed instance's partitions move after ~3 s
RECOVERY_S = 90             # a fault that is not over by then fails the run


def say(msg):
    print(f"chaos: {msg}", flush=True)


def wall_ms():
    return int(time.time() * 1000)


class TokenIssuer(cw.Issuer):
    """An [issuer ID] section with the SHA-256 of its feed token."""

    def __init__(self, iss, token):
        super().__init__(iss.id, iss.home_country, iss.bins, name=iss.name, topic=iss.topic)
        self.token = token

    def ini(self):
        return super().ini() + \
            f"token_sha256 = {hashlib.sha256(self.token.encode()).hexdigest()}\n"


def _token():
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


class RecoveryTimeout(AssertionError):
    pass


# --------------------------------------------------------------------------
# the processes

class Instance:
    """One `cardwatch run` on the stack's config with its own [http] port."""

    def __init__(self, system, n):
        s = system.stack
        self.n = n
        self.name = f"cw-{n}"
        self.port = h.free_port()
        self.config = s.dir / f"{self.name}.ini"
        self.config.write_text(s.config.read_text().replace(
            f"listen = 127.0.0.1:{s.http_port}", f"listen = 127.0.0.1:{self.port}"))
        self.stdout = s.dir / f"{self.name}.stdout"
        with open(self.stdout, "wb") as out:
            self.proc = h.spawn([h.tool("cardwatch"), "run", "--config", self.config,
                                 "--no-progress"], name=self.name,
                                log=s.dir / f"{self.name}.log", stdout=out)
        self.asked = None   # what we did to it: None, "kill9", "term"
        self.rc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def ready(self):
        return h.http_get(self.url + "/readyz", timeout=2)[0] == 200

    def assigned(self):
        return h.scrape(self.url + "/metrics", timeout=2).get("cardwatch_assigned_partitions")


class Producer:
    """`cardwatch send --key card --input -` fed the stream at RATE events/s
    from a thread; raw payloads go through tools/produce_file."""

    def __init__(self, system, stream, rate=RATE):
        self.system, self.stream, self.rate = system, stream, rate
        s = system.stack
        self.log = s.dir / "send.log"
        self.inputs = s.dir / "inputs.jsonl"   # what was written (holds test card numbers)
        self.proc = h.spawn([h.tool("cardwatch"), "send", "--config", s.config, "--input", "-",
                             "--key", "card", "--topic", cw.TXN_TOPIC],
                            name="cardwatch-send", log=self.log, stdin=subprocess.PIPE)
        self.stop_ev = threading.Event()
        self.error = None
        self.lines = 0
        self.raw_pending = []
        self.raw_sent = 0
        self.t = threading.Thread(target=self._run, name="producer", daemon=True)

    def start(self):
        self.t.start()
        return self

    def _flush_raw(self):
        if not self.raw_pending:
            return
        try:
            h.produce(self.system.kafka.bootstraps, cw.TXN_TOPIC,
                      [(None, p) for p in self.raw_pending], timeout=30)
            self.raw_sent += len(self.raw_pending)
            self.raw_pending = []
        except AssertionError:
            pass   # some may be on the topic: the checker reads what is there; retried

    def _run(self):
        tick = 0.1
        per_tick = max(1, int(self.rate * tick))
        next_t = time.monotonic()
        last_raw = next_t
        try:
            with open(self.inputs, "w") as keep:
                while not self.stop_ev.is_set():
                    lines, raw = self.stream.next_batch(per_tick)
                    data = "".join(lines)
                    keep.write(data)
                    self.proc.popen.stdin.write(data.encode())
                    self.proc.popen.stdin.flush()
                    self.lines += len(lines)
                    self.raw_pending.extend(raw)
                    now = time.monotonic()
                    if now - last_raw >= 2.0:
                        self._flush_raw()
                        last_raw = time.monotonic()
                    next_t += tick
                    self.stop_ev.wait(max(0.0, next_t - time.monotonic()))
                for _ in range(3):      # the last ones, retried after a failure
                    if self.raw_pending:
                        self._flush_raw()
        except BaseException as e:  # noqa: BLE001 - reported at the end
            self.error = e

    def finish(self, timeout=180):
        """Stop the stream, close send's input and wait for it to deliver
        everything; returns what was produced (a dict for the report)."""
        self.stop_ev.set()
        self.t.join(60)
        try:
            self.proc.popen.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.stop()
            rc = "timeout"
        text = self.proc.log_text()
        m = re.search(r"cardwatch send: (\d+) transactions sent to \S+, (\d+) skipped", text)
        return {"rc": rc, "lines_written": self.lines, "raw_produced": self.raw_sent,
                "log_tail": None if rc == 0 else text.splitlines()[-10:],
                "raw_unsent": len(self.raw_pending),
                "sent": int(m.group(1)) if m else None,
                "skipped": int(m.group(2)) if m else None,
                "error": repr(self.error) if self.error else None}


class ControllerWatch:
    """The active KRaft controller, read from the brokers' own logs: the
    node that logged "Becoming the active controller at epoch N" with the
    highest N. (A Metadata response names a random broker as controller
    in KRaft, so the logs are the place.)"""

    _ACTIVE = re.compile(rb"\[QuorumController id=(\d+)\] Becoming the active controller "
                         rb"at epoch (\d+)")

    def __init__(self, cluster):
        self.cluster = cluster
        self.pos = {}
        self.best = (-1, None)   # (epoch, node id)

    def poll(self):
        for n in self.cluster.nodes:
            path = n.log
            try:
                size = path.stat().st_size
            except OSError:
                continue
            pos = self.pos.get(n.id, 0)
            if size < pos:
                pos = 0
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
            cut = data.rfind(b"\n") + 1
            self.pos[n.id] = pos + cut
            for m in self._ACTIVE.finditer(data[:cut]):
                ep = int(m.group(2))
                if ep > self.best[0]:
                    self.best = (ep, int(m.group(1)))
        return self.best

    def active(self):
        return self.poll()[1]


# --------------------------------------------------------------------------
# the system under test

class System:
    """Everything of one run, started and settled: the brokers, Redis HA,
    the instances, the feed (the producer is apart: Producer)."""

    def __init__(self, seed, partitions=PARTITIONS, instances=3,
                 session_timeout_ms=SESSION_TIMEOUT_MS):
        self.seed = seed
        self.partitions = partitions
        self.sc = Scenario(seed)
        self.tokens = {i.id: _token() for i in self.sc.issuers}
        self.issuers = [TokenIssuer(i, self.tokens[i.id]) for i in self.sc.issuers]
        self.ha = h.RedisHA("cw-chaos", start=False)
        t0 = time.monotonic()
        self.stack = cw.Stack(
            self.issuers, partitions=partitions, session_timeout_ms=session_timeout_ms,
            extra_ini=f"[rules]\npath = {oracle.DEFAULT_PACK}\n", kafka_brokers=3,
            redis=self.ha,
            # a killed instance's partitions move after the session timeout;
            # every message carries the time the broker appended it (the
            # checker's clock for stalls)
            kafka_props={"group.min.session.timeout.ms": 1000,
                         "log.message.timestamp.type": "LogAppendTime"})
        # one after the other, from this thread: a spawned process dies with
        # the thread that started it (PR_SET_PDEATHSIG)
        self.stack.kafka
        self.ha.start()
        self.kafka = self.stack.kafka
        self.stack.load(self.sc.breach)
        m = self.ha.master()
        if m.call("WAIT", 1, 10_000) != 1:
            raise h.HarnessError("the Redis replica did not acknowledge the breach load")
        self.controllers = ControllerWatch(self.kafka.cluster)
        self.n_spawned = 0
        self.instances = []
        self.gone = []           # instances stopped or killed (for exit statuses, logs)
        self.crashes = []        # processes that died unasked
        for _ in range(instances):
            self.add_instance()
        self.feed = self._start_feed()
        self.wait_settled(what="start-up", timeout=120)
        self.startup_s = time.monotonic() - t0

    # -- pieces -----------------------------------------------------------
    def _start_feed(self):
        s = self.stack
        self.feed_port, self.feed_http = h.free_port(), h.free_port()
        text = s.config.read_text().replace(f"listen = 127.0.0.1:{s.http_port}",
                                            f"listen = 127.0.0.1:{self.feed_http}")
        text += (f"\n[feed]\nlisten = 127.0.0.1:{self.feed_port}\n"
                 "rate_per_s = 100000\nburst = 100000\n")
        cfg = s.dir / "feed.ini"
        cfg.write_text(text)
        p = h.spawn([h.tool("cardwatch"), "feed", "--config", cfg], name="cardwatch-feed",
                    log=s.dir / "cardwatch-feed.log")
        self.feed_proc = p
        return p

    @property
    def feed_url(self):
        return f"http://127.0.0.1:{self.feed_port}"

    def feed_ready(self):
        return h.http_get(f"http://127.0.0.1:{self.feed_http}/readyz", timeout=2)[0] == 200

    def add_instance(self):
        self.n_spawned += 1
        inst = Instance(self, self.n_spawned)
        self.instances.append(inst)
        return inst

    def pick(self, u):
        return self.instances[min(int(u * len(self.instances)), len(self.instances) - 1)]

    def stop_instance(self, inst, sig):
        """SIGTERM (wait for the drain) or SIGKILL; records the exit status."""
        self.instances.remove(inst)
        inst.asked = "kill9" if sig == signal.SIGKILL else "term"
        if sig == signal.SIGKILL:
            inst.proc.send_signal(signal.SIGKILL)
            inst.rc = inst.proc.wait(30)
        else:
            inst.rc = inst.proc.stop(timeout=60, sig=signal.SIGTERM)
        self.gone.append(inst)
        return inst.rc

    def _check_crashes(self):
        for inst in list(self.instances):
            if not inst.proc.alive:
                inst.rc = inst.proc.returncode
                self.instances.remove(inst)
                self.gone.append(inst)
                self.crashes.append({"instance": inst.name, "rc": inst.rc,
                                     "at_ms": wall_ms(), "log": str(inst.proc.log)})
                say(f"{inst.name} died unasked (exit {inst.rc}); log {inst.proc.log}")
                self.add_instance()
        if not self.feed_proc.alive:
            self.crashes.append({"instance": "cardwatch-feed", "rc": self.feed_proc.returncode,
                                 "at_ms": wall_ms(), "log": str(self.feed_proc.log)})
            say(f"cardwatch feed died unasked (exit {self.feed_proc.returncode})")
            self.feed = self._start_feed()
        # the infrastructure: every broker, Redis node and sentinel runs
        # whenever the system is expected whole (no fault under way)
        procs = [(f"kafka-{n.id}", n.proc) for n in self.kafka.cluster.nodes] + \
            [(f"redis {r.address}", r.proc) for r in self.ha.nodes] + \
            [(f"sentinel {x.address}", x.proc) for x in self.ha.sentinel_nodes]
        dead = [(name, p) for name, p in procs if p is not None and not p.alive]
        if dead:
            for name, p in dead:
                self.crashes.append({"instance": name, "rc": p.returncode, "at_ms": wall_ms(),
                                     "log": str(p.log)})
            raise RecoveryTimeout("died unasked: " + ", ".join(
                f"{name} (exit {p.returncode}, log {p.log})" for name, p in dead))

    # -- recovery conditions ---------------------------------------------
    def settled(self):
        self._check_crashes()
        total = 0
        for inst in self.instances:
            if not inst.ready():
                return False
            total += inst.assigned() or 0
        return total == self.partitions and self.feed_ready()

    def wait_settled(self, what, timeout=RECOVERY_S):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.settled():   # raises RecoveryTimeout on a dead process
                    return
            except RecoveryTimeout:
                raise
            except (OSError, AssertionError, ValueError):
                pass                 # an instance not answering yet
            if time.monotonic() >= deadline:
                raise RecoveryTimeout(f"{what}: not every instance ready with "
                                      f"{self.partitions} partitions assigned and the feed "
                                      f"ready within {timeout:g} s")
            time.sleep(0.05)   # polling interval of the condition

    def isr_full(self):
        md = self.kafka.cluster.metadata()
        if len(md.get("brokers", [])) < 3:
            return False
        return all(len(p.get("isrs", [])) == 3 for t in md["topics"] for p in t["partitions"])

    def wait_kafka(self, what, restarted=False, timeout=RECOVERY_S):
        try:
            if restarted:
                self.kafka.cluster.wait_ready(timeout)
            h.wait_until(self.isr_full, timeout, f"{what}: every partition with 3 in-sync "
                         "replicas", interval=0.1)
        except (AssertionError, Exception) as e:  # KafkaError too
            raise RecoveryTimeout(str(e)) from None

    def stop(self):
        """SIGTERM every instance (exit statuses recorded) and the feed."""
        for inst in list(self.instances):
            self.stop_instance(inst, signal.SIGTERM)
        self.feed_rc = self.feed_proc.stop(timeout=30, sig=signal.SIGTERM)


# --------------------------------------------------------------------------
# faults

def inject(sysm, f):
    """Performs planned fault f (faults.plan) with its recovery; returns
    its record."""
    kind, u = f["kind"], f["u"]
    rec = {"n": f["n"], "kind": kind, "t0_ms": wall_ms(), "ok": True}
    t0 = time.monotonic()

    def pause(seconds):
        # the fault's own drawn length (a process stays stopped or down)
        if seconds > 0:
            threading.Event().wait(seconds)

    try:
        if kind in ("cw_kill9", "cw_term"):
            inst = sysm.pick(u)
            rec["target"] = inst.name
            rc = sysm.stop_instance(inst, signal.SIGKILL if kind == "cw_kill9"
                                    else signal.SIGTERM)
            rec["rc"] = rc
            pause(f["down"])
            rec["down_s"] = f["down"]
            rec["replacement"] = sysm.add_instance().name
            sysm.wait_settled(kind)
        elif kind == "cw_scale":
            n = len(sysm.instances)
            add = n <= MIN_INSTANCES or (n < MAX_INSTANCES and u < 0.5)
            rec["kind"] = kind = "cw_add" if add else "cw_remove"
            if add:
                rec["target"] = sysm.add_instance().name
            else:
                inst = sysm.pick(u)
                rec["target"] = inst.name
                rec["rc"] = sysm.stop_instance(inst, signal.SIGTERM)
            rec["instances"] = len(sysm.instances)
            sysm.wait_settled(kind)
        elif kind == "cw_pause":
            inst = sysm.pick(u)
            rec["target"], rec["stopped_s"] = inst.name, f["dur"]
            inst.proc.send_signal(signal.SIGSTOP)
            pause(f["dur"])
            inst.proc.send_signal(signal.SIGCONT)
            sysm.wait_settled(kind)
        elif kind in ("broker_pause", "broker_kill", "controller_kill"):
            k = sysm.kafka
            if kind == "controller_kill":
                node = sysm.controllers.active()
                epoch = sysm.controllers.best[0]
                if node is None:
                    raise RecoveryTimeout("no active KRaft controller found in the logs")
            else:
                node = 1 + min(int(u * 3), 2)
            rec["target"] = f"broker-{node}"
            if kind == "broker_pause":
                rec["stopped_s"] = f["dur"]
                k.cluster.pause_node(node)
                pause(f["dur"])
                k.cluster.resume_node(node)
            else:
                k.kill_node(node)
                if kind == "controller_kill":
                    try:
                        h.wait_until(lambda: sysm.controllers.poll()[0] > epoch, RECOVERY_S,
                                     "another KRaft controller to become active",
                                     interval=0.05)
                    except AssertionError as e:
                        raise RecoveryTimeout(str(e)) from None
                    rec["new_controller"] = f"broker-{sysm.controllers.best[1]}"
                pause(f["down"])
                rec["down_s"] = f["down"]
                try:
                    k.start_node(node, timeout=RECOVERY_S)
                except Exception as e:  # noqa: BLE001 - KafkaError
                    raise RecoveryTimeout(f"broker {node} did not start again: {e}") from None
            sysm.wait_kafka(kind, restarted=kind != "broker_pause")
            sysm.wait_settled(kind)
        elif kind == "redis_pause":
            m = sysm.ha.master()
            rec["target"], rec["stopped_s"] = f"redis {m.address}", f["dur"]
            m.pause()
            pause(f["dur"])
            m.resume()
            try:
                h.wait_until(m.ping, RECOVERY_S, "the Redis master to answer again")
            except AssertionError as e:
                raise RecoveryTimeout(str(e)) from None
            sysm.wait_settled(kind)
        elif kind == "redis_failover":
            ha = sysm.ha
            old = ha.kill_master()
            rec["target"] = f"redis {old.address}"
            try:
                new = ha.wait_failover(old, timeout=RECOVERY_S)
                rec["new_master"] = new.address
                ha.restart(old)
                ha.wait_ready(RECOVERY_S)
            except (AssertionError, h.HarnessError) as e:
                raise RecoveryTimeout(f"Redis failover: {e}") from None
            sysm.wait_settled(kind)
        else:
            raise ValueError(f"unknown fault kind {kind}")
    except RecoveryTimeout as e:
        rec["ok"] = False
        rec["error"] = str(e)
    rec["t1_ms"] = wall_ms()
    rec["recovery_s"] = round(time.monotonic() - t0, 2)
    return rec


# --------------------------------------------------------------------------
# the run

def run(seed, duration, n_faults=0, profile="short", report_path=None, rate=RATE):
    """One chaos run; returns the report (dict, report["pass"] bool). The
    caller owns harness cleanup (run.py, or main() below)."""
    t_start = time.monotonic()
    build = h.config.build
    build = build.relative_to(REPO) if build.is_relative_to(REPO) else build
    say(f"seed {seed} (replay: python3 tests/chaos/chaos.py --build {build} --seed {seed} "
        f"--profile {profile} --duration {duration:g}"
        f"{f' --faults {n_faults}' if n_faults else ''})")
    sysm = System(seed)
    say(f"up in {sysm.startup_s:.1f} s: 3 brokers, Redis master + replica + 3 sentinels, "
        f"{len(sysm.instances)} instances, feed; files in {sysm.stack.dir}")
    stream = Stream(sysm.sc, seed)
    prod = Producer(sysm, stream, rate).start()
    records = []
    aborted = None
    try:
        h.wait_until(lambda: prod.error is None and sum(
            h.scrape(i.url + "/metrics", timeout=2).sum("cardwatch_events_total")
            for i in sysm.instances) >= rate, 60, "the stream flowing through cardwatch")
        t_faults = time.monotonic()
        for f in fl.plan(seed, profile, n_faults):
            if time.monotonic() - t_faults >= duration and len(records) >= n_faults:
                break
            if prod.error is not None:
                aborted = f"the producer failed: {prod.error!r}"
                break
            rec = inject(sysm, f)
            records.append(rec)
            if not rec["ok"]:
                aborted = f"fault {rec['n']} ({rec['kind']}): {rec['error']}"
                say(f"fault {rec['n']} {rec['kind']} did not recover: {rec['error']}")
                break
            if f["gap"] > 0:
                threading.Event().wait(f["gap"])   # the stream flows between faults
        if not records and not aborted:
            # profile none: the stream alone for --duration
            threading.Event().wait(max(0.0, duration - (time.monotonic() - t_faults)))
        fault_s = time.monotonic() - t_faults
    finally:
        produced = prod.finish()
    say(f"{len(records)} faults in {fault_s:.0f} s; stream stopped: {produced['sent']} "
        f"JSON lines sent, {produced['raw_produced']} raw payloads")
    run_info = {
        "seed": seed, "profile": profile, "duration_s": duration, "faults_min": n_faults,
        "rate": rate, "startup_s": round(sysm.startup_s, 1), "fault_phase_s": round(fault_s, 1),
        "producer": produced, "aborted": aborted,
    }
    report = checker.check(sysm, stream, records, run_info)
    report["runtime_s"] = round(time.monotonic() - t_start, 1)
    checker.print_report(report)
    if report_path:
        Path(report_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        say(f"report written to {report_path}")
    return report


def main():
    ap = argparse.ArgumentParser(description="cardwatch chaos suite (seeded faults, "
                                 "independent checker)")
    ap.add_argument("--build", default="build", help="build directory (default: build)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the stream and the fault plan (default: from the clock)")
    ap.add_argument("--duration", type=float, default=600.0,
                    help="seconds of faults (default 600)")
    ap.add_argument("--faults", type=int, default=0,
                    help="inject at least this many faults (the run goes on past --duration)")
    ap.add_argument("--profile", choices=sorted(fl.PROFILES), default="long",
                    help="fault mix and durations (default long; short: the make test run)")
    ap.add_argument("--rate", type=int, default=RATE, help=f"events/s (default {RATE})")
    ap.add_argument("--report", default=None, help="write the report as JSON to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int(time.time() * 1000) % 1_000_000_000
    h.configure(build=a.build)
    # a directory of its own (not cardwatch-e2e-*: a sweep of old test
    # directories must not remove a soak's files while it runs)
    h.config.root = Path(tempfile.mkdtemp(prefix="cardwatch-chaos-"))
    h.begin_test(f"chaos-{seed}")
    ok = False

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    try:
        report = run(seed, a.duration, a.faults, a.profile, a.report, a.rate)
        ok = report["pass"]
    finally:
        h.cleanup_processes()
        root = h.config.root
        if root is not None:
            if ok and not a.keep:
                shutil.rmtree(root, ignore_errors=True)
            else:
                say(f"logs and temporary files kept in {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
