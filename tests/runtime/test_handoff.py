"""asya-runtime lends client connections to workers (issue 16): the worker
reads the request and writes the answer on the client's socket itself, and
the supervisor, out of the data path, still answers for workers that die,
hands untouched requests to the next worker, answers control requests while
every worker is busy, and serves requests that arrive in pieces or
pipelined (src/runtime/handoff.h)."""

import json
import os
import signal
import socket
import struct
import subprocess
import time

from conftest import BIN, BUILD, Client, encode, envelope, lib, pid_state, wait_for


def R(fn):
    return "%s:%s" % (lib("rt_handlers"), fn)


def error_of(answer):
    assert isinstance(answer, list) and len(answer) == 1, answer
    assert set(answer[0]) == {"error", "details"}, answer
    return answer[0]["error"], answer[0]["details"]


def probe(rt):
    out = subprocess.run([BIN, "--probe", rt.socket], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0, out
    return json.loads(out.stdout)


def stopped(pid):
    return pid_state(pid) == "T"


def test_pipelined_requests_on_one_connection(runtime):
    rt = runtime(R("pid_sleep"))
    c = rt.client()
    c.sock.sendall(b"".join(encode(envelope({"n": i})) for i in range(3)))
    answers = [c.recv() for _ in range(3)]
    assert [a[0]["payload"]["in"] for a in answers] == [{"n": 0}, {"n": 1}, {"n": 2}]
    # The connection stays open for more.
    assert c.call(envelope({"n": 3}))[0]["payload"]["in"] == {"n": 3}
    c.close()


def test_request_arriving_in_pieces(runtime):
    # A header split across writes, and a small body sent after its header:
    # the supervisor reads those few bytes itself and lends them along.
    rt = runtime(R("pid_sleep"))
    c = rt.client()
    for payload in ({"n": 1}, {"n": 2, "pad": "x" * 2000}):
        frame = encode(envelope(payload))
        for piece in (frame[:2], frame[2:4], frame[4:10], frame[10:]):
            c.sock.sendall(piece)
            time.sleep(0.05)
        assert c.recv()[0]["payload"]["in"] == payload
    # A control request in pieces is still answered by the supervisor.
    frame = encode({"asya_control": "stats"})
    c.sock.sendall(frame[:3])
    time.sleep(0.05)
    c.sock.sendall(frame[3:])
    stats = c.recv()
    assert stats["workers"] == 1 and "worker_restarts" in stats, stats
    c.close()


def test_stats_while_every_worker_is_busy(runtime):
    rt = runtime(R("pid_sleep"), workers=2)
    busy = [rt.client() for _ in range(3)]
    for c in busy:
        c.send(envelope({"sleep_ms": 800}))
    time.sleep(0.3)
    stats = probe(rt)
    assert (stats["busy"], stats["idle"], stats["queued"]) == (2, 0, 1), stats
    # On a connection that had a request answered, too.
    c = rt.client()
    assert c.call(envelope({"n": 1}))[0]["payload"]["in"] == {"n": 1}
    c.send({"asya_control": "stats"})
    assert c.recv()["workers"] == 2
    c.close()
    for b in busy:
        assert b.recv()[0]["payload"]["in"] == {"sleep_ms": 800}
        b.close()


def test_worker_killed_holding_the_connection_before_reading(runtime):
    # The worker is stopped, so it gets the connection but cannot read the
    # request; killed then, it leaves the request whole in the socket, and the
    # replacement serves it as if nothing had happened.
    rt = runtime(R("pid_sleep"))
    [pid] = rt.workers()
    os.kill(pid, signal.SIGSTOP)
    try:
        assert wait_for(lambda: stopped(pid), 5)
        c = rt.client()
        c.send(envelope({"n": 7}))
        time.sleep(0.3)
    finally:
        os.kill(pid, signal.SIGKILL)
    answer = c.recv()
    assert "error" not in answer[0], (answer, rt.stderr())
    assert answer[0]["payload"]["in"] == {"n": 7} and answer[0]["payload"]["pid"] != pid
    assert "before it took its request" in rt.stderr()
    # The same connection carries the next request.
    assert c.call(envelope({"n": 8}))[0]["payload"]["in"] == {"n": 8}
    c.close()


def test_worker_killed_after_reading_answers_and_keeps_the_connection(runtime):
    rt = runtime(R("pid_sleep"))
    [pid] = rt.workers()
    c = rt.client()
    c.send(envelope({"sleep_ms": 5000}))
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)  # not the runtime's own kill: the OOM killer
    code, d = error_of(c.recv())
    assert (code, d["type"]) == ("oom_error", "MemoryError"), d
    assert "while handling the request" in d["message"], d
    [pid] = rt.wait_workers(1)
    c.send(envelope({"sleep_ms": 5000}))
    time.sleep(0.3)
    os.kill(pid, signal.SIGSEGV)
    code, d = error_of(c.recv())
    assert (code, d["type"]) == ("processing_error", "SIGSEGV"), d
    rt.wait_workers(1)
    # The request was consumed whole, so the stream is intact.
    assert c.call(envelope({"n": 1}))[0]["payload"]["in"] == {"n": 1}
    c.close()


