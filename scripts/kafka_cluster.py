#!/usr/bin/env python3
"""Apache Kafka for the local stack, the tests and the benchmarks: KRaft
nodes (combined broker + controller) on free loopback ports, started from
the jars that scripts/kafka/pom.xml pins, fetched once from Maven Central.

As a program (scripts/stack.sh uses it; the brokers outlive it):

    kafka_cluster.py fetch                   jars into the cache, once
    kafka_cluster.py up DIR [--nodes N] [--topic NAME:PARTITIONS]...
    kafka_cluster.py down DIR                SIGTERM (controlled shutdown),
                                             bounded wait, then SIGKILL
    kafka_cluster.py status DIR

`up` writes DIR/kafka.bootstraps (one line, host:port,...), one
DIR/kafka-<node>.pid per node, DIR/node-<id>/server.log (the broker's own
log) and creates the topics with build/kafka_admin (BUILD or
KAFKA_ADMIN name it). Topics are never auto-created
(auto.create.topics.enable=false, as in production).

As a module (tests/e2e/harness.py): Cluster(dir, nodes=1, spawn=...)
with .start(), .bootstraps, .stop_node(), .start_node(), .pause_node(),
.metadata(), .leader(), .controller(), .stop().

Environment: CARDWATCH_CACHE (default $XDG_CACHE_HOME/cardwatch or
~/.cache/cardwatch) holds the jars; JAVA_HOME picks the JDK (17 or newer);
KAFKA_HEAP (default 1g) the broker heap. KAFKA_JVM_OPTS (default none):
more options for the brokers' JVM (the tests' harness passes its own).
"""

import argparse
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POM = REPO / "scripts" / "kafka" / "pom.xml"
HOST = "127.0.0.1"

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<!-- written by scripts/kafka_cluster.py: the broker's log to one file -->
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="${sys:kafka.logs.dir}/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="warn"/>
    <Logger name="kafka.log" level="warn"/>
    <Root level="info"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class KafkaError(RuntimeError):
    """The broker could not be fetched, formatted or started."""


def kafka_version():
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not m:
        raise KafkaError(f"{POM}: no <kafka.version>")
    return m.group(1).strip()


def cache_root():
    env = os.environ.get("CARDWATCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cardwatch"


def home():
    """Cache directory of the pinned release (changes when the POM does)."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:10]
    return cache_root() / f"kafka-{kafka_version()}-{digest}"


def _say(msg):
    print(f"kafka: {msg}", file=sys.stderr, flush=True)


def _lock(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def fetch(quiet=False):
    """The directory of the broker's jars, fetching them first if needed
    (once per POM; concurrent callers wait for one fetch)."""
    lib = home() / "lib"
    if (lib / ".complete").exists():
        return lib
    with _lock(home().parent / ".kafka-fetch.lock"):
        if (lib / ".complete").exists():
            return lib
        if shutil.which("mvn") is None:
            raise KafkaError("Apache Maven (mvn) is needed to fetch Apache Kafka; "
                             "scripts/install-deps.sh installs it")
        _say(f"fetching Apache Kafka {kafka_version()} (about 45 MB of jars) from Maven "
             f"Central into {lib}; this happens once")
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix="lib.", dir=home().parent))
        try:
            res = subprocess.run(
                ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if res.returncode != 0:
                raise KafkaError("mvn could not fetch Apache Kafka:\n"
                                 + "\n".join(res.stdout.splitlines()[-15:]))
            jars = list(tmp.glob("*.jar"))
            if not any(j.name.startswith("kafka_2.13-") for j in jars):
                raise KafkaError(f"mvn fetched no kafka_2.13 jar into {tmp}")
            (tmp / ".complete").write_text(kafka_version() + "\n")
            home().mkdir(parents=True, exist_ok=True)
            if lib.exists():
                shutil.rmtree(lib)
            os.rename(tmp, lib)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        size = sum(j.stat().st_size for j in lib.glob("*.jar"))
        _say(f"fetched {len(jars)} jars, {size / 1e6:.0f} MB, in "
             f"{time.monotonic() - t0:.0f} s")
    return lib


def _java_version(exe):
    out = subprocess.run([str(exe), "-version"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True).stdout
    m = re.search(r'version "(\d+)', out)
    return int(m.group(1)) if m else 0


_JAVA = None


def java():
    """(path, major version) of the java that runs the brokers (found
    once per process): KAFKA_JAVA
    if set; else the newest JDK 25+ under /usr/lib/jvm (its ahead-of-time
    cache starts a broker in ~2.1 s instead of ~3.2 s here); else
    JAVA_HOME's or the one on PATH, which must be 17 or newer."""
    global _JAVA
    if _JAVA is not None:
        return _JAVA
    env = os.environ.get("KAFKA_JAVA")
    if env:
        cands = [Path(env)]
    else:
        cands = sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)
        jh = os.environ.get("JAVA_HOME")
        cands.append(Path(jh) / "bin" / "java" if jh else shutil.which("java"))
    best = None
    for exe in cands:
        if not exe or not os.access(exe, os.X_OK):
            continue
        v = _java_version(exe)
        if env or v >= 25:
            best = (str(exe), v)
            break
        if v >= 17 and best is None:
            best = (str(exe), v)
    if best is None or best[1] < 17:
        raise KafkaError("Apache Kafka 4 needs Java 17 or newer and none was found "
                         "(set KAFKA_JAVA or JAVA_HOME, or STACK_KAFKA=embedded for the "
                         "mock broker)")
    _JAVA = best
    return best


