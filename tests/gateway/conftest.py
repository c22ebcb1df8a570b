"""Fixtures for the asya-gateway integration tests (started by run.sh).

run.sh starts one private RabbitMQ and one private PostgreSQL and exports:
  ASYA_TEST_AMQP_URL / ASYA_TEST_MGMT_URL   the broker
  ASYA_TEST_BROKER_DIR / ASYA_TEST_BROKER_SH   for stop_app/start_app
  ASYA_TEST_PG_DIR / ASYA_TEST_PG_SH        the PostgreSQL server (tests/lib/postgres.sh)
  ASYA_TEST_RUN_DIR                         where every process log goes
  ASYA_BUILD_DIR                            bin/asya-gateway

The pieces a test module uses:

  ROUTES (module attribute, optional)  route-config YAML; "{q}" stands for the
        module's queue prefix (default: conftest.DEFAULT_ROUTES).  Every queue
        named in it ("{q}-<name>") is declared and bound before the gateway starts,
        except "{q}-unbound" (a route nobody listens to).
  GATEWAY_ENV (module attribute, optional)  extra environment for the gateway.

  store       module-scoped, parametrized ["mem", "pg"]: the database URL the
              module's gateway uses ("" = memory store; pg: a fresh database).
  gw          the module's shared gateway (one per store), already ready.
  mq          GwBroker: the module's queues, envelope consumption.
  q           the module's queue prefix; queue("echo") -> "<prefix>-echo".
  pg          the suite's PostgreSQL server (PG): psql, stop/start/kill, new_database.
  gateways    a factory for gateways private to one test (stopped at its end):
              gateways.start(db_url=..., env=..., routes=...).

Every gateway is a real process (build/bin/asya-gateway) with its stderr in
<run dir>/<test or module>/<name>.log; at teardown it gets SIGTERM and must
exit 0 within 10 s.
"""

import itertools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

import pika
import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, HERE)

from asya_testlib import amqp_url  # noqa: E402

log = logging.getLogger("gateway-tests")

BUILD = os.environ.get("ASYA_BUILD_DIR", os.path.join(ROOT, "build"))
GATEWAY_BIN = os.path.join(BUILD, "bin", "asya-gateway")
MIGRATIONS_DIR = os.path.join(ROOT, "db")
RUN_DIR = os.environ.get("ASYA_TEST_RUN_DIR") or os.path.join(BUILD, "test-runs", "gateway-manual")
BROKER_DIR = os.environ.get("ASYA_TEST_BROKER_DIR", "")
BROKER_SH = os.environ.get("ASYA_TEST_BROKER_SH", os.path.join(ROOT, "tests", "lib", "broker.sh"))
PG_DIR = os.environ.get("ASYA_TEST_PG_DIR", "")
PG_SH = os.environ.get("ASYA_TEST_PG_SH", os.path.join(ROOT, "tests", "lib", "postgres.sh"))
EXCHANGE = "asya"
os.makedirs(RUN_DIR, exist_ok=True)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

DEFAULT_ROUTES = """\
defaults: {progress: true, timeout: 60}
routes:
  three: ["{q}-alpha", "{q}-beta", "{q}-gamma"]
tools:
  - name: echo
    description: Echo a message
    parameters:
      message: {type: string, description: the text to echo, required: true}
    route: ["{q}-echo"]
    metadata: {owner: team-x, tier: gold}
  - name: pipeline
    description: Three steps with typed parameters
    parameters:
      value: {type: integer, description: a number, required: true}
      mode: {type: string, options: [fast, slow], default: fast}
      ratio: {type: number, default: 0.5}
      flag: {type: boolean, default: false}
      opts:
        type: object
        properties:
          depth: {type: number, default: 2}
          label: {type: string}
      tags: {type: array, items: {type: string}}
    route: three
  - name: quiet
    description: No progress stream
    parameters:
      message: {type: string}
    route: ["{q}-echo"]
    progress: false
  - name: short
    description: A two-second deadline
    parameters:
      message: {type: string}
    route: ["{q}-echo"]
    timeout: 2
  - name: forever
    description: No deadline
    route: ["{q}-echo"]
    timeout: 0
  - name: nowhere
    description: A route no queue is bound to
    route: ["{q}-unbound"]
"""


