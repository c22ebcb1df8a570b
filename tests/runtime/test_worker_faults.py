"""asya-runtime: one bad message harms only itself (issue 13).  A worker's
death is charged only to the request it was running; the supervisor's own
kills are told from OOM kills; handler subprocesses get default signal
dispositions; a full queue is back-pressure, not an outage."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ASAN, BIN, HANDLERS, Client, envelope, lib, pid_state, wait_for


def H(fn):
    return "%s:%s" % (HANDLERS, fn)


def error_of(answer):
    assert isinstance(answer, list) and len(answer) == 1, answer
    assert set(answer[0]) == {"error", "details"}, answer
    return answer[0]["error"], answer[0]["details"]


def W(fn):
    return "%s:%s" % (lib("rt_worker"), fn)


def probe(rt):
    """The runtime's control "stats" answer, through asya-runtime --probe."""
    out = subprocess.run([BIN, "--probe", rt.socket], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0, out
    return json.loads(out.stdout)


def send_queued(rt, first, rest):
    """Sends first on one connection and, once it runs, each of rest on its own
    connection (they queue behind it on a single worker).  Returns the clients."""
    clients = [rt.client()]
    clients[0].send(envelope(first))
    time.sleep(0.15)
    for payload in rest:
        c = rt.client()
        c.send(envelope(payload))
        clients.append(c)
    return clients


@pytest.mark.parametrize("after", ["shut", "die", "die_hold"])
def test_worker_dying_after_its_answer_costs_no_queued_request(runtime, after):
    # The worker answers, then ends before it reads the next request: its
    # channel is already closed when the next request is sent ("shut"), or it
    # exits with that request unread ("die"; "die_hold": a child keeps the
    # channel open, so no reset is seen).  The queued requests never ran, so
    # they go to the replacement worker instead of being answered with a crash.
    rt = runtime(W("after_answer"))
    [pid] = rt.workers()
    first = {"sleep_ms": 400, "after": after}
    clients = send_queued(rt, first, [{"n": i} for i in range(3)])
    answers = [c.recv() for c in clients]
    for c in clients:
        c.close()
    assert answers[0] == [{"payload": {"pid": pid, "in": first},
                           "route": {"actors": ["a", "b"], "current": 0}}], answers[0]
    for i, answer in enumerate(answers[1:]):
        assert "error" not in answer[0], (i, answer, rt.stderr())
        assert answer[0]["payload"]["in"] == {"n": i}
        assert answer[0]["payload"]["pid"] != pid
    assert "while handling a request" not in rt.stderr()
    stats = probe(rt)
    assert stats["worker_restarts"]["exit"] == 1, stats
    assert sum(stats["worker_restarts"].values()) == 1, stats


@pytest.mark.skipif(ASAN, reason="RLIMIT_AS cannot work with AddressSanitizer")
def test_request_no_worker_can_take_is_answered_after_three_tries(runtime):
    # A request too big for a worker's memory limit: each worker dies trying
    # to read it, so it never runs.  It is lent to three workers in a row,
    # then answered with an error instead of killing workers forever.
    rt = runtime(W("after_answer"), env={"ASYA_WORKER_MEMORY_MB": "128",
                                         "ASYA_MAX_MESSAGE_BYTES": str(400 << 20)})
    code, d = error_of(rt.request(envelope("x" * (160 << 20))))
    assert (code, d["type"]) == ("processing_error", "WorkerExit"), d
    assert "before it read the request" in d["message"], d
    assert rt.stderr().count("before it took its request") == 3, rt.stderr()
    assert "3 workers in a row ended before taking a request" in rt.stderr()
    # The runtime serves the next request.
    assert rt.request(envelope({"n": 1}))[0]["payload"]["in"] == {"n": 1}


def test_restart_causes_tell_own_kills_from_oom_kills(runtime):
    rt = runtime(W("bad_frame"))
    # A worker that breaks the channel protocol is killed by the supervisor.
    code, d = error_of(rt.request(envelope({})))
    assert (code, d["type"]) == ("processing_error", "WorkerProtocolError")
    rt.wait_workers(1)
    stats = probe(rt)
    assert stats["worker_restarts"] == {"crash": 0, "oom_kill": 0, "timeout_kill": 0,
                                        "protocol_kill": 1, "exit": 0}, stats

    rt2 = runtime(H("pid_sleep"))
    # The client leaving (the sidecar's timeout): the supervisor's own kill.
    [pid] = rt2.workers()
    c = rt2.client()
    c.send(envelope({"sleep_ms": 10000}))
    time.sleep(0.2)
    c.close()
    assert wait_for(lambda: pid_state(pid) == "gone", 5)
    [pid] = rt2.wait_workers(1)
    # A SIGKILL the supervisor did not send: the OOM killer.
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: pid not in rt2.workers() and len(rt2.workers()) == 1, 5)
    # Any other signal: a crash.
    [pid] = rt2.workers()
    os.kill(pid, signal.SIGSEGV)
    assert wait_for(lambda: pid not in rt2.workers() and len(rt2.workers()) == 1, 5)
    stats = wait_for(lambda: (lambda s: s if sum(s["worker_restarts"].values()) == 3 else None)(
        probe(rt2)), 5)
    assert stats and stats["worker_restarts"] == {"crash": 1, "oom_kill": 1, "timeout_kill": 1,
                                                  "protocol_kill": 0, "exit": 0}, stats