_PORTS_GIVEN = set()     # ports this process handed out (never twice)
_PORT_LOCKS = []         # lock files held until this process exits


def _ephemeral_range():
    """The kernel's range for the local port of outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host=HOST):
    """A TCP port on host for a server to listen on later.

    A port the kernel picks (bind to 0) comes from the ephemeral range, so
    between this call and the server's bind any outgoing connection of any
    process (a broker's, a client's) can take it: a test then fails with
    "address in use" for no fault of the code under test. This picks a port
    outside that range instead, that nothing listens on or holds now, that
    this process has not handed out before, and that no other process using
    this function holds (a lock on $TMPDIR/cardwatch-ports/PORT, kept until
    this process exits). Raises KafkaError when no such port is found."""
    lo, hi = _ephemeral_range()
    spans = [(a, b) for a, b in ((10000, lo - 1), (hi + 1, 65535)) if b - a > 1000]
    if not spans:
        spans = [(1024, 65535)]
    lock_dir = Path(tempfile.gettempdir()) / "cardwatch-ports"
    lock_dir.mkdir(mode=0o1777, exist_ok=True)
    rng = random.SystemRandom()
    for _ in range(500):
        a, b = rng.choice(spans)
        port = rng.randint(a, b)
        if port in _PORTS_GIVEN:
            continue
        fd = os.open(lock_dir / str(port), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, port))  # no SO_REUSEADDR: TIME_WAIT counts as taken
        except OSError:
            os.close(fd)
            continue
        _PORTS_GIVEN.add(port)
        _PORT_LOCKS.append(fd)
        return port
    raise KafkaError(f"no free TCP port found on {host} outside the ephemeral range {lo}-{hi}")


def _props_text(props):
    return "".join(f"{k}={v}\n" for k, v in props.items())


class _Popen:
    """The default spawn: a detached process (own session) writing to log."""

    def __init__(self, args, name, log, env=None):
        with open(log, "ab") as f:
            self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                      env=env, start_new_session=True)
        self.name = name
        self.log = str(log)

    @property
    def pid(self):
        return self.p.pid

    @property
    def alive(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout=None):
        return self.p.wait(timeout)


def _default_spawn(args, name, log, env=None):
    return _Popen(args, name, log, env)


class Node:
    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.id = node_id
        self.dir = cluster.dir / f"node-{node_id}"
        self.port = free_port()
        self.controller_port = free_port()
        self.sasl_port = free_port() if cluster.sasl else None
        self.proc = None

    @property
    def address(self):
        return f"{HOST}:{self.port}"

    @property
    def log(self):
        return self.dir / "server.log"

    @property
    def alive(self):
        return self.proc is not None and self.proc.alive


class Cluster:
    """A KRaft cluster of `nodes` combined broker+controller nodes.

    props: extra broker properties (all nodes). sasl: None, or a dict
    {"keystore": PEM file with the broker's key and certificate chain,
    "ca": PEM file of the CA, "users": {name: password}}: each node then
    also listens SASL_SSL on .sasl_bootstraps (clients) with the users
    for PLAIN (in the broker's JAAS config) and SCRAM-SHA-512 (added by
    `kafka-storage format --add-scram`), while PLAINTEXT (.bootstraps)
    stays for the brokers themselves and the test tools. spawn(args, name, log) ->
    process object (.pid, .alive, .wait(t), .send_signal(sig)); the
    default detaches the process. jvm_opts: more JVM options (default:
    KAFKA_JVM_OPTS split on spaces)."""

    def __init__(self, dir, nodes=1, props=None, sasl=None, spawn=None, heap=None,
                 jvm_opts=None):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sasl = sasl
        self.extra = dict(props or {})
        self.spawn = spawn or _default_spawn
        self.heap = heap or os.environ.get("KAFKA_HEAP", "1g")
        self.jvm_opts = list(jvm_opts) if jvm_opts is not None else \
            os.environ.get("KAFKA_JVM_OPTS", "").split()
        self.nodes = [Node(self, i) for i in range(1, nodes + 1)]
        self.lib = None
        self.java = None
        self.aot = None
        self.started_s = None

    # ---- addresses -----------------------------------------------------
    @property
    def bootstraps(self):
        return ",".join(n.address for n in self.nodes)

    @property
    def sasl_bootstraps(self):
        return ",".join(f"{HOST}:{n.sasl_port}" for n in self.nodes)

    def node(self, node_id):
        return self.nodes[node_id - 1]

    # ---- configuration -------------------------------------------------
    def _props(self, n):
        k = len(self.nodes)
        rf = min(3, k)
        isr = 2 if k >= 3 else 1
        listeners = [f"PLAINTEXT://{HOST}:{n.port}", f"CONTROLLER://{HOST}:{n.controller_port}"]
        adv = [f"PLAINTEXT://{HOST}:{n.port}"]
        proto = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        p = {
            "process.roles": "broker,controller",
            "node.id": n.id,
            "controller.quorum.voters": ",".join(f"{m.id}@{HOST}:{m.controller_port}"
                                                 for m in self.nodes),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": n.dir / "data",
            # production has auto-creation off: so do we
            "auto.create.topics.enable": "false",
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "transaction.state.log.num.partitions": 4,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            # a group's first join is not held back 3 s for more members
            "group.initial.rebalance.delay.ms": 0,
            # a dead broker is fenced (its partitions move) within ~3 s
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 3000,
            "controlled.shutdown.enable": "true",
            # the demo, tests and benchmarks write historical event times as
            # message timestamps: time-based retention would delete them
            # within minutes (the 5-minute retention check)
            "log.retention.ms": -1,
        }
        if self.sasl:
            # SASL over TLS for clients: PLAIN (users in the broker's JAAS
            # config) and SCRAM-SHA-512 (users in the cluster metadata,
            # added by `kafka-storage format --add-scram`)
            listeners.append(f"SASL_SSL://{HOST}:{n.sasl_port}")
            adv.append(f"SASL_SSL://{HOST}:{n.sasl_port}")
            proto.append("SASL_SSL:SASL_SSL")
            plain_users = " ".join(f'user_{u}="{pw}"' for u, pw in self.sasl["users"].items())
            p.update({
                "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
                "listener.name.sasl_ssl.plain.sasl.jaas.config":
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f"{plain_users};",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": self.sasl["keystore"],
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": self.sasl["ca"],
                "ssl.client.auth": "none",
            })
        p["listeners"] = ",".join(listeners)
        p["advertised.listeners"] = ",".join(adv)
        p["listener.security.protocol.map"] = ",".join(proto)
        p.update(self.extra)
        return p

    def _write_config(self, n):
        n.dir.mkdir(parents=True, exist_ok=True)
        (n.dir / "server.properties").write_text(
            "# written by scripts/kafka_cluster.py\n" + _props_text(self._props(n)))
        (n.dir / "log4j2.xml").write_text(LOG4J2)

    def _jvm(self, confdir, main, *args, heap=None, aot=()):
        """java ... main args, logging to confdir/server.log."""
        heap = heap or self.heap
        return [self.java, *aot, *self.jvm_opts, f"-Xmx{heap}", "-Xms128m", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={confdir / 'log4j2.xml'}",
                f"-Dkafka.logs.dir={confdir}",
                "-cp", f"{self.lib}/*", main, *args]

    def _format(self):
        """Format every node's log directory. Plain clusters copy a
        template formatted once per node id (the format step is a JVM start
        of ~2 s); SASL clusters format for real, adding the SCRAM users."""
        if self.sasl:
            cid = _kafka_uuid()
            for n in self.nodes:
                args = ["format", "-t", cid, "-c", str(n.dir / "server.properties")]
                for user, pw in self.sasl["users"].items():
                    args += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={pw}]"]
                self._storage_tool(*args, confdir=n.dir)
            return
        cid = _kafka_uuid()
        for n in self.nodes:
            tmpl = self._template(n.id)
            data = n.dir / "data"
            if data.exists():
                shutil.rmtree(data)
            shutil.copytree(tmpl, data)
            # one cluster id for the cluster's nodes, its own id for every
            # log directory (as `kafka-storage format` would write them)
            meta = data / "meta.properties"
            text = re.sub(r"(?m)^directory\.id=.*$", f"directory.id={_kafka_uuid()}",
                          meta.read_text())
            text = re.sub(r"(?m)^cluster\.id=.*$", f"cluster.id={cid}", text)
            meta.write_text(text)

    def _template(self, node_id):
        tdir = home() / "template" / f"node-{node_id}"
        if (tdir / "meta.properties").exists():
            return tdir
        with _lock(home() / ".template.lock"):
            if (tdir / "meta.properties").exists():
                return tdir
            work = Path(tempfile.mkdtemp(prefix="fmt.", dir=home()))
            try:
                # a one-voter static quorum: format records no voters, so the
                # template fits any ports and any cluster size
                props = {"process.roles": "broker,controller", "node.id": node_id,
                         "controller.quorum.voters": f"{node_id}@{HOST}:2",
                         "controller.listener.names": "CONTROLLER",
                         "listeners": f"PLAINTEXT://{HOST}:1,CONTROLLER://{HOST}:2",
                         "log.dirs": work / "data"}
                (work / "server.properties").write_text(_props_text(props))
                (work / "log4j2.xml").write_text(LOG4J2)
                self._storage_tool("format", "-t", _kafka_uuid(),
                                   "-c", str(work / "server.properties"), confdir=work)
                tdir.parent.mkdir(parents=True, exist_ok=True)
                os.rename(work / "data", tdir)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return tdir

    def _storage_tool(self, *args, confdir):
        res = subprocess.run(self._jvm(confdir, "kafka.tools.StorageTool", *args, heap="256m"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if res.returncode != 0:
            raise KafkaError(f"kafka-storage {args[0]} failed:\n{res.stdout[-2000:]}")
        return res.stdout

    # ---- processes -----------------------------------------------------
    def start(self, timeout=90.0):
        """Fetch if needed, format, start every node, wait until all of
        them are in the cluster's metadata. Raises KafkaError."""
        t0 = time.monotonic()
        self.lib = fetch()
        self.java, version = java()
        self.aot = _aot_cache(self, version)
        for n in self.nodes:
            self._write_config(n)
        self._format()
        for n in self.nodes:
            self._spawn(n)
        self.wait_ready(timeout)
        self.started_s = time.monotonic() - t0
        return self

    def _spawn(self, n):
        # a fresh server.log per start makes "the log of this run" easy to read
        aot = [f"-XX:AOTCache={self.aot}"] if self.aot else []
        n.proc = self.spawn(self._jvm(n.dir, "kafka.Kafka", str(n.dir / "server.properties"),
                                      aot=aot),
                            f"kafka-{n.id}", n.dir / "java.out")

    def start_node(self, node_id, timeout=60.0):
        """Start a stopped node again (same ports, same data)."""
        n = self.node(node_id)
        if n.alive:
            return
        self._spawn(n)
        self.wait_ready(timeout)

    def stop_node(self, node_id, kill=False, timeout=60.0):
        """SIGTERM (controlled shutdown: leadership moves first) and wait,
        or kill=True: SIGKILL (a crash). Returns the exit status."""
        n = self.node(node_id)
        if n.proc is None:
            return None
        if n.alive:
            n.proc.send_signal(signal.SIGCONT)
            n.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                n.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                n.proc.send_signal(signal.SIGKILL)
                n.proc.wait(10)
        return n.proc.wait(0)

    def pause_node(self, node_id):
        self.node(node_id).proc.send_signal(signal.SIGSTOP)

    def resume_node(self, node_id):
        self.node(node_id).proc.send_signal(signal.SIGCONT)

    def stop(self, kill=False, timeout=60.0):
        for n in self.nodes:
            self.stop_node(n.id, kill=kill, timeout=timeout)

    def wait_ready(self, timeout=60.0, nodes=None):
        """Until the live nodes (or `nodes`, ids) are all registered
        brokers of the cluster as seen through each of them."""
        want = set(nodes or [n.id for n in self.nodes if n.alive])
        deadline = time.monotonic() + timeout
        last = None
        while True:
            for n in self.nodes:
                if n.proc is not None and not n.alive:
                    if n.id in want:
                        raise KafkaError(f"Kafka node {n.id} exited "
                                         f"({n.proc.wait(0)}); {n.log}:\n"
                                         + _tail(n.log, 15) + _tail(n.dir / "java.out", 5))
            try:
                seen = [set(b["id"] for b in self.metadata(via=i)["brokers"]) for i in want]
                if all(s >= want for s in seen):
                    return
                last = f"brokers seen {seen}"
            except (OSError, ValueError, KafkaError) as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise KafkaError(f"Kafka nodes {sorted(want)} not ready within {timeout:g} s "
                                 f"({last})")
            time.sleep(0.1)

    # ---- metadata ------------------------------------------------------
    def metadata(self, topic=None, via=None):
        """kcat -L -J through node `via` (default: any live one)."""
        nodes = [self.node(via)] if via else [n for n in self.nodes if n.alive] or self.nodes
        args = ["kcat", "-L", "-J", "-m", "3", "-b", ",".join(n.address for n in nodes)]
        if topic:
            args += ["-t", topic]
        res = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=20)
        if res.returncode != 0:
            raise KafkaError(res.stderr.decode(errors="replace").strip()[-300:])
        return json.loads(res.stdout)

    def controller(self):
        return self.metadata()["controllerid"]

    def leader(self, topic, partition):
        for t in self.metadata(topic)["topics"]:
            for p in t["partitions"]:
                if p["partition"] == partition:
                    return p["leader"]
        raise KafkaError(f"no partition {topic}/{partition}")

    def isr(self, topic):
        """{partition: [isr node ids]}"""
        out = {}
        for t in self.metadata(topic)["topics"]:
            for p in t["partitions"]:
                out[p["partition"]] = sorted(r["id"] for r in p.get("isrs", []))
        return out