def clean_env(extra: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """The test's environment without any ASYA_* variable, plus `extra`
    (a None value removes the variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYA_")}
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    """Poll cond() until it returns something truthy (returned) or timeout (the
    last value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", s)


# ---- PostgreSQL ------------------------------------------------------------------


class PG:
    """The suite's private PostgreSQL server (tests/lib/postgres.sh)."""

    _seq = itertools.count(1)

    def __init__(self, pgdir: str):
        self.dir = pgdir

    def _sh(self, verb: str, *args: str, timeout: float = 90, input: Optional[str] = None
            ) -> subprocess.CompletedProcess:
        p = subprocess.run(["bash", PG_SH, verb, self.dir, *args], timeout=timeout,
                           input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"postgres.sh {verb} failed ({p.returncode}):\n{p.stderr[-2000:]}")
        return p

    def url(self, db: str = "asya") -> str:
        return self._sh("url", db).stdout.strip()

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run sql as the superuser; rows as 'a|b' lines (psql -At)."""
        return self._sh("psql", "-d", db, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql).stdout

    def rows(self, sql: str, db: str) -> List[List[str]]:
        out = self.psql(sql, db)
        return [line.split("|") for line in out.splitlines() if line]

    def new_database(self, prefix: str = "t") -> str:
        """CREATE DATABASE <prefix>_<n> owned by asya; returns its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._seq)}"
        self.psql(f"CREATE DATABASE {name} OWNER asya")
        return name

    def stop(self) -> None:
        self._sh("stop")

    def start(self) -> None:
        self._sh("start")

    def kill(self) -> None:
        self._sh("kill")

    def restart(self) -> None:
        self._sh("restart")

    def status(self) -> bool:
        try:
            self._sh("status", timeout=10)
            return True
        except RuntimeError:
            return False


@pytest.fixture(scope="session")
def pg():
    if not PG_DIR:
        pytest.skip("ASYA_TEST_PG_DIR not set (run through tests/gateway/run.sh)")
    p = PG(PG_DIR)
    yield p
    # A test that stopped the server and failed before starting it again must
    # not take the rest of the suite with it.
    if not p.status():
        try:
            p.start()
        except Exception as exc:  # noqa: BLE001
            log.warning("restarting PostgreSQL: %s", exc)


@pytest.fixture
def pg_up(pg):
    """pg, and started again after the test if the test left it down."""
    yield pg
    if not pg.status():
        pg.start()


# ---- broker ------------------------------------------------------------------------


class Msg:
    def __init__(self, method, props, body: bytes):
        self.method = method
        self.props = props
        self.body = body
        try:
            self.json = json.loads(body)
        except ValueError:
            self.json = None

    @property
    def routing_key(self) -> str:
        return self.method.routing_key

    @property
    def exchange(self) -> str:
        return self.method.exchange

    def __repr__(self):
        return f"Msg(rk={self.routing_key!r}, body={self.body[:200]!r})"


