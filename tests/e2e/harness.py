"""End-to-end test harness for cardwatch (Python 3 standard library only).

What it offers
  free_port()                     a free TCP port on 127.0.0.1
  Redis                           redis-server on a free loopback port; .cli(),
                                  .call() (RESP, binary-safe), .stop(), .start(),
                                  .restart(), .dump() (every key and value),
                                  context manager; optional ACL users /
                                  requirepass, TLS (mutual too), replicaof
  make_tls()                      throw-away CA, server/client certs, other CA
  RedisHA                         master + replica + 3 sentinels; .master(),
                                  .kill_master(), .wait_failover(), .restart()
  Kafka                           build/embedded_kafka (librdkafka mock cluster);
                                  .bootstraps, .stop(), .pause()/.resume()
  produce(), consume()            binary-safe, through tools/produce_file and
                                  tools/consume_all (length-delimited framing)
  topic_partitions()              partition count of a topic (kcat -L -J)
  spawn(), run_tool()             start processes in their own process group;
                                  everything started is killed at the end
  wait_until()                    poll a predicate with a deadline
  http_get(), scrape(), Metrics   plain HTTP GET (any status) and Prometheus
                                  text parsing for /healthz /readyz /metrics
  luhn_scan()                     13-19 digit Luhn-valid numbers in a blob
  text_card_numbers()             the same in logs, random hex ids set aside
  pb_decode(), ProtoSchema        protobuf wire decoding, independent of the C code

The test runner (run.py) calls configure(), begin_test() and
cleanup_processes(); tests only use the functions and classes.
Programs under test: spawn([tool("cardwatch"), ...]) for the --build
flavour, tool("cardwatch", config.asan_build) for the ASan+UBSan one.
Facts about the embedded Kafka that tests must respect: unknown topics are
auto-created (4 partitions) by producers, metadata requests and consumers
alike; each partition keeps only ~5 MiB (older messages are evicted, which
is not a loss); ports change on every start.
"""

import atexit
import collections
import ctypes
import json
import os
import queue
import re
import signal
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import kafka_cluster  # noqa: E402  (Apache Kafka, and the port picker)


class HarnessError(RuntimeError):
    """The environment is not usable (tool missing, process died at start)."""


class Skip(Exception):
    """Raise in a test to skip it: raise Skip("reason")."""


# --------------------------------------------------------------------------
# configuration and temporary directories

class _Config:
    def __init__(self):
        self.build = Path(os.environ.get("CARDWATCH_BUILD", REPO / "build")).resolve()
        self.asan_build = Path(os.environ.get("CARDWATCH_ASAN_BUILD",
                                              REPO / "build" / "asan")).resolve()
        self.root = None          # session temp dir, created on first use
        self.test_name = None     # current test, set by begin_test()
        self.test_dir = None


config = _Config()


def configure(build=None, asan_build=None):
    if build:
        config.build = Path(build).resolve()
    if asan_build:
        config.asan_build = Path(asan_build).resolve()


def session_dir():
    if config.root is None:
        config.root = Path(tempfile.mkdtemp(prefix="cardwatch-e2e-"))
    return config.root


def begin_test(name):
    config.test_name = name
    config.test_dir = None


def tmpdir(prefix="tmp"):
    """A fresh directory under the current test's directory (kept when a test
    fails; run.py removes the whole session directory after a clean run)."""
    if config.test_dir is None:
        base = session_dir() / (config.test_name or "adhoc")
        base.mkdir(parents=True, exist_ok=True)
        config.test_dir = base
    return Path(tempfile.mkdtemp(prefix=prefix + "-", dir=config.test_dir))


def tool(name, build=None):
    """Path of a built program (tools/NAME.c -> BUILD/NAME)."""
    path = Path(build or config.build) / name
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is missing: build it with `make {path}` (or by hand: "
                           f"cc -std=gnu11 -O2 tools/{name}.c -lrdkafka -o {path})")
    return str(path)


# --------------------------------------------------------------------------
# processes

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _child_setup():
    # Runs in the child between fork and exec: die with the harness even if
    # the harness itself is SIGKILLed (no atexit then).
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_procs = []


class Proc:
    """A process started by spawn(): own process group, output in a log file."""

    def __init__(self, popen, name, log):
        self.popen = popen
        self.name = name
        self.log = log
        self.test = config.test_name

    @property
    def pid(self):
        return self.popen.pid

    @property
    def returncode(self):
        return self.popen.poll()

    @property
    def alive(self):
        return self.popen.poll() is None

    def send_signal(self, sig, group=True):
        try:
            if group:
                os.killpg(self.popen.pid, sig)
            else:
                self.popen.send_signal(sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout=None):
        return self.popen.wait(timeout)

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        """Signal the process group, wait up to timeout, then SIGKILL.
        Returns the exit status (negative = killed by that signal)."""
        if self.alive:
            self.send_signal(signal.SIGCONT)  # a paused process cannot handle TERM
            self.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.popen.wait(10)
        # leftovers of the group (children that outlived the leader)
        self.send_signal(signal.SIGKILL)
        return self.popen.returncode

    def kill(self):
        return self.stop(timeout=0.1, sig=signal.SIGKILL)

    def log_text(self, tail_lines=None):
        try:
            text = Path(self.log).read_text(errors="replace")
        except OSError:
            return ""
        if tail_lines:
            text = "\n".join(text.splitlines()[-tail_lines:])
        return text

    def __repr__(self):
        return f"<Proc {self.name} pid={self.pid} rc={self.returncode} log={self.log}>"


def spawn(args, name=None, log=None, env=None, cwd=None, stdin=subprocess.DEVNULL,
          stdout=None, extra_env=None):
    """Start args in the background in its own process group; stdout and
    stderr go to `log` (default: a file in the test directory). Registered
    for cleanup_processes()."""
    args = [str(a) for a in args]
    name = name or Path(args[0]).name
    if log is None:
        log = tmpdir("log") / f"{name}.log"
    if extra_env:
        env = dict(env or os.environ, **extra_env)
    with open(log, "ab") as logf:
        p = subprocess.Popen(args, stdin=stdin, stdout=stdout or logf, stderr=logf, env=env,
                             cwd=cwd, start_new_session=True, preexec_fn=_child_setup)
    proc = Proc(p, name, str(log))
    _procs.append(proc)
    return proc


def processes(test=None):
    """Processes started (during `test`, default: all)."""
    return [p for p in _procs if test is None or p.test == test]


def cleanup_processes():
    """Stop every process spawn() started that is still running (and give
    back the spare brokers the test took but never started)."""
    _spares.end_test()
    while _procs:
        p = _procs.pop()
        try:
            p.stop(timeout=5)
        except Exception:  # keep cleaning up the others
            pass


atexit.register(cleanup_processes)


def run_tool(args, input=None, timeout=60, check=True):
    """Run a short-lived program to completion (own process group, killed on
    timeout). Returns CompletedProcess with bytes stdout/stderr."""
    args = [str(a) for a in args]
    p = subprocess.Popen(args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, preexec_fn=_child_setup)
    try:
        out, err = p.communicate(input, timeout=timeout)
    except BaseException:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        raise
    res = subprocess.CompletedProcess(args, p.returncode, out, err)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}: "
                             f"{err.decode(errors='replace').strip()}")
    return res


# --------------------------------------------------------------------------
# small utilities

def free_port():
    """A TCP port on 127.0.0.1 for a server to listen on: free now, outside
    the kernel's ephemeral range and never handed out twice (see
    kafka_cluster.free_port, the one implementation)."""
    return kafka_cluster.free_port()


def ipv6_loopback():
    """True when ::1 can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(predicate, timeout=10.0, what="condition", interval=0.02):
    """Poll predicate() until it returns something truthy and return that.
    Exceptions from the predicate count as "not yet". On timeout raise
    AssertionError naming `what` (and the last exception)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