def _aot_cache(cluster, version):
    """The JVM's ahead-of-time cache for a broker's start (JDK 25+; None
    before): classes loaded and linked once, recorded by starting and
    stopping one training broker the first time (~10 s, once per JDK and
    release). A stale cache is ignored by the JVM, never an error."""
    if version < 25 or os.environ.get("KAFKA_AOT", "1") == "0":
        return None
    # the cache holds compiled code too: one per java and JVM options
    key = " ".join([cluster.java, *cluster.jvm_opts])
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    path = home() / "aot" / f"jdk{version}-{digest}.aot"
    if path.exists():
        return path
    with _lock(home() / ".aot.lock"):
        if path.exists():
            return path
        _say(f"recording a JVM start-up cache for the broker ({path.name}; once, ~10 s)")
        work = Path(tempfile.mkdtemp(prefix="aot.", dir=home()))
        try:
            trainer = Cluster(work, nodes=1, heap=cluster.heap, jvm_opts=cluster.jvm_opts)
            trainer.lib, trainer.java, trainer.aot = cluster.lib, cluster.java, None
            n = trainer.nodes[0]
            trainer._write_config(n)
            trainer._format()
            tmp = work / "cache.aot"
            n.proc = _default_spawn(trainer._jvm(n.dir, "kafka.Kafka",
                                                 str(n.dir / "server.properties"),
                                                 aot=[f"-XX:AOTCacheOutput={tmp}"]),
                                    "kafka-aot", n.dir / "java.out")
            try:
                trainer.wait_ready(90)
                trainer.stop(timeout=120)   # the cache is written at exit
            finally:
                trainer.stop(kill=True)
            if tmp.exists() and tmp.stat().st_size > 0:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, path)
            else:
                _say("the JVM wrote no start-up cache; brokers start without one")
                return None
        except KafkaError as e:
            _say(f"no start-up cache ({e}); brokers start without one")
            return None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return path