class GwBroker:
    """One blocking pika connection: declares the exchange `asya` (topic, durable)
    and queues bound with routing key = queue name, and reads what the gateway
    published.  Messages read while looking for another job are kept, so a later
    get_job() finds them.  Not thread-safe."""

    def __init__(self, url: Optional[str] = None):
        self.url = url or amqp_url()
        self._conn = None
        self._ch = None
        self._stash: Dict[str, List[Msg]] = {}
        self.declared: List[str] = []

    @property
    def channel(self):
        if self._conn is None or self._conn.is_closed or self._ch is None or self._ch.is_closed:
            self.close()
            params = pika.URLParameters(self.url)
            params.heartbeat = 0
            params.blocked_connection_timeout = 30
            self._conn = pika.BlockingConnection(params)
            self._ch = self._conn.channel()
        return self._ch

    def close(self) -> None:
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:  # noqa: BLE001
            pass
        self._conn = None
        self._ch = None

    def declare(self, *queues: str) -> None:
        ch = self.channel
        ch.exchange_declare(exchange=EXCHANGE, exchange_type="topic", durable=True)
        for q in queues:
            ch.queue_declare(queue=q, durable=True)
            ch.queue_bind(queue=q, exchange=EXCHANGE, routing_key=q)
            if q not in self.declared:
                self.declared.append(q)

    def delete(self, *queues: str) -> None:
        for q in queues:
            try:
                self.channel.queue_delete(queue=q)
            except Exception as exc:  # noqa: BLE001
                log.warning("deleting %s: %s", q, exc)

    def depth(self, queue: str) -> int:
        try:
            return self.channel.queue_declare(queue=queue, passive=True).method.message_count
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.StreamLostError,
                pika.exceptions.ChannelWrongStateError, pika.exceptions.ConnectionWrongStateError):
            self.close()
            return self.channel.queue_declare(queue=queue, passive=True).method.message_count

    def purge(self, *queues: str) -> None:
        for q in queues:
            self.channel.queue_purge(queue=q)
            self._stash.pop(q, None)

    def get(self, queue: str) -> Optional[Msg]:
        """One message (auto-ack), or None when the queue is empty now.  A
        connection lost to a broker restart is opened again once."""
        try:
            method, props, body = self.channel.basic_get(queue=queue, auto_ack=True)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.StreamLostError,
                pika.exceptions.ChannelWrongStateError, pika.exceptions.ConnectionWrongStateError):
            self.close()
            method, props, body = self.channel.basic_get(queue=queue, auto_ack=True)
        return None if method is None else Msg(method, props, body)

    def drain(self, queue: str) -> List[Msg]:
        out = self._stash.pop(queue, [])
        while True:
            m = self.get(queue)
            if m is None:
                return out
            out.append(m)

    def get_job(self, queue: str, job_id: str, timeout: float = 10.0) -> Optional[Msg]:
        """The envelope of job_id from queue (None after timeout); others are kept."""
        stash = self._stash.setdefault(queue, [])
        for i, m in enumerate(stash):
            if isinstance(m.json, dict) and m.json.get("job_id") == job_id:
                return stash.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            m = self.get(queue)
            if m is None:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.03)
                continue
            if isinstance(m.json, dict) and m.json.get("job_id") == job_id:
                return m
            stash.append(m)


