"""docs/writing-a-handler.md, run as written.

Every fenced block of the tutorial must be preceded by a marker
    <!-- tested: KIND [options] -->
and is exercised here, in document order, in a fresh $HOME:
  file NAME      the block is written to NAME in the work directory
  env            shell lines prepended to every later sh block (exports)
  sh [repo]      run with bash -e in the work directory (repo: in the checkout)
  sh broker      needs RabbitMQ: run against a private broker (ASYA_RABBITMQ_URL,
                 RABBITMQ_MGMT_URL point at it)
  sh repo demo   `make demo`: run with private demo ports
  output         the previous sh block's stdout, exactly
  output-json    the previous sh block's stdout, as JSON
  output-lines   each line appears in the previous sh block's stdout (or stderr
                 when it was redirected into stdout); <id> matches an id
So the tutorial cannot rot: change the programs, and this test says which
paragraph is now wrong."""

import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

from invokelib import BUILD, REPO, clean_env

DOC = os.path.join(REPO, "docs", "writing-a-handler.md")
BROKER_SH = os.path.join(REPO, "tests", "lib", "broker.sh")
HAVE_RABBIT = os.path.exists("/usr/lib/rabbitmq/bin/rabbitmq-server")

MARK = re.compile(r"^<!-- tested: (.+?) -->$")
FENCE = re.compile(r"^```(\w*)$")


def parse(path=DOC):
    """[(kind, options, text, line)] for every fenced block; unmarked blocks
    come back with kind None."""
    lines = open(path, encoding="utf-8").read().split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(1) != "" or (m and lines[i] == "```" and False):
            marker = MARK.match(lines[i - 1]) if i > 0 else None
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i] != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), "unterminated code block at line %d" % (start + 1)
            words = marker.group(1).split() if marker else [None]
            blocks.append((words[0], words[1:], "\n".join(body) + "\n", start + 1))
        elif m:
            raise AssertionError("code block without a language at line %d" % (i + 1))
        i += 1
    return blocks


def free_port():
    for _ in range(200):
        port = random.randint(20000, 40000)
        ok = True
        # The broker also uses port+20000 (distribution) and port+21000 (epmd).
        for p in (port, port + 1, port + 20000, port + 21000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port")


class Tutorial:
    """Runs the blocks in order and remembers what the last sh block printed."""

    def __init__(self):
        self.home = tempfile.mkdtemp(prefix="tutorial-home-")
        self.work = os.path.join(self.home, "hello")
        os.mkdir(self.work)
        self.env = clean_env({"HOME": self.home, "MAKEFLAGS": "BUILD=" + BUILD})
        # rustup finds its toolchains through HOME unless told otherwise.
        real_home = os.path.expanduser("~")
        self.env.setdefault("RUSTUP_HOME", os.path.join(real_home, ".rustup"))
        self.env.setdefault("CARGO_HOME", os.path.join(real_home, ".cargo"))
        self.env.pop("PKG_CONFIG_PATH", None)
        self.prelude = ""
        self.last = None
        self.blocks = parse()
        self.pos = 0

    def run_until(self, stop_kinds=(), only=None):
        """Run blocks from the current position.  A sh block with an option
        in stop_kinds stops the run (and is not consumed)."""
        while self.pos < len(self.blocks):
            kind, opts, text, line = self.blocks[self.pos]
            if kind == "sh" and set(opts) & set(stop_kinds):
                return
            self.step(kind, opts, text, line)
            self.pos += 1

    def step(self, kind, opts, text, line, extra_env=None):
        where = "docs/writing-a-handler.md:%d" % line
        if kind == "file":
            with open(os.path.join(self.work, opts[0]), "w") as f:
                f.write(text)
        elif kind == "env":
            self.prelude += text
        elif kind == "sh":
            env = dict(self.env)
            env.update(extra_env or {})
            cwd = REPO if "repo" in opts else self.work
            timeout = 300 if ("demo" in opts or "broker" in opts) else 120
            out = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", self.prelude + text],
                                 cwd=cwd, env=env, capture_output=True, text=True,
                                 timeout=timeout)
            assert out.returncode == 0, "%s failed (exit %d):\n%s\n--- stdout\n%s\n--- stderr\n%s" % (
                where, out.returncode, text, out.stdout, out.stderr)
            self.last = out
        elif kind == "output":
            assert self.last is not None, where
            assert self.last.stdout.rstrip("\n") == text.rstrip("\n"), (
                "%s: output differs\n--- documented\n%s--- actual\n%s--- stderr\n%s" % (
                    where, text, self.last.stdout, self.last.stderr))
        elif kind == "output-json":
            assert json.loads(self.last.stdout) == json.loads(text), (where, self.last.stdout)
        elif kind == "output-lines":
            for expected in text.splitlines():
                if not expected.strip():
                    continue
                pattern = re.escape(expected.strip()).replace(re.escape("<id>"), r"[0-9a-zA-Z]+")
                assert re.search(pattern, self.last.stdout), (
                    "%s: line not in the output: %s\n--- actual\n%s" % (
                        where, expected, self.last.stdout))
        else:
            raise AssertionError("%s: unknown block kind %r" % (where, kind))

    def cleanup(self):
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def tutorial():
    t = Tutorial()
    yield t
    t.cleanup()