def _kafka_uuid():
    """A Kafka Uuid string (base64url of 16 random bytes). Like Kafka's own
    Uuid.randomUuid(), never one that starts with '-': `kafka-storage
    format -t -xyz...` takes it for an option (1 format in 64 failed)."""
    import base64
    while True:
        u = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not u.startswith("-"):
            return u


def _tail(path, n):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:]) + "\n"
    except OSError:
        return ""


# --------------------------------------------------------------------------
# the program (scripts/stack.sh)

def _admin():
    env = os.environ.get("KAFKA_ADMIN")
    if env:
        return env
    build = Path(os.environ.get("BUILD", "build"))
    if not build.is_absolute():
        build = REPO / build
    return str(build / "kafka_admin")


def create_topics(bootstraps, topics, configs=(), timeout=30):
    """topics: ["name:partitions[:rf]", ...] through tools/kafka_admin."""
    if not topics:
        return
    args = [_admin(), "--brokers", bootstraps, "--timeout", str(timeout), "create", *topics]
    for c in configs:
        args += ["--config", c]
    res = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise KafkaError(f"creating topics {' '.join(topics)}: {res.stderr.strip()}")


def _pid_alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pids(dir):
    out = {}
    for f in sorted(Path(dir).glob("kafka-*.pid")):
        try:
            pid = int(f.read_text().strip())
        except ValueError:
            continue
        cmd = Path(f"/proc/{pid}/cmdline")
        try:
            if _pid_alive(pid) and b"kafka.Kafka" in cmd.read_bytes():
                out[f] = pid
                continue
        except OSError:
            pass
        out[f] = None
    return out


