"""Fixtures for the asya-sidecar integration tests (started by run.sh).

run.sh starts one private RabbitMQ and exports:
  ASYA_TEST_AMQP_URL / ASYA_TEST_MGMT_URL   the broker
  ASYA_TEST_RUN_DIR                         where every process log goes
  ASYA_TEST_SOCK_DIR                        a short dir for unix sockets
  ASYA_TEST_BROKER_DIR / ASYA_TEST_BROKER_SH   for stop_app/start_app
  ASYA_BUILD_DIR                            bin/asya-sidecar, bin/asya-runtime, lib/asya/

Every test gets its own names (`ctx.queue`, `ctx.happy`, `ctx.error`, ...): the
sidecar consumes `ctx.queue` and routes to per-test end queues through
ASYA_STEP_HAPPY_END / ASYA_STEP_ERROR_END, so no test can see another's messages.
Processes (sidecars, fake and real runtimes) are real child processes whose
output goes to <run dir>/<test>/<name>.log; all are stopped when the test ends.
"""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Dict, List, Optional

import pika
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from asya_testlib import Broker, amqp_url  # noqa: E402

log = logging.getLogger("sidecar-tests")

BUILD = os.environ.get("ASYA_BUILD_DIR", os.path.join(ROOT, "build"))
SIDECAR_BIN = os.path.join(BUILD, "bin", "asya-sidecar")
RUNTIME_BIN = os.path.join(BUILD, "bin", "asya-runtime")
HANDLERS_SO = os.path.join(BUILD, "lib", "asya", "test_handlers.so")
FAKE_RUNTIME = os.path.join(HERE, "fake_runtime.py")
RUN_DIR = os.environ.get("ASYA_TEST_RUN_DIR") or os.path.join(BUILD, "test-runs", "sidecar-manual")
SOCK_DIR = os.environ.get("ASYA_TEST_SOCK_DIR") or "/tmp"
BROKER_DIR = os.environ.get("ASYA_TEST_BROKER_DIR", "")
BROKER_SH = os.environ.get("ASYA_TEST_BROKER_SH", os.path.join(ROOT, "tests", "lib", "broker.sh"))
EXCHANGE = "asya"
PY = sys.executable


def have_real_runtime() -> bool:
    return os.access(RUNTIME_BIN, os.X_OK) and os.path.exists(HANDLERS_SO)


def clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The test's environment without any ASYA_* variable, plus `extra`
    (a None value removes the variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYA_")}
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


# ---- processes -----------------------------------------------------------------


class Proc:
    """A child process in its own session, output to a log file."""

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], log_path: str):
        self.name = name
        self.log_path = log_path
        self._logf = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self._logf,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid
        self.expected_exit = False  # set when the test signals it or means it to die
        with open(os.path.join(RUN_DIR, "pids"), "a") as f:
            f.write(f"{self.pid} {name}\n")
        log.info("started %s (pid %d), log %s", name, self.pid, log_path)

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.poll()

    def send_signal(self, sig: int) -> None:
        self.expected_exit = True
        if self.alive():
            os.kill(self.pid, sig)

    def unexpected_exit(self) -> Optional[str]:
        """A description when the process exited although the test neither
        signalled it nor expected it to die."""
        if self.expected_exit or self.alive():
            return None
        text = self.log_text()
        why = ""
        if "received SIGTERM" in text or "SIGTERM received" in text:
            why = (" -- it logged a SIGTERM that this test never sent: something outside the "
                   "suite signalled it (a broad pkill/kill on this machine?)")
        return (f"{self.name} (pid {self.pid}) exited with {self.returncode} during the test{why}; "
                f"last log lines:\n{self.log_tail(6)}")

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a runtime and its workers)."""
        self.expected_exit = True
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 8.0) -> Optional[int]:
        """SIGTERM, then SIGKILL to the group after `timeout`."""
        self.expected_exit = True
        if self.alive():
            self.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                log.warning("%s ignored SIGTERM for %.0fs; killing it", self.name, timeout)
                self.kill_group(signal.SIGKILL)
                self.wait(5)
        # Stray group members (runtime workers) must not outlive the test.
        self.kill_group(signal.SIGKILL)
        self._logf.close()
        return self.popen.returncode

    def log_text(self) -> str:
        self._logf.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


class FakeRuntime(Proc):
    def __init__(self, name, sock, req_log, log_path):
        self.sock = sock
        self.req_log = req_log
        if os.path.exists(sock):
            os.unlink(sock)
        super().__init__(name, [PY, FAKE_RUNTIME, "--socket", sock, "--log", req_log],
                         clean_env(), log_path)
        wait_socket(sock, self, timeout=10)

    def requests(self) -> List[Dict[str, Any]]:
        """Every envelope this runtime (or any fake sharing its request log) received."""
        return read_requests(self.req_log)


class RealRuntime(Proc):
    def __init__(self, name, handler, sock, log_path, workers=1, env=None):
        self.sock = sock
        self.ready = sock + ".ready"
        for p in (sock, self.ready):
            if os.path.exists(p):
                os.unlink(p)
        e = clean_env({"ASYA_HANDLER": f"{HANDLERS_SO}:{handler}", "ASYA_SOCKET_PATH": sock,
                       "ASYA_READY_FILE": self.ready, "ASYA_RUNTIME_WORKERS": workers,
                       "ASYA_LOG_LEVEL": "DEBUG", **(env or {})})
        super().__init__(name, [RUNTIME_BIN], e, log_path)
        deadline = time.monotonic() + 15
        while not os.path.exists(self.ready):
            if not self.alive():
                raise RuntimeError(f"{name} exited during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after 15 s:\n{self.log_tail()}")
            time.sleep(0.05)


def read_requests(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written
    return out


def wait_socket(path: str, proc: Optional[Proc] = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"socket {path} not answering after {timeout}s")
        time.sleep(0.05)


# ---- per-test context -------------------------------------------------------------


def declare_queue(ch, name: str) -> None:
    """Declare a durable queue bound to the exchange (as the sidecar does)."""
    ch.queue_declare(queue=name, durable=True)
    ch.queue_bind(queue=name, exchange=EXCHANGE, routing_key=name)


class Ctx:
    """Names, processes and broker helpers of one test."""

    def __init__(self, test_name: str):
        slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
        slug = slug.replace("test-", "", 1)[:28].strip("-")
        self.tag = f"{slug}-{uuid.uuid4().hex[:6]}"
        self.queue = f"sc-{self.tag}"
        self.next = f"{self.queue}-next"
        self.happy = f"{self.queue}-happy"
        self.error = f"{self.queue}-error"
        self.sock = os.path.join(SOCK_DIR, f"{self.tag}.sock")
        self.req_log = os.path.join(SOCK_DIR, f"{self.tag}.requests.jsonl")
        self.log_dir = os.path.join(RUN_DIR, re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", test_name))
        os.makedirs(self.log_dir, exist_ok=True)
        self.procs: List[Proc] = []
        self.queues = [self.queue, self.next, self.happy, self.error]
        self._n = {}
        self.b = Broker(exchange=EXCHANGE)
        ch = self.b.channel
        ch.exchange_declare(exchange=EXCHANGE, exchange_type="topic", durable=True)
        for q in self.queues:
            declare_queue(ch, q)

    # ---- processes ----

    def _log_path(self, name: str) -> str:
        n = self._n.get(name, 0)
        self._n[name] = n + 1
        return os.path.join(self.log_dir, f"{name}.log" if n == 0 else f"{name}.{n}.log")

    def fake_runtime(self, sock: Optional[str] = None, name: str = "fake-runtime") -> FakeRuntime:
        p = FakeRuntime(name, sock or self.sock, self.req_log, self._log_path(name))
        self.procs.append(p)
        return p

    def real_runtime(self, handler: str, sock: Optional[str] = None, workers: int = 1,
                     env: Optional[Dict[str, str]] = None, name: str = "runtime") -> RealRuntime:
        if not have_real_runtime():
            pytest.skip("build/bin/asya-runtime or test_handlers.so not built")
        p = RealRuntime(name, handler, sock or self.sock, self._log_path(name), workers, env)
        self.procs.append(p)
        return p

    def sidecar_env(self, env: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
        base = {
            "ASYA_RABBITMQ_URL": amqp_url(),
            "ASYA_RABBITMQ_EXCHANGE": EXCHANGE,
            "ASYA_ACTOR_NAME": self.queue,
            "ASYA_SOCKET_PATH": self.sock,
            "ASYA_STEP_HAPPY_END": self.happy,
            "ASYA_STEP_ERROR_END": self.error,
            "ASYA_METRICS_ENABLED": "false",
            "ASYA_RUNTIME_TIMEOUT": "20s",
            "ASYA_SHUTDOWN_TIMEOUT": "10s",
            "ASYA_LOG_LEVEL": "DEBUG",
        }
        base.update(env or {})
        return clean_env(base)

    def sidecar(self, env: Optional[Dict[str, Any]] = None, wait_consuming: bool = True,
                queue: Optional[str] = None, name: str = "sidecar") -> Proc:
        p = Proc(name, [SIDECAR_BIN], self.sidecar_env(env), self._log_path(name))
        self.procs.append(p)
        if wait_consuming:
            self.wait_consuming(p, queue or self.queue)
        return p

    def wait_consuming(self, p: Proc, queue: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not p.alive():
                raise AssertionError(f"{p.name} exited ({p.returncode}):\n{p.log_tail()}")
            try:
                if self.b.consumers_now(queue) >= 1:
                    return
            except pika.exceptions.ChannelClosedByBroker:
                pass  # queue not declared yet
            if time.monotonic() > deadline:
                raise AssertionError(f"{p.name} not consuming {queue} after {timeout}s:\n"
                                     f"{p.log_tail()}")
            time.sleep(0.1)

    def close(self) -> None:
        # Sidecars first (they hand in-flight work back), then runtimes.
        for p in sorted(self.procs, key=lambda p: 0 if isinstance(p, (FakeRuntime, RealRuntime)) else -1):
            try:
                p.stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("stopping %s: %s", p.name, exc)
        try:
            b = Broker(exchange=EXCHANGE)
            for q in self.queues:
                b.channel.queue_delete(queue=q)
            b.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("deleting queues: %s", exc)
        self.b.close()
        for p in (self.sock, self.sock + ".ready", self.req_log):
            try:
                os.unlink(p)
            except OSError:
                pass

    def check_procs(self) -> None:
        """Fail at once, naming it, when a process died unexpectedly."""
        for p in self.procs:
            msg = p.unexpected_exit()
            if msg:
                raise AssertionError(msg)

    # ---- broker helpers ----

    def publish(self, env: Dict[str, Any], queue: Optional[str] = None, headers=None) -> None:
        self.b.publish_raw(queue or self.queue, json.dumps(env), headers=headers)

    def publish_raw(self, body, queue: Optional[str] = None) -> None:
        self.b.publish_raw(queue or self.queue, body)

    def envelope(self, payload: Any, id: Optional[str] = None, actors: Optional[List[str]] = None,
                 current: int = 0, **extra) -> Dict[str, Any]:
        env = {"id": id or f"{self.tag}-{uuid.uuid4().hex[:6]}",
               "route": {"actors": actors if actors is not None else [self.queue],
                         "current": current},
               "payload": payload}
        env.update(extra)
        return env

    def drain(self, queue: str) -> List[Dict[str, Any]]:
        """Read everything now in queue (parsed JSON, or {"__raw__": bytes})."""
        out = []
        while True:
            body = self.b.get_raw(queue)
            if body is None:
                return out
            try:
                out.append(json.loads(body))
            except ValueError:
                out.append({"__raw__": body})

    def wait_ends(self, happy: int = 0, error: int = 0, timeout: float = 15.0,
                  settle: float = 0.5, extra: Optional[Dict[str, int]] = None
                  ) -> Dict[str, List[Dict[str, Any]]]:
        """Poll happy-end, error-end (and `extra` queues: name -> count) until the
        expected counts arrived, then `settle` seconds more to catch extras."""
        want = {self.happy: happy, self.error: error}
        want.update(extra or {})
        got = {q: [] for q in want}
        deadline = time.monotonic() + timeout
        settle_until = None
        next_check = 0.0
        while True:
            if time.monotonic() >= next_check:
                self.check_procs()
                next_check = time.monotonic() + 0.5
            idle = True
            for q in want:
                body = self.b.get_raw(q)
                if body is None:
                    continue
                idle = False
                try:
                    got[q].append(json.loads(body))
                except ValueError:
                    got[q].append({"__raw__": body})
            now = time.monotonic()
            if settle_until is None and all(len(got[q]) >= n for q, n in want.items()):
                settle_until = now + settle
            if (settle_until is not None and now >= settle_until) or now >= deadline:
                break
            if idle:
                time.sleep(0.05)
        out = {"happy": got[self.happy], "error": got[self.error]}
        for q in extra or {}:
            out[q] = got[q]
        return out

    def depth(self, queue: Optional[str] = None) -> int:
        return self.b.queue_depth(queue or self.queue)

    def consumers(self, queue: Optional[str] = None) -> int:
        return self.b.consumers_now(queue or self.queue)


@pytest.fixture
def ctx(request):
    c = Ctx(request.node.name)
    yield c
    c.close()


def broker_ctl(verb: str, timeout: float = 90) -> None:
    """stop_app / start_app on the suite's private broker."""
    if not BROKER_DIR:
        pytest.skip("ASYA_TEST_BROKER_DIR not set (run through tests/sidecar/run.sh)")
    subprocess.run(["bash", BROKER_SH, verb, BROKER_DIR], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL)


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