def test_worker_killed_while_writing_its_answer_closes_the_connection(runtime):
    # The client does not read a large answer, so the worker blocks in the
    # middle of writing it.  Killed then, part of a frame is out: nothing more
    # can be written honestly, so the connection is closed.
    rt = runtime(R("big"))
    [pid] = rt.workers()
    c = rt.client()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(envelope({"count": 1, "kb": 8192}))
    time.sleep(0.8)  # the worker is blocked in its write now
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: "while writing its answer" in rt.stderr(), 5), rt.stderr()
    hdr = c.sock.recv(4, socket.MSG_WAITALL)
    n = struct.unpack(">I", hdr)[0]
    got = 0
    while True:
        chunk = c.sock.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    assert got < n, (got, n)
    c.close()
    rt.wait_workers(1)
    assert rt.request(envelope({"count": 1, "kb": 1}))[0]["payload"] == "x" * 1024


def test_hung_worker_holding_the_connection_is_killed_when_the_client_leaves(runtime):
    rt = runtime(R("pid_sleep"))
    [pid] = rt.workers()
    c = rt.client()
    c.send(envelope({"sleep_ms": 30000}))
    time.sleep(0.3)
    c.close()
    assert wait_for(lambda: pid_state(pid) == "gone", 5), rt.stderr()
    [new] = rt.wait_workers(1)
    assert new != pid
    assert probe(rt)["worker_restarts"]["timeout_kill"] == 1


def test_client_closing_after_each_answer_costs_no_worker(runtime):
    # The reference-style client: one request per connection, closed as soon
    # as the answer is read.  The worker giving the connection back races
    # with the client leaving; it must never be killed for that.
    rt = runtime(R("pid_sleep"))
    [pid] = rt.workers()
    for i in range(200):
        c = Client(rt.socket)
        assert c.call(envelope({"n": i}))[0]["payload"] == {"pid": pid, "in": {"n": i}}
        c.close()
    assert rt.workers() == [pid]
    assert sum(probe(rt)["worker_restarts"].values()) == 0


def test_progress_frames_come_from_the_worker(runtime):
    rt = runtime(os.path.join(BUILD, "lib", "asya", "test_handlers.so") + ":self_progress_handler")
    c = rt.client()
    c.send(envelope({"steps": 3, "step_s": 0.15}, asya_progress=True))
    frames = []
    while True:
        f = c.recv()
        frames.append(f)
        if isinstance(f, list):
            break
    progress = [f["asya_progress"] for f in frames[:-1]]
    assert progress == [1 / 3, 2 / 3, 1.0], frames
    assert frames[0]["message"] == "step 1 of 3", frames
    assert frames[-1][0]["payload"]["progress_codes"] == [0, 0, 0], frames
    # Without asking, none.
    c.send(envelope({"steps": 2, "step_s": 0.0}))
    answer = c.recv()
    assert isinstance(answer, list) and answer[0]["payload"]["progress_codes"] == [1, 1], answer
    c.close()