def cmd_up(a):
    dir = Path(a.dir).resolve()
    live = {f: p for f, p in _pids(dir).items() if p}
    if live and (dir / "kafka.bootstraps").exists():
        print((dir / "kafka.bootstraps").read_text().strip())
        return 0
    cmd_down(a, quiet=True)
    for sub in dir.glob("node-*"):
        shutil.rmtree(sub, ignore_errors=True)
    (dir / "kafka.bootstraps").unlink(missing_ok=True)
    c = Cluster(dir, nodes=a.nodes)
    for attempt in (1, 2, 3):
        try:
            c.start(timeout=a.timeout)
            break
        except KafkaError as e:
            taken = any("Address already in use" in _tail(n.log, 200) +
                        _tail(n.dir / "java.out", 50) for n in c.nodes)
            c.stop(kill=True)
            if not taken or attempt == 3:
                raise
            _say(f"a port was taken ({e}); retrying on new ports")
            c = Cluster(dir, nodes=a.nodes)
    for n in c.nodes:
        (dir / f"kafka-{n.id}.pid").write_text(f"{n.proc.pid}\n")
    try:
        create_topics(c.bootstraps, a.topic)
    except KafkaError:
        c.stop(kill=True)
        raise
    tmp = dir / "kafka.bootstraps.tmp"
    tmp.write_text(c.bootstraps + "\n")
    os.rename(tmp, dir / "kafka.bootstraps")
    _say(f"Apache Kafka {kafka_version()}, {a.nodes} node(s) at {c.bootstraps}, "
         f"up in {c.started_s:.1f} s; logs in {dir}/node-*/server.log")
    print(c.bootstraps)
    return 0