def test_every_block_is_tested():
    blocks = parse()
    assert len(blocks) >= 10
    untested = [line for kind, _, _, line in blocks if kind is None]
    assert untested == [], "code blocks without <!-- tested: ... --> at lines %s" % untested
    kinds = {k for k, _, _, _ in blocks}
    assert kinds <= {"file", "env", "sh", "output", "output-json", "output-lines"}, kinds


def test_parser_sees_every_fence():
    """A fence the parser missed would be an untested block."""
    text = open(DOC, encoding="utf-8").read()
    assert text.count("\n```") == 2 * len(parse())


def test_tutorial_without_broker(tutorial):
    """Install, write, build, invoke, test: steps 1-5."""
    tutorial.run_until(stop_kinds=("broker", "demo"))
    assert os.path.exists(os.path.join(tutorial.work, "hello.so"))


def test_tutorial_handler_matches_the_shipped_hello(tutorial):
    """The demo runs handlers/hello.c and the tutorial says it is the same
    handler: compare their answers."""
    ours = os.path.join(tutorial.work, "hello.so")
    if not os.path.exists(ours):
        pytest.skip("the tutorial's hello.so was not built")
    shipped = os.path.join(BUILD, "lib", "asya", "hello.so")
    invoke = os.path.join(BUILD, "bin", "asya-invoke")
    for payload in ('{"name": "Ada"}', "{}", '{"name": 5, "x": [1]}', "[1]", '"s"', "null"):
        answers = []
        for lib in (ours, shipped):
            out = subprocess.run([invoke, "--payload", "--handler", lib + ":hello"],
                                 input=payload, capture_output=True, text=True,
                                 env=clean_env())
            answer = json.loads(out.stdout)
            if "error" in answer[0]:
                answer[0]["details"]["traceback"] = ""
            answers.append((out.returncode, answer))
        assert answers[0] == answers[1], (payload, answers)


def _run_tagged(tutorial, tag, extra_env):
    ran = False
    for i, (kind, opts, text, line) in enumerate(tutorial.blocks):
        if kind == "sh" and tag in opts:
            tutorial.step(kind, opts, text, line, extra_env)
            ran = True
            j = i + 1
            while j < len(tutorial.blocks) and tutorial.blocks[j][0].startswith("output"):
                tutorial.step(*tutorial.blocks[j])
                j += 1
    assert ran, "no %s block in the tutorial" % tag


@pytest.mark.skipif(not HAVE_RABBIT, reason="rabbitmq-server is not installed")
def test_tutorial_actor(tutorial):
    """Step 6: the handler as an actor on a private RabbitMQ."""
    tutorial.run_until(stop_kinds=("broker", "demo"))
    amqp = free_port()
    mgmt = amqp + 1
    bdir = tempfile.mkdtemp(prefix="tutorial-broker-", dir="/tmp")
    start = subprocess.run(["bash", BROKER_SH, "start", bdir, str(amqp), str(mgmt)],
                           capture_output=True, text=True, timeout=180)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        _run_tagged(tutorial, "broker", {
            "ASYA_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:%d/" % amqp,
            "RABBITMQ_MGMT_URL": "http://guest:guest@127.0.0.1:%d" % mgmt})
    finally:
        subprocess.run(["bash", BROKER_SH, "stop", bdir],
                       capture_output=True, timeout=120)
        shutil.rmtree(bdir, ignore_errors=True)


@pytest.mark.skipif(not HAVE_RABBIT, reason="rabbitmq-server is not installed")
def test_tutorial_demo(tutorial):
    """Step 7: `make demo`, on private ports."""
    amqp = free_port()
    _run_tagged(tutorial, "demo", {"ASYA_DEMO_AMQP_PORT": str(amqp),
                                   "ASYA_DEMO_MGMT_PORT": str(amqp + 1)})