def broker_ctl(verb: str, timeout: float = 120) -> None:
    """stop_app / start_app on the suite's private broker."""
    if not BROKER_DIR:
        pytest.skip("ASYA_TEST_BROKER_DIR not set (run through tests/gateway/run.sh)")
    subprocess.run(["bash", BROKER_SH, verb, BROKER_DIR], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---- the gateway process ---------------------------------------------------------------


class Gateway:
    """A real asya-gateway process.  .url, .port, .restart(), .kill() (SIGKILL),
    .stop() (SIGTERM, returns the exit code), .log_text(), and HTTP helpers."""

    def __init__(self, name: str, log_dir: str, routes_path: str, db_url: str = "",
                 env: Optional[Dict[str, Any]] = None, port: Optional[int] = None):
        self.name = name
        self.log_dir = log_dir
        self.routes_path = routes_path
        self.db_url = db_url
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.popen: Optional[subprocess.Popen] = None
        self.expected_exit = False
        self._logf = None
        self._n = 0
        self.log_path = ""
        self.session = requests.Session()

    # ---- process ----

    def env(self) -> Dict[str, str]:
        base = {
            "ASYA_GATEWAY_PORT": self.port,
            "ASYA_GATEWAY_ADDR": "127.0.0.1",
            "ASYA_RABBITMQ_URL": amqp_url(),
            "ASYA_RABBITMQ_EXCHANGE": EXCHANGE,
            "ASYA_DATABASE_URL": self.db_url,
            "ASYA_CONFIG_PATH": self.routes_path,
            "ASYA_GATEWAY_MIGRATIONS_DIR": MIGRATIONS_DIR,
            "ASYA_GATEWAY_SSE_KEEPALIVE": "1s",
            "ASYA_LOG_LEVEL": "DEBUG",
        }
        base.update(self.extra_env)
        return clean_env(base)

    def start(self, wait: bool = True, timeout: float = 30.0) -> "Gateway":
        if not os.access(GATEWAY_BIN, os.X_OK):
            pytest.fail(f"{GATEWAY_BIN} not built (make {os.path.relpath(GATEWAY_BIN, ROOT)})")
        os.makedirs(self.log_dir, exist_ok=True)
        self.log_path = os.path.join(self.log_dir, f"{self.name}.log" if self._n == 0
                                     else f"{self.name}.{self._n}.log")
        self._n += 1
        self._logf = open(self.log_path, "ab")
        self.expected_exit = False
        self.popen = subprocess.Popen([GATEWAY_BIN], env=self.env(), stdin=subprocess.DEVNULL,
                                      stdout=self._logf, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        with open(os.path.join(RUN_DIR, "pids"), "a") as f:
            f.write(f"{self.popen.pid} {self.name}\n")
        log.info("started %s (pid %d) on %s, log %s", self.name, self.popen.pid, self.url,
                 self.log_path)
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """GET /health 200 and /readyz 200."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}) during "
                                     f"start-up:\n{self.log_tail()}")
            try:
                h = requests.get(self.url + "/health", timeout=2)
                r = requests.get(self.url + "/readyz", timeout=2)
                last = f"/health {h.status_code}, /readyz {r.status_code} {r.text.strip()!r}"
                if h.status_code == 200 and r.status_code == 200:
                    return
            except requests.RequestException as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout}s ({last}):\n"
                                     f"{self.log_tail()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float) -> Optional[int]:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM; the exit code, or None when it did not exit within timeout
        (then it is killed)."""
        if self.popen is None:
            return 0
        self.expected_exit = True
        rc = self.popen.poll()
        if rc is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            rc = self.wait_exit(timeout)
            if rc is None:
                log.warning("%s ignored SIGTERM for %.0fs; killing it", self.name, timeout)
                self._killpg()
                self.wait_exit(5)
        self._close_log()
        return rc

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        self.expected_exit = True
        self._killpg()
        self.wait_exit(5)
        self._close_log()

    def _killpg(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _close_log(self) -> None:
        if self._logf is not None:
            self._logf.close()
            self._logf = None

    def restart(self, wait: bool = True) -> "Gateway":
        """SIGTERM (must exit 0), then start again on the same port."""
        rc = self.stop()
        assert rc == 0, f"{self.name} exited {rc} on SIGTERM:\n{self.log_tail()}"
        return self.start(wait=wait)

    def log_text(self) -> str:
        if self._logf is not None:
            self._logf.flush()
        out = []
        base = os.path.join(self.log_dir, self.name)
        for i in range(self._n):
            p = f"{base}.log" if i == 0 else f"{base}.{i}.log"
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "".join(out)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    # ---- HTTP ----

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.get(self.url + path, **kw)

    def head(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.head(self.url + path, **kw)

    def post(self, path: str, json_body: Any = None, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        if json_body is not None:
            kw["json"] = json_body
        return self.session.post(self.url + path, **kw)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.request(method, self.url + path, **kw)

    def call(self, name: str, arguments: Any = None, **kw) -> requests.Response:
        body = {"name": name}
        if arguments is not None:
            body["arguments"] = arguments
        return self.post("/tools/call", body, **kw)

    def call_ok(self, name: str, arguments: Any = None) -> str:
        """A successful tool call; returns the job id."""
        r = self.call(name, arguments)
        assert r.status_code == 200, f"tools/call {name}: {r.status_code} {r.text!r}"
        res = r.json()
        assert not res.get("isError"), f"tools/call {name} failed: {res}"
        text = res["content"][0]["text"]
        m = re.match(r"Job created successfully with ID: (\S+)", text)
        assert m, f"unexpected success text {text!r}"
        return m.group(1)

    def job(self, job_id: str) -> Dict[str, Any]:
        r = self.get(f"/jobs/{job_id}")
        assert r.status_code == 200, f"GET /jobs/{job_id}: {r.status_code} {r.text!r}"
        return r.json()

    def wait_job(self, job_id: str, pred: Callable[[Dict[str, Any]], bool],
                 timeout: float = 10.0) -> Dict[str, Any]:
        last = {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = self.get(f"/jobs/{job_id}", timeout=3)
                if r.status_code == 200:
                    last = r.json()
                    if pred(last):
                        return last
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not reach the expected state in "
                                     f"{timeout}s; last: {last}")
            time.sleep(0.05)

    def metrics(self) -> str:
        r = self.get("/metrics")
        assert r.status_code == 200, f"/metrics: {r.status_code}"
        return r.text

    def check_alive(self) -> None:
        if not self.expected_exit and not self.alive():
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}; last log "
                                 f"lines:\n{self.log_tail()}")


def finish_gateway(g: Gateway) -> Optional[str]:
    """Teardown: SIGTERM must make it exit 0 within 10 s; a description otherwise."""
    if g.popen is None:
        return None
    if g.expected_exit and not g.alive():
        g._close_log()
        return None
    if not g.alive():
        g._close_log()
        return (f"{g.name} (pid {g.pid}) died during the test with {g.popen.returncode}:\n"
                f"{g.log_tail()}")
    t0 = time.monotonic()
    rc = g.stop(10.0)
    if rc != 0:
        return (f"{g.name} did not exit 0 within 10 s of SIGTERM (rc {rc}, "
                f"{time.monotonic() - t0:.1f}s):\n{g.log_tail()}")
    return None


class Gateways:
    """Gateways private to one test (or module): all stopped at its end."""

    def __init__(self, log_dir: str, routes_path: str, mq: "GwBroker" = None):
        self.log_dir = log_dir
        self.routes_path = routes_path
        self.all: List[Gateway] = []

    def new(self, name: str = "gateway", db_url: str = "", env: Optional[Dict[str, Any]] = None,
            routes: Optional[str] = None, port: Optional[int] = None) -> Gateway:
        n = sum(1 for g in self.all if g.name.startswith(name))
        g = Gateway(name if n == 0 else f"{name}-{n}", self.log_dir, routes or self.routes_path,
                    db_url, env, port)
        self.all.append(g)
        return g

    def start(self, name: str = "gateway", db_url: str = "", env: Optional[Dict[str, Any]] = None,
              routes: Optional[str] = None, wait: bool = True) -> Gateway:
        return self.new(name, db_url, env, routes).start(wait=wait)

    def close(self) -> List[str]:
        problems = []
        for g in self.all:
            msg = finish_gateway(g)
            if msg:
                problems.append(msg)
        return problems


# ---- module context: queues, routes ----------------------------------------------------------


class ModuleCtx:
    def __init__(self, module):
        name = module.__name__.rsplit(".", 1)[-1]
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).replace("test-", "", 1).strip("-")[:20]
        self.prefix = f"gwt-{slug}-{uuid.uuid4().hex[:6]}"
        self.log_dir = os.path.join(RUN_DIR, safe_name(name))
        os.makedirs(self.log_dir, exist_ok=True)
        tmpl = getattr(module, "ROUTES", DEFAULT_ROUTES)
        self.routes_yaml = tmpl.replace("{q}", self.prefix)
        self.routes_path = os.path.join(self.log_dir, "routes.yaml")
        with open(self.routes_path, "w") as f:
            f.write(self.routes_yaml)
        self.env = dict(getattr(module, "GATEWAY_ENV", {}) or {})
        self.queues = sorted(set(re.findall(re.escape(self.prefix) + r"-[A-Za-z0-9_.\-]+",
                                            self.routes_yaml)) - {f"{self.prefix}-unbound"})

    def queue(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def write_routes(self, text: str, name: str = "routes-extra.yaml") -> str:
        """Another routes file ("{q}" = the module prefix) in the module's folder."""
        p = os.path.join(self.log_dir, name)
        with open(p, "w") as f:
            f.write(text.replace("{q}", self.prefix))
        return p


@pytest.fixture(scope="module")
def mctx(request):
    return ModuleCtx(request.module)


class Q:
    """The module's queue names: q("echo") or q.echo -> "<prefix>-echo"."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return f"{self.prefix}-{name}"


@pytest.fixture(scope="module")
def q(mctx):
    return Q(mctx.prefix)


@pytest.fixture(scope="module")
def mq(mctx):
    b = GwBroker()
    b.declare(*mctx.queues)
    yield b
    b.delete(*b.declared)
    b.close()


@pytest.fixture(scope="module", params=["mem", "pg"])
def store(request):
    """The database URL of the module's gateway: "" (memory) or a fresh database."""
    if request.param == "mem":
        return ""
    p = request.getfixturevalue("pg")
    return p.url(p.new_database("t"))


@pytest.fixture(scope="module")
def gw(request, mctx, mq, store):
    """The module's shared gateway (one per store), ready."""
    tag = "mem" if store == "" else "pg"
    g = Gateway(f"gateway-{tag}", mctx.log_dir, mctx.routes_path, store, mctx.env)
    g.start()
    yield g
    msg = finish_gateway(g)
    if msg:
        pytest.fail(msg)


@pytest.fixture
def gateways(request, mctx, mq):
    """A factory for gateways private to this test."""
    d = os.path.join(RUN_DIR, safe_name(request.node.nodeid.split("::", 1)[-1]))
    gs = Gateways(d, mctx.routes_path)
    yield gs
    problems = gs.close()
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.fixture(autouse=True)
def _gateway_alive(request):
    """A test fails, naming it, when a shared gateway died during it."""
    yield
    if "gw" in request.fixturenames:
        g = request.getfixturevalue("gw")
        g.check_alive()
