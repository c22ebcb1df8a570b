"""Helpers of the gateway-vs-actors suite: a client of the running gateway (REST
and MCP JSON-RPC), its process control (restart with SIGTERM / SIGKILL), the
PostgreSQL server, the actors' metrics, and what a job's SSE stream and record
must hold.

The SSE reader and the progress arithmetic come from tests/gateway/gwlib.py.
Everything about the running system comes from run.sh's environment (README.md),
or run-compose.sh's: there the gateway, PostgreSQL and the actors are containers
of a compose project, stopped and started through the Docker Engine API
(ASYA_TEST_COMPOSE_PROJECT, ASYA_TEST_DOCKER_SOCK).
"""

import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
# Appended, not prepended: this suite's own conftest must stay the one imported.
sys.path.append(os.path.join(ROOT, "tests", "gateway"))

from gwlib import EOF, SSE, Event, metric_value, parse_time, percent  # noqa: E402,F401

log = logging.getLogger("gateway-vs-actors")

GATEWAY_URL = os.environ.get("ASYA_TEST_GATEWAY_URL", "http://127.0.0.1:18792")
RUN_DIR = os.environ.get("ASYA_TEST_RUN_DIR", "")
PIDS_FILE = os.environ.get("ASYA_TEST_PIDS_FILE", "")
METRICS_FILE = os.environ.get("ASYA_TEST_METRICS_FILE", "")
PG_DIR = os.environ.get("ASYA_TEST_PG_DIR", "")
PG_SH = os.environ.get("ASYA_TEST_PG_SH", os.path.join(ROOT, "tests", "lib", "postgres.sh"))
COMPOSE_PROJECT = os.environ.get("ASYA_TEST_COMPOSE_PROJECT", "")
DOCKER_SOCK = os.environ.get("ASYA_TEST_DOCKER_SOCK", "")

ECHO = "test-echo-queue"
PROGRESS = "test-progress-queue"
DOUBLER = "test-doubler-queue"
INCREMENTER = "test-incrementer-queue"
ERROR = "test-error-queue"
TIMEOUT = "test-timeout-queue"
HAPPY_END = "happy-end"
ERROR_END = "error-end"

TERMINAL = ("Succeeded", "Failed")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ERROR_TEXT = "processing_error: Intentional test failure"


# ---- the gateway over HTTP ------------------------------------------------------------


class Gateway:
    """The suite's gateway: tool calls (REST), jobs, streams.  Thread-safe (one
    requests.Session per thread)."""

    def __init__(self, url: str = GATEWAY_URL):
        self.url = url
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.http.get(self.url + path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> requests.Response:
        kw.setdefault("timeout", 15)
        return self.http.post(self.url + path, json=body, **kw)

    def call(self, name: str, arguments: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """POST /tools/call; the CallToolResult."""
        r = self.post("/tools/call", {"name": name, "arguments": arguments or {}})
        assert r.status_code == 200, f"tools/call {name}: {r.status_code} {r.text!r}"
        return r.json()

    def call_ok(self, name: str, arguments: Optional[Dict[str, Any]] = None) -> str:
        """A tool call through POST /tools/call that created a job; its id."""
        return job_id_of(self.call(name, arguments), name)

    def job(self, job_id: str) -> Dict[str, Any]:
        r = self.get(f"/jobs/{job_id}")
        assert r.status_code == 200, f"GET /jobs/{job_id}: {r.status_code} {r.text!r}"
        return r.json()

    def wait_job(self, job_id: str, pred: Callable[[Dict[str, Any]], bool],
                 timeout: float = 20.0, step: float = 0.05) -> Dict[str, Any]:
        """Poll GET /jobs/{id} until pred(job); AssertionError with the last state."""
        last: Dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = self.get(f"/jobs/{job_id}", timeout=3)
                if r.status_code == 200:
                    last = r.json()
                    if pred(last):
                        return last
                else:
                    last = {"http_status": r.status_code, "body": r.text[:200]}
            except requests.RequestException as exc:
                last = {"request_error": str(exc)}
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id}: not as expected within {timeout}s; "
                                     f"last: {last}")
            time.sleep(step)

    def wait_final(self, job_id: str, timeout: float = 20.0) -> Dict[str, Any]:
        return self.wait_job(job_id, lambda j: j.get("status") in TERMINAL, timeout)

    def stream(self, job_id: str) -> SSE:
        s = SSE(f"{self.url}/jobs/{job_id}/stream")
        assert s.status_code == 200, f"GET /jobs/{job_id}/stream: {s.status_code}"
        assert s.headers.get("Content-Type", "").startswith("text/event-stream"), s.headers
        return s

    def ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False