# ---- helpers for tests that need more than the fixtures above (test_containment.py) ----


class FakeRuntimeOpts(FakeRuntime):
    """A fake runtime started with extra fake_runtime.py options (--echo-only,
    --backlog, --accept-delay, --accept-gate).  With wait=False it only waits for
    the "ready" line (the socket listens) and never connects to it, so a probe
    connection cannot take a slot of a tiny listen backlog."""

    def __init__(self, name, sock, req_log, log_path, opts, wait=True):
        self.sock = sock
        self.req_log = req_log
        if os.path.exists(sock):
            os.unlink(sock)
        Proc.__init__(self, name, [PY, FAKE_RUNTIME, "--socket", sock, "--log", req_log,
                                   *opts], clean_env(), log_path)
        if wait:
            wait_socket(sock, self, timeout=10)
            return
        deadline = time.monotonic() + 10
        while "ready" not in self.log_text():
            if not self.alive():
                raise RuntimeError(f"{name} exited during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not listening after 10 s:\n{self.log_tail()}")
            time.sleep(0.02)


def fake_runtime_opts(ctx: "Ctx", *opts: str, sock: Optional[str] = None,
                      name: str = "fake-runtime", wait: bool = True) -> FakeRuntimeOpts:
    """ctx.fake_runtime() with extra fake_runtime.py options; stopped with the test."""
    p = FakeRuntimeOpts(name, sock or ctx.sock, ctx.req_log, ctx._log_path(name), list(opts),
                        wait=wait)
    ctx.procs.append(p)
    return p


def broker_rabbitmqctl(*args: str, timeout: float = 90) -> str:
    """rabbitmqctl <args> on the suite's private broker (tests/lib/broker.sh ctl);
    returns its output."""
    if not BROKER_DIR:
        pytest.skip("ASYA_TEST_BROKER_DIR not set (run through tests/sidecar/run.sh)")
    p = subprocess.run(["bash", BROKER_SH, "ctl", BROKER_DIR, *args], check=True,
                       timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    return p.stdout


# ---- HTTP to a sidecar's metrics port (test_metrics, test_containment) -----------------


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(port: int, path: str, timeout: float = 5.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
