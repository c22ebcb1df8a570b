"""Fixtures for the sidecar-vs-runtime suite (started by ../run.sh).

run.sh exports ASYA_TEST_AMQP_URL / ASYA_TEST_MGMT_URL (the private broker),
ASYA_TEST_PIDS_FILE ("<queue> <role> <pid>" per runtime and sidecar) and puts
tests/lib on PYTHONPATH.
"""

import json
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "lib"))

from asya_testlib import Broker, envelope, unique_id  # noqa: E402

log = logging.getLogger("sidecar-vs-runtime")
# pika's DEBUG output drowns ours; ASYA_TEST_PIKA_DEBUG=1 brings it back.
if not os.environ.get("ASYA_TEST_PIKA_DEBUG"):
    logging.getLogger("pika").setLevel(logging.WARNING)

HAPPY_END = "happy-end"
ERROR_END = "error-end"
SINK = "test-sink-queue"  # bound, never consumed: proves a message was NOT routed on


def read_pids() -> List[tuple]:
    path = os.environ.get("ASYA_TEST_PIDS_FILE")
    if not path or not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                out.append((parts[0], parts[1], int(parts[2])))
    return out


def dead_processes() -> List[str]:
    """'<queue> <role> (pid N)' for every runtime/sidecar that is no longer running."""
    dead = []
    for queue, role, pid in read_pids():
        try:
            os.kill(pid, 0)
            # A zombie still answers kill(0); look at its state.
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                dead.append(f"{queue} {role} (pid {pid}, zombie)")
        except (ProcessLookupError, FileNotFoundError):
            dead.append(f"{queue} {role} (pid {pid})")
    return dead


class Ends:
    """Reads happy-end and error-end together, so a message that went to the
    wrong end shows up in the failure message instead of a bare timeout."""

    def __init__(self, broker: Broker):
        self.b = broker
        # Messages read but not matched yet: a later wait() of the same test may
        # want them (several envelopes in flight, checked one by one).
        self.stash: Dict[str, List[Dict[str, Any]]] = {"happy": [], "error": []}
        self.dead: List[str] = []

    def wait(self, match: Callable[[Dict[str, Any]], bool], happy: int = 0, error: int = 0,
             timeout: float = 15.0, settle: float = 0.5) -> Dict[str, List[Dict[str, Any]]]:
        """Poll both end queues for messages satisfying `match` until `happy`
        arrived at happy-end and `error` at error-end (then `settle` s more, to
        catch extras), or `timeout`.  Returns {"happy": [...], "error": [...]};
        the caller asserts on counts and content."""
        got = {"happy": [], "error": []}
        for key in got:
            keep = []
            for msg in self.stash[key]:
                (got[key] if match(msg) else keep).append(msg)
            self.stash[key] = keep
        start = time.monotonic()
        deadline = start + timeout
        settle_until = None
        next_check = start + 1.0
        self.dead = []
        while True:
            idle = True
            for key, queue in (("happy", HAPPY_END), ("error", ERROR_END)):
                body = self.b.get_raw(queue)
                if body is None:
                    continue
                idle = False
                try:
                    msg = json.loads(body)
                except ValueError:
                    msg = {"__raw__": body.decode("utf-8", "replace")}
                if not isinstance(msg, dict):
                    msg = {"__raw__": msg}
                if match(msg):
                    got[key].append(msg)
                else:
                    log.debug("not matched (yet): %s message %.200s", queue, msg)
                    self.stash[key].append(msg)
            now = time.monotonic()
            if settle_until is None and len(got["happy"]) >= happy and len(got["error"]) >= error:
                settle_until = now + settle
            if (settle_until is not None and now >= settle_until) or now >= deadline:
                break
            if now >= next_check:
                # A runtime or sidecar died: don't wait the whole timeout for
                # messages that may never come; the assertion names the dead.
                next_check = now + 1.0
                self.dead = dead_processes()
                if self.dead and settle_until is None and now - start > 3.0:
                    log.error("giving up early, processes died: %s", self.dead)
                    break
            if idle:
                time.sleep(0.03)
        return got

    def one(self, id: str, where: str = "happy", timeout: float = 15.0,
            settle: float = 0.3) -> Dict[str, Any]:
        """Exactly one message with this id, at `where` ("happy" or "error"), and
        none at the other end."""
        want = {"happy": 1 if where == "happy" else 0, "error": 1 if where == "error" else 0}
        got = self.wait(lambda m: m.get("id") == id, timeout=timeout, settle=settle, **want)
        other = "error" if where == "happy" else "happy"
        assert not got[other], (
            f"envelope {id} expected at {where}-end but arrived at {other}-end: {got[other]!r:.2000}")
        assert len(got[where]) == 1, (
            f"envelope {id}: expected exactly 1 message at {where}-end within {timeout}s, "
            f"got {len(got[where])}: {got[where]!r:.2000}"
            + (f"; dead processes: {self.dead}" if self.dead else ""))
        return got[where][0]


def family(id: str) -> Callable[[Dict[str, Any]], bool]:
    """Matches an envelope id and its fan-out children (<id>-<i>)."""
    return lambda m: isinstance(m.get("id"), str) and (m["id"] == id or m["id"].startswith(id + "-"))


@pytest.fixture(scope="session")
def broker():
    b = Broker()
    yield b
    b.close()


@pytest.fixture(autouse=True)
def clean_ends(broker):
    """Empty the end queues (and the sink) before each test."""
    broker.purge(HAPPY_END, ERROR_END, SINK)
    yield


@pytest.fixture
def ends(broker) -> Ends:
    return Ends(broker)


@pytest.fixture
def publish(broker):
    """publish(payload, actors, current=0, **extra) -> the envelope sent (unique id)."""
    def _publish(payload: Any, actors: Iterable[str], current: int = 0,
                 id: Optional[str] = None, **extra) -> Dict[str, Any]:
        env = envelope(payload, list(actors), current, id=id or unique_id(), **extra)
        broker.publish_envelope(env)
        return env
    return _publish