def job_id_of(result: Dict[str, Any], name: str = "") -> str:
    """The job id of a successful CallToolResult (the gateway's success text)."""
    assert not result.get("isError"), f"tool {name} failed: {result}"
    content = result.get("content")
    assert isinstance(content, list) and content and content[0].get("type") == "text", result
    text = content[0]["text"]
    m = re.match(r"Job created successfully with ID: (\S+)\n", text)
    assert m and UUID_RE.fullmatch(m.group(1)), f"unexpected success text {text!r}"
    return m.group(1)


# ---- MCP (Streamable HTTP, JSON-RPC 2.0) ---------------------------------------------------


class Mcp:
    """An initialized MCP session on /mcp (initialize, notifications/initialized)."""

    VERSION = "2025-06-18"

    def __init__(self, url: str = GATEWAY_URL):
        self.url = url + "/mcp"
        self.http = requests.Session()
        self.session_id: Optional[str] = None
        self._id = 0
        r = self._post({"jsonrpc": "2.0", "id": self._next(), "method": "initialize",
                        "params": {"protocolVersion": self.VERSION, "capabilities": {},
                                   "clientInfo": {"name": "gateway-vs-actors", "version": "1"}}})
        assert r.status_code == 200, f"initialize: {r.status_code} {r.text!r}"
        self.session_id = r.headers.get("Mcp-Session-Id")
        assert self.session_id, f"initialize without Mcp-Session-Id: {dict(r.headers)}"
        init = self._message(r)
        assert init.get("id") == self._id and "result" in init, init
        self.server = init["result"]
        assert self.server["protocolVersion"] == self.VERSION, self.server
        assert self.server["serverInfo"]["name"] == "asya-gateway", self.server
        n = self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert n.status_code == 202, f"notifications/initialized: {n.status_code} {n.text!r}"

    def _next(self) -> int:
        self._id += 1
        return self._id

    def _post(self, body: Any) -> requests.Response:
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
            h["MCP-Protocol-Version"] = self.VERSION
        return self.http.post(self.url, data=json.dumps(body), headers=h, timeout=15)

    @staticmethod
    def _message(r: requests.Response) -> Dict[str, Any]:
        ctype = r.headers.get("Content-Type", "")
        if ctype.startswith("text/event-stream"):  # allowed by the transport
            for line in r.text.splitlines():
                if line.startswith("data:"):
                    return json.loads(line[5:].strip())
            raise AssertionError(f"SSE answer without data: {r.text!r}")
        assert ctype.startswith("application/json"), f"Content-Type {ctype!r}: {r.text!r}"
        return r.json()

    def request(self, method: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """A JSON-RPC request; its result (AssertionError on an error answer)."""
        body: Dict[str, Any] = {"jsonrpc": "2.0", "id": self._next(), "method": method}
        if params is not None:
            body["params"] = params
        r = self._post(body)
        assert r.status_code == 200, f"{method}: {r.status_code} {r.text!r}"
        m = self._message(r)
        assert m.get("jsonrpc") == "2.0" and m.get("id") == self._id, m
        assert "error" not in m, f"{method}: JSON-RPC error {m['error']}"
        return m["result"]

    def tools(self) -> Dict[str, Dict[str, Any]]:
        return {t["name"]: t for t in self.request("tools/list")["tools"]}

    def call(self, name: str, arguments: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments or {}})

    def call_ok(self, name: str, arguments: Optional[Dict[str, Any]] = None) -> str:
        return job_id_of(self.call(name, arguments), name)

    def close(self) -> None:
        if self.session_id:
            try:
                self.http.delete(self.url, headers={"Mcp-Session-Id": self.session_id}, timeout=5)
            except requests.RequestException:
                pass
        self.http.close()


