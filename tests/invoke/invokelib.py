"""Helpers for the asya-invoke tests: where the build is, and running the tool
with a private TMPDIR so each test can check that nothing is left behind."""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("ASYA_BUILD_DIR", os.path.join(REPO, "build")))
BIN = os.path.join(BUILD, "bin")
INVOKE = os.path.join(BIN, "asya-invoke")
RUNTIME = os.path.join(BIN, "asya-runtime")
FIXTURES = os.path.join(BUILD, "lib", "asya-test")
RT = os.path.join(FIXTURES, "rt_handlers.so")
EXAMPLES = os.path.join(BUILD, "lib", "asya", "examples")
# ASan reserves terabytes of virtual memory, so RLIMIT_AS cannot work there.
ASAN = BUILD.rstrip("/").endswith("/asan")

# Exit codes of asya-invoke (documented in its --help and docs/writing-a-handler.md).
EXIT_OK, EXIT_NO_ANSWER, EXIT_USAGE = 0, 1, 2
EXIT_PROCESSING, EXIT_OOM, EXIT_TIMEOUT, EXIT_PARSING = 3, 4, 5, 6


def rt(fn):
    return "%s:%s" % (RT, fn)


def example(lib, fn):
    return "%s:%s" % (os.path.join(EXAMPLES, lib), fn)


def clean_env(extra=None):
    """The caller's environment without ASYA_* (so a developer's settings
    cannot leak into a test), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYA_")}
    env.update({"ASAN_OPTIONS": "handle_segv=0:handle_abort=0:detect_leaks=1",
                "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
                # A Rust panic with a backtrace caches its symbolisation data for
                # the life of the process, which LeakSanitizer reports at exit.
                "RUST_BACKTRACE": "0"})
    env.update(extra or {})
    return env


class Result:
    def __init__(self, proc, tmpdir):
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.tmpdir = tmpdir

    def json(self):
        return json.loads(self.stdout)

    def error(self):
        """(code, details) of an error answer, checking its exact shape."""
        answer = self.json()
        assert isinstance(answer, list) and len(answer) == 1, answer
        assert set(answer[0]) == {"error", "details"}, answer
        details = answer[0]["details"]
        assert set(details) == {"message", "type", "traceback"}, details
        return answer[0]["error"], details

    def __repr__(self):
        return "<exit %s\nstdout: %s\nstderr: %s>" % (self.code, self.stdout, self.stderr)


def invoke(*args, input=None, env=None, timeout=60, unclean_stop=False):
    """Run asya-invoke with args; input is str/bytes/dict/list (dicts and lists
    are JSON-encoded).  Checks that its private temp dir was removed and,
    unless unclean_stop, that the runtime child stopped cleanly."""
    if isinstance(input, (dict, list)):
        input = json.dumps(input)
    if isinstance(input, str):
        input = input.encode()
    tmpdir = tempfile.mkdtemp(prefix="invoke-test-")
    e = clean_env(env)
    e["TMPDIR"] = tmpdir
    try:
        proc = subprocess.run([INVOKE] + list(args), input=input if input is not None else b"",
                              env=e, capture_output=True, timeout=timeout)
        res = Result(proc, tmpdir)
        res.stdout = proc.stdout.decode()
        res.stderr = proc.stderr.decode(errors="replace")
        left = os.listdir(tmpdir)
        assert left == [], "asya-invoke left %s in its TMPDIR\n%r" % (left, res)
        if not unclean_stop:
            assert "while stopping" not in res.stderr, res
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert marker not in res.stderr, res.stderr
        return res
    finally:
        try:
            os.rmdir(tmpdir)
        except OSError:
            pass


def processes_with_env(needle):
    """Live pids whose environment contains the text needle (e.g. a TMPDIR)."""
    out = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = f.read()
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        state = stat[stat.rindex(")") + 2:].split()[0]
        if needle.encode() in env and state != "Z":
            out.append(int(entry))
    return sorted(out)


def wait_for(pred, timeout=10.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def frame(obj):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def read_frame(sock):
    def exact(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError("runtime closed the connection")
            data += chunk
        return data
    return json.loads(exact(struct.unpack(">I", exact(4))[0]))


class Runtime:
    """A long-running asya-runtime (not asya-invoke) for tests that need
    several requests on one worker: state kept across calls, recovery after
    a crash."""

    def __init__(self, handler, env=None, mode=None):
        self.dir = tempfile.mkdtemp(prefix="invoke-rt-")
        self.sock = os.path.join(self.dir, "app.sock")
        self.ready = os.path.join(self.dir, "ready")
        e = clean_env(env)
        e.update({"ASYA_HANDLER": handler, "ASYA_SOCKET_PATH": self.sock,
                  "ASYA_READY_FILE": self.ready, "ASYA_LOG_LEVEL": "WARNING"})
        if mode:
            e["ASYA_HANDLER_MODE"] = mode
        self.log = open(os.path.join(self.dir, "log"), "w+b")
        self.proc = subprocess.Popen([RUNTIME], env=e, stdout=self.log, stderr=self.log)
        assert wait_for(lambda: os.path.exists(self.ready) or self.proc.poll() is not None,
                        timeout=20)
        assert self.proc.poll() is None, self.output()

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def call(self, payload):
        env = {"id": "t-1", "route": {"actors": ["a"], "current": 0}, "payload": payload}
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        try:
            s.connect(self.sock)
            s.sendall(frame(env))
            return read_frame(s)
        finally:
            s.close()

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