def http_get(url, timeout=5.0):
    """GET url; returns (status, body str) whatever the status (a 503 is an
    answer, not an error). Raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode("utf-8", "replace")


_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


class Metrics:
    """Samples of a Prometheus text exposition (format 0.0.4).

        m = scrape("http://127.0.0.1:9180/metrics")
        m.get("cardwatch_redis_up")                        -> 1.0 (None if absent)
        m.get("cardwatch_events_total", outcome="clean")   -> exact label match
        m.sum("cardwatch_events_total")                    -> over all label sets
        m.by("cardwatch_dead_letters_total", "reason")     -> {"luhn": 2.0, ...}
    """

    def __init__(self, text):
        self.text = text
        self.samples = []  # (name, {label: value}, float)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise ValueError(f"not a metrics sample: {line!r}")
            name, labels_text, value = m.groups()
            labels = {}
            if labels_text:
                for lm in _LABEL.finditer(labels_text):
                    labels[lm.group(1)] = re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(
                        x.group(1), x.group(1)), lm.group(2))
            self.samples.append((name, labels, float(value)))

    def get(self, name, default=None, **labels):
        """The sample whose label set is exactly `labels`."""
        for n, lb, v in self.samples:
            if n == name and lb == labels:
                return v
        return default

    def sum(self, name, **labels):
        """Sum over the samples of `name` whose labels include `labels`."""
        return sum(v for n, lb, v in self.samples
                   if n == name and all(lb.get(k) == x for k, x in labels.items()))

    def by(self, name, label):
        """{value of `label`: sample value} for the samples of `name`."""
        return {lb.get(label): v for n, lb, v in self.samples if n == name}

    def __repr__(self):
        return f"<Metrics {len(self.samples)} samples>"


def scrape(url, timeout=5.0):
    """GET a /metrics URL and parse it; AssertionError unless it answers 200."""
    status, body = http_get(url, timeout)
    if status != 200:
        raise AssertionError(f"GET {url}: HTTP {status}: {body.strip()}")
    return Metrics(body)


def luhn_valid(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_DIGIT_RUN = re.compile(rb"[0-9]+")


def blob(*parts, sep=b"\n"):
    """Flatten bytes/str/int/None and nested lists, tuples and dicts (keys
    and values) into one bytes blob, `sep` between the leaves: lets one
    luhn_scan() look at a Redis dump, a list of Messages (key, value, header
    names and values) and log texts at once. Leaves are never joined, so a
    scan cannot find a number glued together from two of them."""
    out = []

    def walk(x):
        if x is None:
            return
        if isinstance(x, (bytes, bytearray, memoryview)):
            out.append(bytes(x))
        elif isinstance(x, str):
            out.append(x.encode("utf-8", "surrogateescape"))
        elif isinstance(x, (int, float)):
            out.append(str(x).encode())
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, Message):
            walk([x.key, x.value, x.headers])
        elif isinstance(x, (list, tuple, set, frozenset)):
            for v in x:
                walk(v)
        else:
            raise TypeError(f"blob: cannot flatten {type(x).__name__}")
    walk(list(parts))
    return sep.join(out)


def luhn_scan(data, min_len=13, max_len=19):
    """Every maximal run of ASCII digits in `data` (bytes or str) whose length
    is min_len..max_len and that passes the Luhn check, in order of
    appearance. Runs are bounded by any non-digit byte, so a PAN inside binary
    noise, JSON, protobuf or a log line is found; longer digit runs are not
    split. Caveat: a 13-digit epoch-millisecond timestamp is Luhn-valid one
    time in ten: pass min_len=14 when scanning data that holds timestamps."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    found = []
    for m in _DIGIT_RUN.finditer(data):
        run = m.group().decode()
        if min_len <= len(run) <= max_len and luhn_valid(run):
            found.append(run)
    return found



# A lowercase hex word of 16+ characters with at least one letter, standing
# alone (no letter or digit either side): a digest or a random id such as the
# exposed set's generation marker (32 hex from the CSPRNG), whose digit runs
# are Luhn-valid 14+ digit numbers about once in a hundred draws.
_HEX_WORD = re.compile(rb"(?<![0-9A-Za-z])[0-9a-f]{16,}(?![0-9A-Za-z])")


def text_card_numbers(data, min_len=14):
    """luhn_scan() of a log or command output with every stand-alone hex
    word (see _HEX_WORD) blanked first: card numbers are written as digits
    among non-hex-letters, so this keeps every real leak in view and drops
    the digit runs that random ids hold by chance. min_len=14 skips 13-digit
    epoch-millisecond timestamps (see luhn_scan)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    blanked = _HEX_WORD.sub(
        lambda m: b" " if re.search(rb"[a-f]", m.group()) else m.group(), data)
    return luhn_scan(blanked, min_len=min_len)


# --------------------------------------------------------------------------
# Redis

import secrets  # noqa: E402
import ssl  # noqa: E402


class RespError(Exception):
    """An error reply (-ERR ...) from Redis."""


class RespConnection:
    """A minimal blocking RESP2 client; binary-safe (arguments str/bytes/int).

    ssl_context: speak TLS (an ssl.SSLContext, e.g. TLSFiles.context());
    the certificate is checked against server_hostname (default: host).
    auth: (password,) or (user, password), sent as AUTH at once (a refusal
    raises RespError and closes the connection)."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, ssl_context=None,
                 server_hostname=None, auth=None):
        sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.rfile = sock.makefile("rb")
        if auth:
            try:
                self.call("AUTH", *auth)
            except BaseException:
                self.close()
                raise

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, (int, float)):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _read(self):
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by Redis")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("connection closed by Redis")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"bad RESP reply {line!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        r = self._read()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, commands):
        """Send many commands at once; returns the replies (errors as RespError
        objects, not raised)."""
        commands = list(commands)
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self._read() for _ in commands]

    def close(self):
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass


_TLS_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = cardwatch-e2e
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


class TLSFiles:
    """A throw-away PKI made by make_tls(); every attribute a PEM file path:
      ca, ca_key                 the CA Redis and the clients trust
      server_cert, server_key    signed by ca; SAN DNS:localhost, IP:127.0.0.1;
                                 serverAuth + clientAuth (Redis also uses it
                                 as client certificate towards its master)
      client_cert, client_key    signed by ca, CN=cardwatch-e2e-client (mutual TLS)
      other_ca, other_ca_key     an unrelated CA (verification must fail with it)
    Keys are mode 0600, EC P-256, valid 2 days."""

    NAMES = {"ca": "ca.crt", "ca_key": "ca.key",
             "server_cert": "server.crt", "server_key": "server.key",
             "client_cert": "client.crt", "client_key": "client.key",
             "other_ca": "other-ca.crt", "other_ca_key": "other-ca.key"}

    def __init__(self, dir):
        self.dir = Path(dir)
        for attr, fname in self.NAMES.items():
            setattr(self, attr, self.dir / fname)

    def complete(self):
        return all((self.dir / f).is_file() for f in self.NAMES.values())

    def context(self, ca=None, client_cert=False):
        """An ssl.SSLContext for a client: trusts `ca` (default self.ca),
        checks the host name; with client_cert presents the client cert."""
        ctx = ssl.create_default_context(cafile=str(ca or self.ca))
        if client_cert:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx

    def _make(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        cnf = self.dir / "openssl.cnf"
        cnf.write_text(_TLS_CNF)
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

        def openssl(*args):
            run_tool(["openssl", *map(str, args)], timeout=60)

        for crt, key, cn in ((self.ca, self.ca_key, "cardwatch-e2e-ca"),
                             (self.other_ca, self.other_ca_key, "unrelated-e2e-ca")):
            openssl("req", "-x509", "-config", cnf, "-extensions", "ca_ext", *newkey,
                    "-keyout", key, "-out", crt, "-days", 2, "-subj", f"/CN={cn}")
        for crt, key, cn, ext in ((self.server_cert, self.server_key, "localhost", "server_ext"),
                                  (self.client_cert, self.client_key, "cardwatch-e2e-client",
                                   "client_ext")):
            csr = self.dir / (crt.stem + ".csr")
            openssl("req", "-new", "-config", cnf, *newkey, "-keyout", key, "-out", csr,
                    "-subj", f"/CN={cn}")
            openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                    "-set_serial", secrets.randbits(63), "-days", 2,
                    "-extfile", cnf, "-extensions", ext, "-out", crt)
            csr.unlink()
        for attr in ("ca_key", "server_key", "client_key", "other_ca_key"):
            os.chmod(getattr(self, attr), 0o600)
        return self

    def __repr__(self):
        return f"<TLSFiles {self.dir}>"


