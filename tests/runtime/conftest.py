"""Helpers for the asya-runtime tests: start the real binary with real fixture
libraries in a private temp dir and speak the socket framing to it."""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("ASYA_BUILD_DIR", os.path.join(REPO, "build")))
BIN = os.path.join(BUILD, "bin", "asya-runtime")
FIXTURES = os.path.join(BUILD, "lib", "asya-test")
HANDLERS = os.path.join(FIXTURES, "rt_handlers.so")
# ASan reserves terabytes of virtual memory, so RLIMIT_AS cannot work there.
ASAN = BUILD.rstrip("/").endswith("/asan")

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")


def lib(name):
    return os.path.join(FIXTURES, name + ".so")


def envelope(payload, actors=("a", "b"), current=0, **extra):
    env = {"id": "msg-1", "route": {"actors": list(actors), "current": current},
           "payload": payload}
    env.update(extra)
    return env


def encode(obj):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def recv_frame(sock):
    """One frame body, or None when the peer closed the connection."""
    hdr = recv_exact(sock, 4)
    if hdr is None:
        return None
    n = struct.unpack(">I", hdr)[0]
    return recv_exact(sock, n)


class Client:
    def __init__(self, path, timeout=15):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def send(self, obj):
        self.sock.sendall(encode(obj))

    def recv_raw(self):
        return recv_frame(self.sock)

    def recv(self):
        raw = self.recv_raw()
        assert raw is not None, "runtime closed the connection without answering"
        return json.loads(raw)

    def call(self, obj):
        self.send(obj)
        return self.recv()

    def close(self):
        self.sock.close()


def children_of(pid):
    """Live (non-zombie) child pids of pid, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def pid_state(pid):
    """'gone', or the process state letter ('Z' for a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2:].split()[0]


def wait_for(pred, timeout=10.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


class Runtime:
    def __init__(self, handler, env=None, workers=1):
        self.dir = tempfile.mkdtemp(prefix="asya-rt-", dir="/tmp")
        self.socket = os.path.join(self.dir, "sock", "app.sock")
        self.ready = os.path.join(self.dir, "ready")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        e = {k: v for k, v in os.environ.items() if not k.startswith("ASYA_")}
        e.update({
            "ASYA_HANDLER": handler,
            "ASYA_SOCKET_PATH": self.socket,
            "ASYA_READY_FILE": self.ready,
            "ASYA_RUNTIME_WORKERS": str(workers),
            "ASYA_LOG_LEVEL": "DEBUG",
            # Intentional crashes must die of their signal, and any real
            # sanitizer finding must fail the test (see check_sanitizers).
            "ASAN_OPTIONS": "handle_segv=0:handle_abort=0:detect_leaks=1:halt_on_error=1",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        })
        e.update(env or {})
        self.env = e
        self.proc = None

    def start(self, wait=True):
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([BIN], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15):
        ok = wait_for(lambda: os.path.exists(self.ready) or self.proc.poll() is not None,
                      timeout)
        assert ok and self.proc.poll() is None and os.path.exists(self.ready), (
            "runtime did not become ready:\n" + self.stderr())

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def client(self):
        return Client(self.socket)

    def request(self, obj):
        c = self.client()
        try:
            return c.call(obj)
        finally:
            c.close()

    def request_raw(self, obj):
        c = self.client()
        try:
            c.send(obj)
            return c.recv_raw()
        finally:
            c.close()

    def workers(self):
        return children_of(self.proc.pid)

    def wait_workers(self, n, timeout=10):
        return wait_for(lambda: len(self.workers()) == n and self.workers(), timeout)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("runtime did not stop:\n" + self.stderr())
        return self.proc.returncode

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_sanitizers(self):
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, "sanitizer report in runtime output:\n" + text


@pytest.fixture
def runtime():
    """runtime(handler, env=None, workers=1, start=True) -> a started Runtime.
    Every runtime is stopped at teardown, and sanitizer reports fail the test."""
    made = []

    def make(handler, env=None, workers=1, start=True, wait=True):
        rt = Runtime(handler, env, workers)
        made.append(rt)
        if start:
            rt.start(wait=wait)
        return rt

    yield make
    try:
        for rt in made:
            if rt.proc and rt.proc.poll() is None:
                code = rt.stop()
                assert code == 0, "runtime exited %s at teardown:\n%s" % (code, rt.stderr())
            if rt.proc:
                rt.check_sanitizers()
    finally:
        for rt in made:
            rt.cleanup()