# ---- the compose run: containers through the Docker Engine API --------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Compose:
    """The containers of run-compose.sh's project (by compose service name),
    through the Docker Engine API on the socket it mounts into the tester."""

    def __init__(self, project: str = COMPOSE_PROJECT, sock: str = DOCKER_SOCK):
        self.project = project
        self.sock = sock

    @property
    def available(self) -> bool:
        return bool(self.project and self.sock) and os.path.exists(self.sock)

    def _api(self, method: str, path: str, timeout: float = 30.0) -> Any:
        c = _UnixHTTPConnection(self.sock, timeout)
        try:
            c.request(method, path, headers={"Host": "docker"})
            r = c.getresponse()
            body = r.read()
        finally:
            c.close()
        if r.status >= 300 and r.status != 304:  # 304: already started / stopped
            raise RuntimeError(f"docker API {method} {path}: {r.status} {body[:300]!r}")
        return json.loads(body) if body else None

    def containers(self) -> Dict[str, Dict[str, Any]]:
        """service -> the container summary (one-off `run` containers left out)."""
        flt = json.dumps({"label": [f"com.docker.compose.project={self.project}"]})
        out = {}
        for c in self._api("GET", "/containers/json?all=1&filters=" + urllib.parse.quote(flt)):
            labels = c.get("Labels") or {}
            if labels.get("com.docker.compose.oneoff", "False") == "True":
                continue
            out[labels.get("com.docker.compose.service", "")] = c
        return out

    def cid(self, service: str) -> str:
        c = self.containers().get(service)
        assert c, f"no container of service {service} in compose project {self.project}"
        return c["Id"]

    def state(self, service: str) -> Dict[str, Any]:
        return self._api("GET", f"/containers/{self.cid(service)}/json")["State"]

    def running(self, service: str) -> bool:
        return bool(self.state(service).get("Running"))

    def kill(self, service: str, sig: int) -> None:
        name = signal.Signals(sig).name
        self._api("POST", f"/containers/{self.cid(service)}/kill?signal={name}")

    def start(self, service: str) -> None:
        self._api("POST", f"/containers/{self.cid(service)}/start")

    def stop(self, service: str, grace: int = 20) -> None:
        self._api("POST", f"/containers/{self.cid(service)}/stop?t={grace}", timeout=grace + 30)

    def restart(self, service: str, grace: int = 20) -> None:
        self._api("POST", f"/containers/{self.cid(service)}/restart?t={grace}",
                  timeout=grace + 30)

    def wait_healthy(self, service: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(service)
            health = (st.get("Health") or {}).get("Status")
            if st.get("Running") and health in (None, "healthy"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} not healthy {timeout}s after start: "
                                   f"{st.get('Status')}/{health}")
            time.sleep(0.2)


COMPOSE = Compose()