_tls_made = {}


def make_tls(dir=None):
    """CA, server and client certificates for TLS tests (see TLSFiles), made
    with the openssl CLI. Default dir: one per test session, made once."""
    d = Path(dir) if dir else session_dir() / "tls"
    key = str(d.resolve())
    files = _tls_made.get(key)
    if files is None or not files.complete():
        files = TLSFiles(d)
        if not files.complete():
            files._make()
        _tls_made[key] = files
    return files


def _yes_no(v):
    if v is True:
        return "yes"
    if v is False or v is None:
        return "no"
    if v not in ("yes", "no", "optional"):
        raise ValueError(f"tls_auth_clients={v!r}: want yes, no or optional")
    return v


class Redis:
    """redis-server on 127.0.0.1:<free port>, no persistence unless asked,
    state and log in a temp dir.

        with Redis() as r:
            r.call("SET", "k", b"\\x00v")
            r.cli("GET", "k")
            r.restart()              # same port; data kept (SHUTDOWN SAVE)
            r.stop(); ...; r.start() # an outage

    Secured variants (the harness's own call()/cli()/ping()/dump() always
    authenticate and speak TLS as needed):
      users={"cw": ("pw", "~cw:* &cw:* +@all")}   ACL users in an aclfile,
          plus `admin` (random password, ~* &* +@all, what the harness uses;
          .admin_password) and `user default off`
      requirepass="pw"       the default user's password (not with users)
      tls=make_tls()         TLS only (--port 0, --tls-port = .port);
          tls_auth_clients="yes" demands a client certificate (mutual TLS)
      replicaof=(host, port) start as a replica; authenticates to the master
          with masteruser/masterauth (default: this node's own admin / the
          requirepass, so give master and replica the same credentials)
    """

    host = "127.0.0.1"

    def __init__(self, port=None, dir=None, extra_args=(), start=True, users=None,
                 requirepass=None, tls=None, tls_auth_clients="no", replicaof=None,
                 admin_password=None, masteruser=None, masterauth=None):
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.dir = Path(dir) if dir else tmpdir("redis")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        if users and requirepass:
            raise ValueError("Redis: give users or requirepass, not both")
        self.users = dict(users) if users else None
        for name, (pw, _rules) in (self.users or {}).items():
            if name in ("admin", "default") or not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
                raise ValueError(f"Redis: user name {name!r} is reserved or unusable")
            if pw is not None and (not pw or re.search(r"\s", pw)):
                raise ValueError(f"Redis: the password of {name!r} must be non-empty "
                                 "without white space (or None for nopass)")
        self.requirepass = requirepass
        self.admin_user = "admin" if self.users else None
        self.admin_password = (admin_password or secrets.token_hex(16)) if self.users \
            else requirepass
        self.tls = tls
        self.tls_auth_clients = _yes_no(tls_auth_clients)
        self.replicaof = tuple(replicaof) if replicaof else None
        self.masteruser = masteruser or self.admin_user
        self.masterauth = masterauth or self.admin_password
        self._ssl_ctx = None
        self.proc = None
        self._conn = None
        if start:
            self.start()

    @property
    def url(self):
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def log(self):
        return self.dir / "redis.log"

    @property
    def aclfile(self):
        return self.dir / "users.acl"

    @property
    def auth(self):
        """What the harness sends as AUTH: (user, password), (password,) or None."""
        if self.users:
            return (self.admin_user, self.admin_password)
        if self.requirepass:
            return (self.requirepass,)
        return None

    def _write_aclfile(self):
        lines = [f"user {self.admin_user} on >{self.admin_password} ~* &* +@all",
                 "user default off"]
        for name, (pw, rules) in self.users.items():
            lines.append(f"user {name} on {'nopass' if pw is None else '>' + pw} {rules}")
        self.aclfile.write_text("\n".join(lines) + "\n")
        os.chmod(self.aclfile, 0o600)

    def _args(self):
        if self.tls:
            t = self.tls
            net = ["--port", "0", "--tls-port", str(self.port),
                   "--tls-cert-file", str(t.server_cert), "--tls-key-file", str(t.server_key),
                   "--tls-ca-cert-file", str(t.ca), "--tls-auth-clients", self.tls_auth_clients]
            if self.replicaof:
                net += ["--tls-replication", "yes"]
        else:
            net = ["--port", str(self.port)]
        sec = []
        if self.users:
            self._write_aclfile()
            sec += ["--aclfile", str(self.aclfile)]
        elif self.requirepass:
            sec += ["--requirepass", self.requirepass]
        if self.masterauth:
            if self.masteruser:
                sec += ["--masteruser", self.masteruser]
            sec += ["--masterauth", self.masterauth]
        if self.replicaof:
            sec += ["--replicaof", str(self.replicaof[0]), str(self.replicaof[1])]
        return ["redis-server", "--bind", "127.0.0.1", *net,
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                # a replica's full sync starts at once, not after 5 s
                "--repl-diskless-sync-delay", "0",
                "--daemonize", "no", *sec, *self.extra_args]  # logs to stdout -> self.log

    def start(self, timeout=10.0):
        if self.proc and self.proc.alive:
            return self
        for attempt in range(5):
            self.proc = spawn(self._args(), name="redis-server", log=self.log)
            try:
                wait_until(lambda: self.ping() or not self.proc.alive, timeout,
                           f"redis-server on port {self.port} to answer PING")
            except AssertionError:
                self.proc.kill()
                raise
            if self.proc.alive:
                return self
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "Address already in use" in log and not self._fixed_port and attempt < 4:
                self.port = free_port()  # lost a race for the port: pick another
                continue
            raise HarnessError(f"redis-server exited with {self.proc.returncode}:\n"
                               + "\n".join(log.splitlines()[-20:]))
        raise HarnessError("redis-server did not start")

    def ssl_context(self):
        """The harness's client TLS context (None without tls)."""
        if self.tls and self._ssl_ctx is None:
            self._ssl_ctx = self.tls.context(client_cert=self.tls_auth_clients != "no")
        return self._ssl_ctx

    def _connect(self, timeout=5.0, auth=None):
        return RespConnection(self.port, timeout=timeout, ssl_context=self.ssl_context(),
                              auth=self.auth if auth is None else auth)

    def ping(self):
        try:
            c = self._connect(timeout=1.0)
        except (OSError, RespError):
            return False
        try:
            return c.call("PING") == "PONG"
        except (OSError, RespError):
            return False
        finally:
            c.close()

    def call(self, *args):
        """One command over a kept connection (reconnects once if the
        connection was lost, e.g. after a restart). Raises RespError for
        error replies, ConnectionError/OSError when Redis is down."""
        for attempt in (0, 1):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                return self._conn.call(*args)
            except (OSError, ConnectionError):
                self._drop_conn()
                if attempt:
                    raise

    def client(self, auth=None, timeout=5.0):
        """A new RespConnection of your own (close it when done), TLS as
        configured. auth: None = as the harness (admin), () = no AUTH,
        (user, password) or (password,) = as someone else."""
        return self._connect(timeout=timeout, auth=auth)

    def role(self):
        """"master" or "slave" (first element of ROLE)."""
        r = self.call("ROLE")
        return r[0].decode() if isinstance(r[0], bytes) else r[0]

    def info(self, section="replication"):
        """INFO section as a dict of str -> str."""
        text = self.call("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines()
                    if ":" in line and not line.startswith("#"))

    _READ = {"string": ("GET",), "set": ("SMEMBERS",), "hash": ("HGETALL",),
             "list": ("LRANGE", 0, -1), "zset": ("ZRANGE", 0, -1, "WITHSCORES"),
             "stream": ("XRANGE", "-", "+")}

    def dump(self, db=0):
        """Every key of database `db`: list of (key bytes, type str, value,
        DUMP bytes) found with SCAN; value as GET/SMEMBERS/HGETALL/LRANGE/
        ZRANGE/XRANGE return it (nested lists of bytes). For scans over all
        stored data: blob(dump()) flattens it."""
        c = self.client()
        try:
            c.call("SELECT", db)
            keys, cursor = [], b"0"
            while True:
                cursor, batch = c.call("SCAN", cursor, "COUNT", 1000)
                keys.extend(batch)
                if cursor in (b"0", 0):
                    break
            out = []
            for k in sorted(set(keys)):
                typ = c.call("TYPE", k)
                if typ == "none":  # deleted meanwhile
                    continue
                read = self._READ.get(typ)
                value = c.call(read[0], k, *read[1:]) if read else None
                out.append((k, typ, value, c.call("DUMP", k)))
            return out
        finally:
            c.close()

    def cli_args(self):
        """redis-cli options that reach this server as the harness does."""
        args = ["-h", "127.0.0.1", "-p", str(self.port)]
        if self.tls:
            args += ["--tls", "--cacert", str(self.tls.ca)]
            if self.tls_auth_clients != "no":
                args += ["--cert", str(self.tls.client_cert), "--key", str(self.tls.client_key)]
        if self.users:
            args += ["--user", self.admin_user]
        if self.admin_password:
            args += ["-a", self.admin_password, "--no-auth-warning"]
        return args

    def cli(self, *args, input=None, check=True):
        """Run redis-cli -h 127.0.0.1 -p PORT [TLS/auth options] ARGS...;
        returns stdout (str, trailing newline removed)."""
        res = run_tool(["redis-cli", *self.cli_args(), *args],
                       input=input.encode() if isinstance(input, str) else input,
                       timeout=30, check=check)
        return res.stdout.decode(errors="replace").rstrip("\n")

    def _drop_conn(self):
        if self._conn:
            self._conn.close()
            self._conn = None

    def stop(self, save=False, kill=False, timeout=10.0):
        """Stop Redis. save=True writes dump.rdb first (SHUTDOWN SAVE) so the
        next start() loads the data; otherwise the data is gone. kill=True
        simulates a crash (SIGKILL, nothing saved)."""
        self._drop_conn()
        if not self.proc or not self.proc.alive:
            return
        dump = self.dir / "dump.rdb"
        if kill:
            self.proc.kill()
        elif save:
            try:
                c = self._connect()
                c.sock.sendall(RespConnection.encode(["SHUTDOWN", "SAVE"]))
                c.rfile.readline()  # returns on close; an error reply if the save failed
                c.close()
            except (OSError, RespError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.stop(timeout)
                raise HarnessError("redis-server did not shut down after SHUTDOWN SAVE")
        else:
            self.proc.stop(timeout)
        if not save and dump.exists():
            dump.unlink()

    def restart(self, keep_data=True):
        """Stop and start again on the same port; keep_data saves and reloads
        the dataset (what a real Redis with persistence does)."""
        self.stop(save=keep_data)
        return self.start()

    def pause(self):
        """SIGSTOP: Redis keeps its connections but stops answering."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        state = "running" if self.proc and self.proc.alive else "stopped"
        return f"<Redis {self.address} {state}{' tls' if self.tls else ''}>"


class Sentinel:
    """One redis-sentinel process (see RedisHA) with its own config file,
    which Sentinel rewrites as it learns."""

    def __init__(self, dir, lines_for, tls=None):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self._lines_for = lines_for   # callable: port -> config text
        self.proc = None
        self._ssl_ctx = None

    @property
    def conf(self):
        return self.dir / "sentinel.conf"

    @property
    def log(self):
        return self.dir / "sentinel.log"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _connect(self, timeout=2.0):
        if self.tls and self._ssl_ctx is None:
            self._ssl_ctx = self.tls.context()
        return RespConnection(self.port, timeout=timeout, ssl_context=self._ssl_ctx)

    def call(self, *args, timeout=2.0):
        c = self._connect(timeout)
        try:
            return c.call(*args)
        finally:
            c.close()

    def ping(self):
        try:
            return self.call("PING", timeout=1.0) == "PONG"
        except (OSError, RespError):
            return False

    def start(self, timeout=10.0):
        if self.proc and self.proc.alive:
            return self
        for attempt in range(5):
            if not self.conf.exists() or attempt:
                self.conf.write_text(self._lines_for(self.port))
            self.proc = spawn(["redis-sentinel", self.conf], name="redis-sentinel", log=self.log)
            try:
                wait_until(lambda: self.ping() or not self.proc.alive, timeout,
                           f"redis-sentinel on port {self.port} to answer PING")
            except AssertionError:
                self.proc.kill()
                raise
            if self.proc.alive:
                return self
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "Address already in use" in log and attempt < 4:
                self.port = free_port()
                continue
            raise HarnessError(f"redis-sentinel exited with {self.proc.returncode}:\n"
                               + "\n".join(log.splitlines()[-20:]))
        raise HarnessError("redis-sentinel did not start")

    def stop(self, kill=False):
        if self.proc and self.proc.alive:
            self.proc.kill() if kill else self.proc.stop(5)

    def __repr__(self):
        return f"<Sentinel {self.address}>"


def _pairs(flat):
    """SENTINEL replicas/sentinels entry (flat [k, v, k, v...]) -> dict str."""
    it = iter(x.decode() if isinstance(x, bytes) else str(x) for x in flat)
    return dict(zip(it, it))


class RedisHA:
    """A master, one replica and 3 redis-sentinels (quorum 2, down after
    1.5 s, failover timeout 5 s, parallel-syncs 1), all on free loopback
    ports, each sentinel with its own config file (Sentinel rewrites it):

        with RedisHA("cw-master", users={...}) as ha:    # started and ready
            conf = f"sentinels = {ha.sentinels}\\nmaster_name = {ha.name}"
            old = ha.kill_master(); new = ha.wait_failover(old)
            ha.restart(old); ha.wait_ready()               # old is a replica now

    users/tls/tls_auth_clients as for Redis, on every data node (same admin
    password; replicas authenticate with it, and so do the sentinels via
    `sentinel auth-user/auth-pass`). With tls the sentinels listen with TLS
    only and talk TLS to the nodes. nodes: the two Redis objects (fixed
    objects; which one is master changes); sentinel_nodes: the Sentinels.

    down_after_ms: 1500, not 1000: Sentinel pings every min(down-after, 1 s)
    and re-creates its link to a newly promoted master without an early
    PING, so with 1000 it often marks the new master down ~1 s after the
    switch and fails over a second time (7 of 16 runs here; 0 of 16 with
    1500). Failures are detected after ~2.7 s instead of ~2.2 s.
    start (default): start everything and wait_ready(); sentinel_loglevel:
    "verbose"/"debug" when diagnosing Sentinel itself."""

    def __init__(self, name="cw-master", users=None, tls=None, tls_auth_clients="no",
                 start=True, sentinels=3, quorum=2, down_after_ms=1500,
                 sentinel_loglevel="notice"):
        self.name = name
        self.down_after_ms = down_after_ms
        self.sentinel_loglevel = sentinel_loglevel
        self.dir = tmpdir("redis-ha")
        self.tls = tls
        self.quorum = quorum
        self.admin_password = secrets.token_hex(16)
        kw = dict(users=users, tls=tls, tls_auth_clients=tls_auth_clients,
                  admin_password=self.admin_password, start=False)
        self.nodes = [Redis(dir=self.dir / f"node-{i}", **kw) for i in range(2)]
        self.users = self.nodes[0].users
        # a demoted master needs these to follow the new one
        for n in self.nodes:
            n.masteruser, n.masterauth = n.admin_user, n.admin_password
        self._first_master = self.nodes[0]
        self.sentinel_nodes = [Sentinel(self.dir / f"sentinel-{i}", self._sentinel_conf, tls)
                               for i in range(sentinels)]
        if start:
            self.start()

    def _sentinel_conf(self, port):
        m = self._first_master
        lines = ["bind 127.0.0.1", "daemonize no", f"dir {self.dir}", 'logfile ""',
                 f"loglevel {self.sentinel_loglevel}"]
        if self.tls:
            t = self.tls
            lines += ["port 0", f"tls-port {port}", f"tls-cert-file {t.server_cert}",
                      f"tls-key-file {t.server_key}", f"tls-ca-cert-file {t.ca}",
                      "tls-auth-clients no", "tls-replication yes"]
        else:
            lines.append(f"port {port}")
        lines += [f"sentinel monitor {self.name} 127.0.0.1 {m.port} {self.quorum}",
                  f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}",
                  f"sentinel failover-timeout {self.name} 5000",
                  f"sentinel parallel-syncs {self.name} 1"]
        if self.users:
            lines += [f"sentinel auth-user {self.name} {m.admin_user}",
                      f"sentinel auth-pass {self.name} {m.admin_password}"]
        return "\n".join(lines) + "\n"

    @property
    def sentinels(self):
        """"127.0.0.1:a,127.0.0.1:b,127.0.0.1:c" for a config file."""
        return ",".join(s.address for s in self.sentinel_nodes)

    def start(self, wait=True, timeout=30.0):
        m, r = self.nodes
        m.start()
        r.replicaof = ("127.0.0.1", m.port)
        r.start()
        # sentinels learn the replica from the master's INFO at their first
        # connect: start them once the master lists it
        wait_until(lambda: self._online_replicas(m) >= 1, timeout,
                   f"replica {r.address} to sync with {m.address}")
        for s in self.sentinel_nodes:
            s.start()
        if wait:
            self.wait_ready(timeout)
        return self

    @staticmethod
    def _online_replicas(node):
        info = node.info("replication")
        return sum(1 for k, v in info.items()
                   if re.fullmatch(r"slave\d+", k) and "state=online" in v)

    def _node_at(self, port):
        for n in self.nodes:
            if n.port == int(port):
                return n
        raise HarnessError(f"sentinels name 127.0.0.1:{port}, not a node of {self.name}")

    def _master_port(self, sentinel):
        addr = sentinel.call("SENTINEL", "get-master-addr-by-name", self.name)
        return int(addr[1]) if addr else None

    def master(self):
        """The Redis the sentinels name as master now (the first sentinel
        that answers is asked)."""
        last = None
        for s in self.sentinel_nodes:
            try:
                port = self._master_port(s)
            except (OSError, RespError) as e:
                last = e
                continue
            if port:
                return self._node_at(port)
        raise HarnessError(f"no sentinel names a master for {self.name} (last error: {last!r})")

    def replicas(self):
        """The running nodes other than master()."""
        m = self.master()
        return [n for n in self.nodes if n is not m and n.proc and n.proc.alive]

    def _ready(self):
        m = self.master()
        if m.role() != "master":
            return False
        reps = self.replicas()
        if self._online_replicas(m) != len(reps):
            return False
        want_sentinels = len(self.sentinel_nodes) - 1
        for s in self.sentinel_nodes:
            if self._master_port(s) != m.port:
                return False
            seen = {int(d["port"]): d for d in map(_pairs, s.call("SENTINEL", "replicas",
                                                                  self.name))}
            for r in reps:
                d = seen.get(r.port)
                # flags: "slave" alone, not s_down/disconnected (its own
                # link status the sentinel only learns from INFO every 10 s;
                # the master's INFO above already says it is online)
                if not d or d.get("flags") != "slave":
                    return False
            peers = [d for d in map(_pairs, s.call("SENTINEL", "sentinels", self.name))
                     if "down" not in d.get("flags", "")]
            if len(peers) != want_sentinels:
                return False
        return m

    def wait_ready(self, timeout=30.0):
        """Wait until the master has every running replica online and every
        sentinel names it, sees those replicas and the other sentinels.
        Returns the master."""
        return wait_until(self._ready, timeout, f"{self.name}: replication and sentinels ready")

    def kill_master(self):
        """kill -9 the current master; returns its Redis object."""
        m = self.master()
        m.stop(kill=True)
        return m

    def wait_failover(self, old, timeout=30.0):
        """Wait until every running sentinel names a master other than `old`
        and that node answers ROLE master; returns it."""
        def done():
            ports = {self._master_port(s) for s in self.sentinel_nodes
                     if s.proc and s.proc.alive}
            if len(ports) != 1:
                return False
            port = ports.pop()
            if port is None or port == old.port:
                return False
            n = self._node_at(port)
            return n if n.role() == "master" else False
        new = wait_until(done, timeout, f"{self.name}: failover away from {old.address}")
        new.replicaof = None
        return new

    def restart(self, node, timeout=10.0):
        """Start a stopped/killed node again on its port, as a replica of
        the current master (as its rewritten config would make it); if the
        sentinels still name it master, as master. Returns it."""
        m = self.master()
        node.replicaof = None if m is node else ("127.0.0.1", m.port)
        return node.start(timeout)

    def stop(self):
        for s in self.sentinel_nodes:
            s.stop(kill=True)
        for n in self.nodes:
            n.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<RedisHA {self.name} nodes={self.nodes} sentinels={self.sentinels}>"


# --------------------------------------------------------------------------
# Kafka: Apache Kafka (KRaft, scripts/kafka_cluster.py) by default; the
# embedded one (librdkafka's mock cluster, build/embedded_kafka) where only
# it can do what a test needs, or for the whole suite with
# CARDWATCH_E2E_KAFKA=embedded (machines without Java).



def kafka_kind():
    """"apache" (default) or "embedded" (CARDWATCH_E2E_KAFKA)."""
    kind = os.environ.get("CARDWATCH_E2E_KAFKA", "apache")
    if kind not in ("apache", "embedded"):
        raise HarnessError(f"CARDWATCH_E2E_KAFKA={kind}: want apache or embedded")
    return kind


def _spawn_node(args, name, log, env=None):
    return spawn(args, name=name, log=log, env=env)


# --------------------------------------------------------------------------
# Spare brokers. Starting a single Apache Kafka node costs ~4.5 s here, and
# nearly every scenario needs one, twice per make test (plain and ASan):
# about 190 starts, a third of the run. So the harness keeps one spare node
# starting in the background while a test runs; the next test that asks for
# a plain single broker (no props, no SASL) takes it - a fresh node nobody
# has used - and the next spare starts at once. CARDWATCH_E2E_SPARE=0 turns
# this off. The spare is started by a worker thread that lives as long as
# the harness (the nodes die with the thread that spawned them: see
# _child_setup); a test's spare is registered for cleanup when it is taken,
# and one a test took but never started goes back to the pool.

def _spawn_unregistered(args, name, log, env=None):
    args = [str(a) for a in args]
    with open(log, "ab") as logf:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                             env=env, start_new_session=True, preexec_fn=_child_setup)
    proc = Proc(p, name, str(log))
    proc.test = None
    return proc


# The brokers' JVM in tests compiles with C1 only: a node's start, idle
# and stop then costs ~35 % less CPU (8.4 s against 13.4 s for three, on
# this machine) and starts in 2.0 s rather than 2-3.2 s; the scenarios
# move too few messages for C2's faster code to pay back its compile
# time, and make test starts ~200 nodes on two cores. The benchmarks
# (scripts/stack.sh) keep the JVM's defaults.
# CARDWATCH_E2E_KAFKA_JVM_OPTS="" gives the defaults here too.
KAFKA_JVM_OPTS = os.environ.get("CARDWATCH_E2E_KAFKA_JVM_OPTS",
                                "-XX:TieredStopAtLevel=1").split()


class _SparePool:
    def __init__(self):
        self.queue = queue.Queue()
        self.thread = None
        self.spares = []       # [{"cluster", "done", "error"}], oldest first
        self.taken = []        # spares handed to the current test

    @staticmethod
    def enabled():
        return os.environ.get("CARDWATCH_E2E_SPARE", "1") != "0" and kafka_kind() == "apache"

    def _work(self):
        while True:
            sp = self.queue.get()
            try:
                sp["cluster"].start(timeout=90.0)
            except BaseException as e:  # noqa: BLE001 - reported to the taker
                sp["error"] = e
            sp["done"].set()

    def _launch(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name="kafka-spare", daemon=True)
            self.thread.start()
        d = Path(tempfile.mkdtemp(prefix="kafka-spare-", dir=session_dir()))
        sp = {"cluster": kafka_cluster.Cluster(d, nodes=1, spawn=_spawn_unregistered,
                                               heap=os.environ.get("KAFKA_HEAP", "512m"),
                                               jvm_opts=KAFKA_JVM_OPTS),
              "done": threading.Event(), "error": None}
        self.spares.append(sp)
        self.queue.put(sp)

    def take(self):
        """A spare (started or starting) for the current test, or None the
        first time; another one starts in the background either way."""
        sp = self.spares.pop(0) if self.spares else None
        if not self.spares:
            self._launch()
        if sp is not None:
            self.taken.append(sp)
        return sp

    def adopt(self, sp, timeout=90.0):
        """Wait until sp is up; its nodes become the current test's."""
        if not sp["done"].wait(timeout):
            raise HarnessError(f"the spare Kafka did not start within {timeout:g}s")
        if sp["error"] is not None:
            raise HarnessError(f"the spare Kafka did not start: {sp['error']}")
        cluster = sp["cluster"]
        for n in cluster.nodes:
            if n.proc is not None:
                n.proc.test = config.test_name
                _procs.append(n.proc)
        cluster.spawn = _spawn_node  # restarts during the test are its own
        sp["adopted"] = True

    def end_test(self):
        """Spares the test took but never started go back to the pool."""
        for sp in self.taken:
            if not sp.get("adopted"):
                self.spares.insert(0, sp)
        self.taken = []

    def stop(self):
        """Stop every spare (end of the run)."""
        for sp in self.spares + self.taken:
            sp["done"].wait(90.0)
            for n in sp["cluster"].nodes:
                if n.proc is not None and n.proc.alive:
                    n.proc.stop(timeout=5)
        self.spares, self.taken = [], []


_spares = _SparePool()


def stop_spares():
    """Stop the spare brokers (run.py, before it removes the session)."""
    _spares.stop()


atexit.register(stop_spares)


class Kafka:
    """A Kafka cluster for one test.

        k = Kafka({"cardwatch.transactions": 16, "cardwatch.deadletter": 4})
        produce(k.bootstraps, "cardwatch.transactions", [(b"key", b"value")])

    topics: dict name -> partitions, or iterable of "name:partitions" /
    (name, partitions), created before start() returns.
    kind: "apache" (the default, see kafka_kind()): Apache Kafka from the
    pinned jars, `brokers` KRaft nodes on free loopback ports, topics never
    auto-created (create more with create_topics()), replication factor
    min(3, brokers), min.insync.replicas 2 from 3 brokers. props: extra
    broker properties; sasl: see kafka_cluster.Cluster.
    kind "embedded": librdkafka's mock cluster (build/embedded_kafka), for
    in-process fault injection only: unknown topics are auto-created (4
    partitions), ~5 MiB per partition is kept, no time index, and it
    cannot be restarted on the same ports. faults (embedded only):
    ["API:ERR:COUNT", ...] armed for inject() (embedded_kafka --on-usr1).
    start=False allocates the ports (bootstraps is known) without starting.
    """

    def __init__(self, topics=None, brokers=1, build=None, start=True, kind=None,
                 props=None, sasl=None, faults=()):
        if topics is None:
            topics = {}
        if isinstance(topics, dict):
            topics = list(topics.items())
        self.topics = []
        for t in topics:
            if isinstance(t, str):
                name, _, parts = t.rpartition(":")
                t = (name, int(parts))
            self.topics.append((t[0], int(t[1])))
        self.brokers = brokers
        self.build = build
        self.kind = kind or kafka_kind()
        self.faults = list(faults)
        if self.faults and self.kind != "embedded":
            raise HarnessError("request-error injection needs kind='embedded' (the mock)")
        self._injected = 0
        self.dir = tmpdir("kafka")
        self.proc = None
        self.cluster = None
        self.started = False
        self._spare = None
        if self.kind != "embedded" and brokers == 1 and not props and not sasl and \
                _spares.enabled():
            self._spare = _spares.take()
        if self.kind == "embedded":
            self.bootstraps_file = self.dir / "bootstraps"
            self.bootstraps = None
        elif self._spare is not None:
            self.cluster = self._spare["cluster"]
            self.bootstraps = self.cluster.bootstraps
        else:
            self.cluster = kafka_cluster.Cluster(self.dir, nodes=brokers, props=props,
                                                 sasl=sasl, spawn=_spawn_node,
                                                 heap=os.environ.get("KAFKA_HEAP", "512m"),
                                                 jvm_opts=KAFKA_JVM_OPTS)
            self.bootstraps = self.cluster.bootstraps
        if start:
            self.start()

    @property
    def apache(self):
        return self.kind == "apache"

    @property
    def sasl_bootstraps(self):
        """The SASL_SSL listeners (sasl= given): for the client under test;
        the test tools keep using the PLAINTEXT .bootstraps."""
        return self.cluster.sasl_bootstraps

    def start(self, timeout=90.0):
        if self.started:
            return self
        if self.apache:
            try:
                if self._spare is not None:
                    _spares.adopt(self._spare, timeout)
                else:
                    self.cluster.start(timeout=timeout)
            except kafka_cluster.KafkaError as e:
                raise HarnessError(str(e)) from None
            self.started = True
            self.create_topics(dict(self.topics))
            return self
        if self.bootstraps_file.exists():
            self.bootstraps_file.unlink()
        args = [tool("embedded_kafka", self.build), "--brokers", str(self.brokers),
                "--bootstraps-file", str(self.bootstraps_file)]
        for name, parts in self.topics:
            args += ["--topic", f"{name}:{parts}"]
        for f in self.faults:
            args += ["--on-usr1", f]
        self.proc = spawn(args, name="embedded_kafka", log=self.dir / "embedded_kafka.log")

        def ready():
            if not self.proc.alive:
                raise HarnessError(f"embedded_kafka exited with {self.proc.returncode}:\n"
                                   + self.proc.log_text(20))
            return self.bootstraps_file.exists()
        try:
            wait_until(ready, timeout, "embedded_kafka to write its bootstraps file")
        except AssertionError:
            if not self.proc.alive:
                raise HarnessError(f"embedded_kafka exited with {self.proc.returncode}:\n"
                                   + self.proc.log_text(20)) from None
            raise
        self.bootstraps = self.bootstraps_file.read_text().strip()
        self.started = True
        return self

    def create_topics(self, topics, configs=()):
        """topics: {name: partitions} (or [(name, partitions)]); existing
        ones with the same count are fine. configs: "key=value" topic
        configs. The embedded Kafka creates them on first use instead."""
        items = list(topics.items()) if isinstance(topics, dict) else list(topics)
        if not self.apache or not items:
            return
        args = [tool("kafka_admin", self.build), "--brokers", self.bootstraps, "create"]
        args += [f"{n}:{p}" for n, p in items]
        for c in configs:
            args += ["--config", c]
        run_tool(args, timeout=60)

    def inject(self, timeout=10.0):
        """Arms the faults given at construction once more (SIGUSR1 to the
        mock); returns when the mock has logged that it armed them."""
        assert self.faults and self.proc is not None and self.proc.alive
        self._injected += 1
        want = self._injected * len(self.faults)
        os.kill(self.proc.pid, signal.SIGUSR1)
        wait_until(lambda: self.proc.log_text(200).count("SIGUSR1: the next") >= want,
                   timeout, "the mock to arm its request errors")

    def committed(self, group, topic, partitions):
        """{partition: offset} committed by consumer group `group` on
        `topic` (-1: none), read from the cluster (tools/kafka_admin
        committed), not from the consumer's own account."""
        res = run_tool([tool("kafka_admin", self.build), "--brokers", self.bootstraps,
                        "committed", group, f"{topic}:{partitions}"], timeout=60)
        return {int(p): int(o) for p, o in
                (line.split() for line in res.stdout.decode().splitlines())}

    def set_topic_config(self, topic, configs):
        """Makes `configs` ("key=value"...) the topic's dynamic configs
        (replacing any set before; tools/kafka_admin set-config)."""
        args = [tool("kafka_admin", self.build), "--brokers", self.bootstraps,
                "set-config", topic]
        for c in configs:
            args += ["--config", c]
        run_tool(args, timeout=60)

    def stop(self, timeout=10.0):
        """Stop the whole cluster; returns the exit status of the (last)
        process (0 = clean). Apache Kafka is killed: its data is thrown
        away with the test directory, a controlled shutdown only costs time."""
        if self.apache:
            if not self.started:
                return None
            rc = None
            for n in self.cluster.nodes:
                rc = self.cluster.stop_node(n.id, kill=True, timeout=timeout)
            return rc
        if self.proc:
            return self.proc.stop(timeout)
        return None

    def pause(self):
        """SIGSTOP every broker (a hang, not a close)."""
        if self.apache:
            for n in self.cluster.nodes:
                self.cluster.pause_node(n.id)
        else:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.apache:
            for n in self.cluster.nodes:
                self.cluster.resume_node(n.id)
        else:
            self.proc.send_signal(signal.SIGCONT)

    # Apache Kafka only: one node at a time (ids 1..brokers).
    def kill_node(self, node_id):
        """kill -9 one broker."""
        return self.cluster.stop_node(node_id, kill=True)

    def stop_node(self, node_id, timeout=60.0):
        """SIGTERM one broker: a controlled shutdown."""
        return self.cluster.stop_node(node_id, timeout=timeout)

    def start_node(self, node_id, timeout=60.0):
        """Start a stopped broker again (same ports, same data)."""
        self.cluster.start_node(node_id, timeout)

    def leader(self, topic, partition):
        return self.cluster.leader(topic, partition)

    def controller(self):
        return self.cluster.controller()

    def node_log(self, node_id):
        return self.cluster.node(node_id).log

    def produce(self, topic, messages, **kw):
        return produce(self.bootstraps, topic, messages, **kw)

    def consume(self, topic, expect_count=None, timeout=30.0):
        return consume(self.bootstraps, topic, expect_count, timeout)

    def partitions(self, topic):
        return topic_partitions(self.bootstraps, topic)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


_NULL = 0xFFFFFFFF


def _b(v):
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode()
    raise TypeError(f"expected bytes, str or None, got {type(v).__name__}")


def _field(v):
    v = _b(v)
    return struct.pack(">I", _NULL) if v is None else struct.pack(">I", len(v)) + v


def produce(bootstraps, topic, messages, partition=None, timeout=60.0, build=None):
    """Produce (key, value) or (key, value, headers) tuples; key/value are
    bytes, str or None; headers a dict or a list of (name, value) pairs.
    Messages without a key go to a random partition each; keyed ones by
    librdkafka's default partitioner (CRC32 of the key); partition=N forces one.
    Binary-safe, idempotent producer, flushed before returning. Returns the
    number delivered; raises AssertionError unless all were delivered."""
    messages = list(messages)
    with_headers = any(len(m) > 2 and m[2] for m in messages)
    chunks = []
    for m in messages:
        chunks.append(_field(m[0]))
        chunks.append(_field(m[1]))
        if with_headers:
            hdrs = m[2] if len(m) > 2 and m[2] else []
            if isinstance(hdrs, dict):
                hdrs = list(hdrs.items())
            chunks.append(struct.pack(">I", len(hdrs)))
            for name, val in hdrs:
                chunks.append(_field(name))
                chunks.append(_field(val))
    args = [tool("produce_file", build), "--brokers", bootstraps, "--topic", topic,
            "--timeout", str(max(1, int(timeout)))]
    if partition is not None:
        args += ["--partition", str(partition)]
    if with_headers:
        args.append("--headers")
    res = run_tool(args, input=b"".join(chunks), timeout=timeout + 30, check=False)
    out = res.stdout.decode().strip()
    delivered = int(out) if out.isdigit() else -1
    if res.returncode != 0 or delivered != len(messages):
        raise AssertionError(f"produce to {topic}: {delivered} of {len(messages)} delivered "
                             f"(exit {res.returncode}): {res.stderr.decode(errors='replace')}")
    return delivered


_MessageBase = collections.namedtuple("Message", "partition offset key value headers")


class Message(_MessageBase):
    """(partition, offset, key, value, headers) plus .timestamp (ms, -1 if
    none). key/value: bytes or None; headers: list of (name str, value
    bytes|None), in order."""

    def __new__(cls, partition, offset, key, value, headers, timestamp=-1):
        self = super().__new__(cls, partition, offset, key, value, headers)
        self.timestamp = timestamp
        return self

    def header(self, name, default=None):
        for n, v in self.headers:
            if n == name:
                return v
        return default


def parse_consume_all(data):
    """Decode tools/consume_all output."""
    msgs, i, n = [], 0, len(data)

    def field():
        nonlocal i
        (ln,) = struct.unpack_from(">I", data, i)
        i += 4
        if ln == _NULL:
            return None
        v = data[i:i + ln]
        if len(v) != ln:
            raise ValueError("truncated consume_all output")
        i += ln
        return v

    while i < n:
        part, off, ts = struct.unpack_from(">iqq", data, i)
        i += 20
        key = field()
        value = field()
        (hc,) = struct.unpack_from(">I", data, i)
        i += 4
        headers = []
        for _ in range(hc):
            hn = field()
            headers.append((hn.decode("utf-8", "surrogateescape"), field()))
        msgs.append(Message(part, off, key, value, headers, ts))
    return msgs


def consume(bootstraps, topic, expect_count=None, timeout=30.0, build=None):
    """All messages of `topic`, from the beginning to the end of every
    partition, sorted by (partition, offset). With expect_count: wait until
    at least that many exist (raising AssertionError on timeout), then return
    everything present (so duplicates show). A topic that does not exist is
    auto-created by the mock (4 partitions) and reads as empty."""
    args = [tool("consume_all", build), "--brokers", bootstraps, "--topic", topic,
            "--timeout", str(timeout)]
    if expect_count is not None:
        args += ["--expect", str(expect_count)]
    res = run_tool(args, timeout=timeout + 30, check=False)
    msgs = parse_consume_all(res.stdout)
    if res.returncode == 3:
        raise AssertionError(f"consume {topic}: got {len(msgs)} message(s), expected "
                             f"{expect_count} within {timeout:g}s: "
                             f"{res.stderr.decode(errors='replace').strip()}")
    if res.returncode != 0:
        raise AssertionError(f"consume {topic} failed (exit {res.returncode}): "
                             f"{res.stderr.decode(errors='replace').strip()}")
    msgs.sort(key=lambda m: (m.partition, m.offset))
    return msgs


def topic_partitions(bootstraps, topic):
    """Partition count of `topic` (note: asking auto-creates it in the mock)."""
    res = run_tool(["kcat", "-L", "-J", "-b", bootstraps, "-t", topic], timeout=30)
    md = json.loads(res.stdout)
    for t in md.get("topics", []):
        if t.get("topic") == topic:
            if t.get("error"):
                raise AssertionError(f"metadata for {topic}: {t['error']}")
            return len(t.get("partitions", []))
    raise AssertionError(f"no metadata for {topic}")


# --------------------------------------------------------------------------
# protobuf wire format

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


def pb_read_varint(data, i):
    result = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def pb_fields(data):
    """Yield (field_number, wire_type, value) for each field in order:
    VARINT -> int (unsigned 64-bit), I64 -> 8 bytes as unsigned int,
    I32 -> 4 bytes as unsigned int, LEN -> bytes."""
    data = bytes(data)
    i, n = 0, len(data)
    while i < n:
        tag, i = pb_read_varint(data, i)
        num, wt = tag >> 3, tag & 7
        if num == 0:
            raise ValueError("field number 0")
        if wt == VARINT:
            v, i = pb_read_varint(data, i)
        elif wt == I64:
            if i + 8 > n:
                raise ValueError("truncated fixed64")
            (v,) = struct.unpack_from("<Q", data, i)
            i += 8
        elif wt == I32:
            if i + 4 > n:
                raise ValueError("truncated fixed32")
            (v,) = struct.unpack_from("<I", data, i)
            i += 4
        elif wt == LEN:
            ln, i = pb_read_varint(data, i)
            if i + ln > n:
                raise ValueError("truncated length-delimited field")
            v = data[i:i + ln]
            i += ln
        else:
            raise ValueError(f"unsupported wire type {wt} (field {num})")
        yield num, wt, v


def pb_decode(data):
    """field number -> list of raw values (see pb_fields); decode nested
    messages by calling pb_decode on the bytes."""
    out = {}
    for num, _wt, v in pb_fields(data):
        out.setdefault(num, []).append(v)
    return out


def pb_signed(v, bits=64):
    """Two's complement view of a varint/fixed value (int32/int64/sfixed)."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def pb_zigzag(v):
    """sint32/sint64 decoding."""
    return (v >> 1) ^ -(v & 1)


def pb_double(v):
    return struct.unpack("<d", struct.pack("<Q", v))[0]


def pb_float(v):
    return struct.unpack("<f", struct.pack("<I", v))[0]


def pb_varint(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_tag(num, wt):
    return pb_varint(num << 3 | wt)


_SCALAR_VARINT = {"int32", "int64", "uint32", "uint64", "bool", "sint32", "sint64"}
_SCALAR_I64 = {"fixed64", "sfixed64", "double"}
_SCALAR_I32 = {"fixed32", "sfixed32", "float"}


class ProtoSchema:
    """Reads message and enum definitions from a simple .proto file
    (default proto/cardwatch.proto) to decode and encode by field name,
    independently of the generated C code. Supports scalars, enums, nested
    message fields, repeated (packed and unpacked). Not supported: oneof
    is treated as plain fields, maps, groups, nested type declarations.

        s = ProtoSchema()
        raw = s.encode("Transaction", {"txn_id": "t1", "pan": "4111111111111111"})
        s.decode("Alert", alert_bytes) -> {"alert_id": "...", "hits": [{...}], ...}
    Enum values decode to their names; unknown fields go to "_unknown".
    """

    _FIELD = re.compile(r"^\s*(repeated\s+|optional\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*[;\[]")
    _ENUMVAL = re.compile(r"^\s*(\w+)\s*=\s*(-?\d+)\s*[;\[]")

    def __init__(self, path=None):
        path = Path(path or REPO / "proto" / "cardwatch.proto")
        self.messages = {}   # name -> {field name: (number, type, repeated)}
        self.enums = {}      # name -> {value name: number}
        kind = name = None
        depth = 0
        for raw in path.read_text().splitlines():
            line = raw.split("//")[0]
            m = re.match(r"^\s*(message|enum)\s+(\w+)\s*\{", line)
            if m and depth == 0:
                kind, name = m.groups()
                (self.messages if kind == "message" else self.enums)[name] = {}
            depth += line.count("{") - line.count("}")
            if m or depth != 1 or kind is None:
                if depth == 0:
                    kind = None
                continue
            if kind == "message":
                f = self._FIELD.match(line)
                if f and f.group(2) not in ("option", "reserved"):
                    self.messages[name][f.group(3)] = (int(f.group(4)), f.group(2).split(".")[-1],
                                                        bool(f.group(1) and "repeated" in f.group(1)))
            else:
                e = self._ENUMVAL.match(line)
                if e:
                    self.enums[name][e.group(1)] = int(e.group(2))

    def _scalar(self, typ, wt, v):
        if typ in self.enums:
            names = {n: k for k, n in self.enums[typ].items()}
            v = pb_signed(v, 32)
            return names.get(v, v)
        if typ == "string":
            return v.decode("utf-8", "surrogateescape")
        if typ == "bytes":
            return v
        if typ == "bool":
            return bool(v)
        if typ in ("int32", "sfixed32"):
            return pb_signed(v, 32)
        if typ in ("int64", "sfixed64"):
            return pb_signed(v, 64)
        if typ in ("sint32", "sint64"):
            return pb_zigzag(v)
        if typ == "double":
            return pb_double(v)
        if typ == "float":
            return pb_float(v)
        return v  # uint32/uint64/fixed32/fixed64

    def _packed(self, typ, data):
        vals, i = [], 0
        if typ in _SCALAR_I64:
            return [self._scalar(typ, I64, x) for (x,) in struct.iter_unpack("<Q", data)]
        if typ in _SCALAR_I32:
            return [self._scalar(typ, I32, x) for (x,) in struct.iter_unpack("<I", data)]
        while i < len(data):
            v, i = pb_read_varint(data, i)
            vals.append(self._scalar(typ, VARINT, v))
        return vals

    def decode(self, message, data):
        fields = self.messages[message]
        by_num = {num: (fname, typ, rep) for fname, (num, typ, rep) in fields.items()}
        out = {}
        for num, wt, v in pb_fields(data):
            if num not in by_num:
                out.setdefault("_unknown", {}).setdefault(num, []).append(v)
                continue
            fname, typ, rep = by_num[num]
            if typ in self.messages:
                vals = [self.decode(typ, v)]
            elif wt == LEN and typ not in ("string", "bytes"):
                vals = self._packed(typ, v)
            else:
                vals = [self._scalar(typ, wt, v)]
            if rep:
                out.setdefault(fname, []).extend(vals)
            else:
                out[fname] = vals[-1]
        return out

    def _encode_one(self, typ, num, v):
        if typ in self.messages:
            body = self.encode(typ, v) if isinstance(v, dict) else bytes(v)
            return pb_tag(num, LEN) + pb_varint(len(body)) + body
        if typ in ("string", "bytes"):
            b = v.encode() if isinstance(v, str) else bytes(v)
            return pb_tag(num, LEN) + pb_varint(len(b)) + b
        if typ in self.enums:
            v = self.enums[typ][v] if isinstance(v, str) else int(v)
            return pb_tag(num, VARINT) + pb_varint(v)
        if typ in ("sint32", "sint64"):
            return pb_tag(num, VARINT) + pb_varint((v << 1) ^ (v >> 63))
        if typ in _SCALAR_VARINT:
            return pb_tag(num, VARINT) + pb_varint(int(v))
        if typ == "double":
            return pb_tag(num, I64) + struct.pack("<d", v)
        if typ == "float":
            return pb_tag(num, I32) + struct.pack("<f", v)
        if typ in _SCALAR_I64:
            return pb_tag(num, I64) + struct.pack("<q" if typ[0] == "s" else "<Q", v)
        if typ in _SCALAR_I32:
            return pb_tag(num, I32) + struct.pack("<i" if typ[0] == "s" else "<I", v)
        raise ValueError(f"unknown type {typ}")

    def encode(self, message, values):
        """values: dict field name -> value (None skipped; lists for repeated,
        encoded unpacked, which every parser accepts). Fields in number order."""
        fields = self.messages[message]
        unknown = set(values) - set(fields)
        if unknown:
            raise KeyError(f"{message} has no field(s) {sorted(unknown)}")
        out = []
        for fname, (num, typ, rep) in sorted(fields.items(), key=lambda kv: kv[1][0]):
            v = values.get(fname)
            if v is None:
                continue
            for item in (v if rep else [v]):
                out.append(self._encode_one(typ, num, item))
        return b"".join(out)