def cmd_down(a, quiet=False):
    dir = Path(a.dir).resolve()
    pids = _pids(dir)
    for f, pid in pids.items():
        if pid:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + a.timeout
    for f, pid in pids.items():
        while pid and _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and _pid_alive(pid):
            _say(f"node pid {pid} did not stop within {a.timeout:g} s, killing it")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        f.unlink(missing_ok=True)
        if pid and not quiet:
            _say(f"stopped Apache Kafka node (pid {pid})")
    (dir / "kafka.bootstraps").unlink(missing_ok=True)
    return 0


def cmd_status(a):
    pids = _pids(Path(a.dir).resolve())
    for f, pid in pids.items():
        print(f"{f.stem}: {'up (pid %d)' % pid if pid else 'down'}")
    return 0 if pids and all(pids.values()) else 3


def main():
    ap = argparse.ArgumentParser(description="Apache Kafka (KRaft) on loopback for cardwatch")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="fetch the pinned release's jars (once)")
    up = sub.add_parser("up", help="start a cluster in DIR and create topics")
    up.add_argument("dir")
    up.add_argument("--nodes", type=int, default=1, choices=range(1, 10))
    up.add_argument("--topic", action="append", default=[], metavar="NAME:PARTITIONS[:RF]")
    up.add_argument("--timeout", type=float, default=90.0)
    down = sub.add_parser("down", help="stop the cluster in DIR")
    down.add_argument("dir")
    down.add_argument("--timeout", type=float, default=30.0)
    st = sub.add_parser("status", help="exit 0 if every node in DIR runs")
    st.add_argument("dir")
    a = ap.parse_args()
    try:
        if a.cmd == "fetch":
            print(fetch())
            return 0
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status}[a.cmd](a)
    except KafkaError as e:
        _say(str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