# ---- the gateway process ------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class GatewayProcess:
    """The running asya-gateway, as run.sh started it: stop (SIGTERM, or SIGKILL),
    start again with the same environment (gateway.env), the pid in gateway.pid
    (which run.sh's teardown stops).  Each start logs to gateway.<n>.log."""

    def __init__(self):
        self.bin = os.environ.get("ASYA_TEST_GATEWAY_BIN", "")
        self.env_file = os.environ.get("ASYA_TEST_GATEWAY_ENV", "")
        self.pid_file = os.environ.get("ASYA_TEST_GATEWAY_PIDFILE", "")
        self.client = Gateway()
        self._popen: Optional[subprocess.Popen] = None

    @property
    def available(self) -> bool:
        return bool(self.bin and self.env_file and self.pid_file)

    def pid(self) -> Optional[int]:
        try:
            with open(self.pid_file) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 12.0) -> float:
        """Send sig and wait for the exit; the seconds it took.  With SIGTERM the
        gateway must exit 0 within 10 s (checked when we are its parent)."""
        pid = self.pid()
        assert pid, "no gateway running"
        t0 = time.monotonic()
        os.kill(pid, sig)
        while _alive(pid):
            if time.monotonic() - t0 > timeout:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"the gateway (pid {pid}) did not exit within {timeout}s "
                                     f"of signal {sig}")
            time.sleep(0.02)
        took = time.monotonic() - t0
        if self._popen is not None and self._popen.pid == pid:
            rc = self._popen.wait(5)
            if sig == signal.SIGTERM:
                assert rc == 0, f"the gateway exited {rc} on SIGTERM"
        log.info("gateway pid %d stopped by signal %d in %.2fs", pid, sig, took)
        return took

    def start(self, timeout: float = 30.0) -> None:
        """Start again with run.sh's environment and wait for /readyz."""
        assert not self.running(), "a gateway is already running"
        env = {}
        with open(self.env_file) as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    k, _, v = line.partition("=")
                    env[k] = v
        n = 1
        while os.path.exists(os.path.join(RUN_DIR, f"gateway.{n}.log")):
            n += 1
        logf = open(os.path.join(RUN_DIR, f"gateway.{n}.log"), "ab")
        self._popen = subprocess.Popen([self.bin], env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        with open(self.pid_file + ".tmp", "w") as f:
            f.write(f"{self._popen.pid}\n")
        os.replace(self.pid_file + ".tmp", self.pid_file)
        log.info("gateway started again (pid %d, gateway.%d.log)", self._popen.pid, n)
        deadline = time.monotonic() + timeout
        while not self.client.ready():
            if self._popen.poll() is not None:
                raise AssertionError(f"the gateway exited ({self._popen.returncode}) during "
                                     f"start-up; see gateway.{n}.log")
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway not ready {timeout}s after start")
            time.sleep(0.05)


class ComposeGateway(GatewayProcess):
    """The gateway container of the compose run (service "gateway", init: true, so
    a signal to the container reaches asya-gateway): stop = the signal to the
    container and wait for its exit; start = start the same container again (the
    compose network gives it the same address)."""

    SERVICE = "gateway"

    def __init__(self):
        self.client = Gateway()

    @property
    def available(self) -> bool:
        return COMPOSE.available

    def pid(self) -> Optional[int]:
        st = COMPOSE.state(self.SERVICE)
        return st.get("Pid") or None if st.get("Running") else None

    def running(self) -> bool:
        return COMPOSE.running(self.SERVICE)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 12.0) -> float:
        assert self.running(), "no gateway running"
        t0 = time.monotonic()
        COMPOSE.kill(self.SERVICE, sig)
        while True:
            st = COMPOSE.state(self.SERVICE)
            if not st.get("Running"):
                break
            if time.monotonic() - t0 > timeout:
                COMPOSE.kill(self.SERVICE, signal.SIGKILL)
                raise AssertionError(f"the gateway container did not exit within {timeout}s "
                                     f"of signal {sig}")
            time.sleep(0.02)
        took = time.monotonic() - t0
        if sig == signal.SIGTERM:
            assert st.get("ExitCode") == 0, f"the gateway exited {st.get('ExitCode')} on SIGTERM"
        log.info("gateway container stopped by signal %d in %.2fs", sig, took)
        return took

    def start(self, timeout: float = 30.0) -> None:
        assert not self.running(), "a gateway is already running"
        COMPOSE.start(self.SERVICE)
        log.info("gateway container started again")
        deadline = time.monotonic() + timeout
        while not self.client.ready():
            st = COMPOSE.state(self.SERVICE)
            if not st.get("Running") and st.get("Status") == "exited":
                raise AssertionError(f"the gateway exited ({st.get('ExitCode')}) during start-up")
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway not ready {timeout}s after start")
            time.sleep(0.05)