def test_handler_subprocesses_get_default_signal_dispositions(runtime):
    rt = runtime(W("sigstate"))
    [res] = rt.request(envelope({}))
    state = res["payload"]
    assert state["status"] == 0, state
    int_pipe_term = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGPIPE - 1)) | (
        1 << (signal.SIGTERM - 1))
    for who in ("self", "child"):
        assert int(state[who]["SigIgn"], 16) & int_pipe_term == 0, (who, state)
        assert int(state[who]["SigBlk"], 16) == 0, (who, state)
    # The worker's channel is not inherited by programs a handler runs.
    assert state["child"]["SigFd3"] == "no", state


def listen_queue(path):
    """(pending connections, backlog) of the socket listening on path, from ss."""
    out = subprocess.run(["ss", "-xlH"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 5 and f[4] == path:
            return int(f[2]), int(f[3])
    return None


def test_full_queue_is_back_pressure_not_an_outage(runtime):
    # With every worker busy and the request queue full (1024), the runtime
    # stops reading requests (bounded queueing) but keeps accepting
    # connections: nothing waits in the listen backlog, so a client's
    # connect() never fails, and a stats probe is still answered.  Once the
    # queue has room, the waiting clients are read and served.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 1500
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip("needs %d file descriptors" % need)
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    rt = runtime(H("pid_sleep"))
    clients = []
    try:
        clients = send_queued(rt, {"sleep_ms": 2500}, [{"n": i} for i in range(1024)])
        assert wait_for(lambda: "request queue full" in rt.stderr(), 10), rt.stderr()
        for i in range(1024, 1074):
            c = Client(rt.socket)
            c.send(envelope({"n": i}))  # parked: read once the queue has room
            clients.append(c)
        if shutil.which("ss"):
            # Everything was accepted: nothing waits in the backlog.
            assert wait_for(lambda: listen_queue(rt.socket)[0] == 0, 5), listen_queue(rt.socket)
            with open("/proc/sys/net/core/somaxconn") as f:
                assert listen_queue(rt.socket)[1] == int(f.read())
        stats = probe(rt)  # answered although requests are not being read
        assert (stats["busy"], stats["queued"]) == (1, 1024), stats
        answers = [c.recv() for c in clients]
        assert answers[0][0]["payload"]["in"] == {"sleep_ms": 2500}
        assert [a[0]["payload"]["in"]["n"] for a in answers[1:]] == list(range(1074))
        assert "request queue has room again" in rt.stderr()
    finally:
        for c in clients:
            c.close()


def test_connections_stop_at_the_fd_limit_and_workers_still_restart(runtime):
    # Accepting stops short of the file descriptor limit, keeping what
    # workers need: a worker that dies can still be replaced, and the
    # connections over the cap wait in the backlog until others close.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    rt = runtime(H("pid_sleep"), start=False)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        rt.start()  # inherits 64: 64 - (2 * 1 + 32) = 30 connections
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    clients = [Client(rt.socket) for _ in range(40)]
    try:
        assert wait_for(lambda: "30 connections open" in rt.stderr(), 5), rt.stderr()
        if shutil.which("ss"):
            assert wait_for(lambda: listen_queue(rt.socket)[0] == 10, 5), listen_queue(rt.socket)
        [pid] = rt.workers()
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: len(rt.workers()) == 1 and pid not in rt.workers(), 5)
        assert "cannot start worker" not in rt.stderr()
        for c in clients[:10]:
            c.close()
        # The ten waiting in the backlog are accepted and served.
        for i, c in enumerate(clients[30:]):
            assert c.call(envelope({"n": i}))[0]["payload"]["in"] == {"n": i}
    finally:
        for c in clients:
            c.close()