# ---- PostgreSQL -----------------------------------------------------------------------------


def gateway_process() -> GatewayProcess:
    """The gateway's process control of this run: run.sh's or the compose run's."""
    return ComposeGateway() if COMPOSE_PROJECT else GatewayProcess()


def pg_control() -> bool:
    """Whether the tests can stop and start PostgreSQL (run.sh's private server, or
    the compose run's container with the engine's socket)."""
    return bool(PG_DIR) or (bool(COMPOSE_PROJECT) and COMPOSE.available)


def pg(verb: str, timeout: float = 90) -> str:
    """tests/lib/postgres.sh VERB on the suite's server (restart, stop, start, status);
    in the compose run the same on the postgres container (restart and stop are
    docker's: STOPSIGNAL SIGINT, PostgreSQL's fast shutdown)."""
    if not PG_DIR and COMPOSE_PROJECT:
        if verb == "restart":
            COMPOSE.restart("postgres")
            COMPOSE.wait_healthy("postgres", timeout)
        elif verb == "start":
            COMPOSE.start("postgres")
            COMPOSE.wait_healthy("postgres", timeout)
        elif verb == "stop":
            COMPOSE.stop("postgres")
        elif verb == "status":
            if not COMPOSE.running("postgres"):
                raise RuntimeError("the postgres container is not running")
        else:
            raise ValueError(verb)
        return ""
    p = subprocess.run(["bash", PG_SH, verb, PG_DIR], timeout=timeout, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError(f"postgres.sh {verb} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def pg_up() -> bool:
    try:
        pg("status", timeout=10)
        return True
    except (RuntimeError, subprocess.TimeoutExpired):
        return False


# ---- actors -------------------------------------------------------------------------------


def read_pids() -> List[Tuple[str, str, int]]:
    out = []
    if PIDS_FILE and os.path.exists(PIDS_FILE):
        with open(PIDS_FILE) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    out.append((parts[0], parts[1], int(parts[2])))
    return out


def dead_actors() -> List[str]:
    if not PIDS_FILE and COMPOSE_PROJECT and COMPOSE.available:
        return [f"{svc} ({c.get('State')}: {c.get('Status')})"
                for svc, c in sorted(COMPOSE.containers().items())
                if svc.startswith(("rt-", "sc-")) and c.get("State") != "running"]
    return [f"{q} {role} (pid {pid})" for q, role, pid in read_pids() if not _alive(pid)]


def metrics_urls() -> Dict[str, str]:
    out = {}
    if METRICS_FILE and os.path.exists(METRICS_FILE):
        with open(METRICS_FILE) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    out[parts[0]] = parts[1]
    return out


def actor_metric(queue: str, name: str) -> float:
    """A counter of a sidecar (asya_actor_<name>{queue=...}), 0 when absent."""
    url = metrics_urls()[queue]
    text = requests.get(url + "/metrics", timeout=5).text
    v = metric_value(text, "asya_actor_" + name, {"queue": queue})
    return v or 0.0


# ---- what a stream and a job hold -------------------------------------------------------------


def read_stream(s: SSE, timeout: float = 30.0) -> Tuple[Event, List[Event]]:
    """The whole stream: its first event (status) and every update event, until the
    server ends it; asserts the framing rules (status first, one terminal update,
    last)."""
    items = s.read_until_eof(timeout)
    assert isinstance(items[-1], EOF) and items[-1].error is None, items[-1]
    events = [it for it in items if isinstance(it, Event)]
    assert events and events[0].event == "status", f"first event not a status: {events[:2]}"
    ups = [e for e in events[1:]]
    assert all(e.event == "update" for e in ups), [e.event for e in ups]
    assert ups, "no update events"
    statuses = [e.json()["status"] for e in ups]
    assert statuses[-1] in TERMINAL, f"stream ended before a final status: {statuses}"
    assert sum(1 for st in statuses if st in TERMINAL) == 1, statuses
    ids = [int(e.id) for e in ups]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), f"update ids not increasing: {ids}"
    return events[0], ups


def progress_of(ups: List[Event]) -> List[Dict[str, Any]]:
    """The progress updates (those with a step_status) among a stream's updates."""
    return [u for u in (e.json() for e in ups) if u.get("step_status")]


def checkpoints(route: List[str], failed_at: Optional[int] = None) -> List[Tuple[str, str]]:
    """Every (step, status) report a job through `route` gets, in order (with
    failed_at = k the step k answered an error: no completed, nothing after)."""
    want: List[Tuple[str, str]] = []
    for i, step in enumerate(route):
        want += [(step, "received"), (step, "processing")]
        if failed_at == i:
            break
        want.append((step, "completed"))
    return want


def assert_progress(job_id: str, route: List[str], progress: List[Dict[str, Any]],
                    complete: bool = True, failed_at: Optional[int] = None) -> List[float]:
    """The progress updates of a job that went through `route` (steps may repeat).

    Always: each is one of the job's checkpoints, none twice, a step's in the order
    received, processing, completed; it names its step and says "Step <step>:
    <status>"; its percent is GATEWAY.md's (index*100 + 10/50/100) / len(route),
    or the highest so far when a later checkpoint came first (progress never goes
    down).  complete=True: all of them, in route order (for routes whose steps take
    time; a fast pipeline's come back in order only when none was more than 0.5 s late:
    README.md, "Report order").
    Returns the percents."""
    want = checkpoints(route, failed_at)
    # With a repeated step name, which index a report is for follows from the order.
    got: List[Tuple[int, str]] = []
    taken = set()
    for u in progress:
        key = (u.get("step"), u.get("step_status"))
        idx = next((k for k, w in enumerate(want) if w == key and k not in taken), None)
        assert idx is not None, f"job {job_id}: unexpected or repeated checkpoint {key}: {progress}"
        taken.add(idx)
        got.append((idx, u["step_status"]))
    for step_i in range(len(route)):
        mine = [k for k, _ in got if k // 3 == step_i]
        assert mine == sorted(mine), f"job {job_id}: step {step_i} out of order: {progress}"
    if complete:
        order = [k for k, _ in got]
        assert order == list(range(len(want))), (
            f"job {job_id}: checkpoints {[want[k] for k in order]}, want {want}")
    pcts: List[float] = []
    high = 0.0
    for (k, status), u in zip(got, progress):
        high = max(high, percent(k // 3, len(route), status))
        assert u["job_id"] == job_id and u["status"] == "Running", u
        assert abs(float(u["progress_percent"]) - high) < 0.011, (
            f"job {job_id}: {u['step']} {status}: {u['progress_percent']} %, want {high}")
        assert u.get("message") == f"Step {u['step']}: {status}", u
        parse_time(u["timestamp"])
        pcts.append(float(u["progress_percent"]))
    return pcts


def assert_succeeded(job: Dict[str, Any], result: Any, route: List[str],
                     payload: Optional[Dict[str, Any]] = None) -> None:
    """GET /jobs/{id} of a job that succeeded with `result` through `route`."""
    assert job["status"] == "Succeeded", job
    assert job.get("result") == result, f"result {job.get('result')!r}, want {result!r}"
    assert job.get("error") in (None, ""), job
    assert float(job["progress_percent"]) == 100.0, job
    assert job["route"]["steps"] == route, job["route"]
    assert job["total_steps"] == len(route), job
    if payload is not None:
        assert job["payload"] == payload, job["payload"]


def assert_failed(job: Dict[str, Any], error: str, route: List[str]) -> None:
    assert job["status"] == "Failed", job
    assert job.get("error") == error, f"error {job.get('error')!r}, want {error!r}"
    assert job.get("result") is None, job
    assert job["route"]["steps"] == route, job["route"]
    assert float(job["progress_percent"]) < 100.0, job
