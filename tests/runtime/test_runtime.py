"""asya-runtime against real handler libraries over a real unix socket."""

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import threading
import time

import pytest

from conftest import (ASAN, BIN, HANDLERS, Client, envelope, lib, pid_state, wait_for)


def H(fn):
    return "%s:%s" % (HANDLERS, fn)


def error_of(answer):
    """The (code, details) of an error answer, checking its exact shape."""
    assert isinstance(answer, list) and len(answer) == 1, answer
    assert set(answer[0]) == {"error", "details"}, answer
    details = answer[0]["details"]
    assert set(details) == {"message", "type", "traceback"}, details
    assert all(isinstance(details[k], str) for k in details), details
    return answer[0]["error"], details


# ---- command line ---------------------------------------------------------

def test_version_and_help():
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    assert out.stdout == "asya-runtime 0.1.0 (handler ABI 1)\n"
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    for var in ("ASYA_HANDLER", "ASYA_HANDLER_MODE", "ASYA_SOCKET_PATH", "ASYA_SOCKET_CHMOD",
                "ASYA_RUNTIME_WORKERS", "ASYA_WORKER_MEMORY_MB", "ASYA_MAX_MESSAGE_BYTES",
                "ASYA_READY_FILE", "ASYA_SHUTDOWN_TIMEOUT", "ASYA_LOG_LEVEL", "ASYA_LOG_FORMAT"):
        assert var in out.stdout
    out = subprocess.run([BIN, "--bogus"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "--bogus" in out.stderr


# ---- payload mode answers -------------------------------------------------

def test_echo_answer_is_byte_exact(runtime):
    rt = runtime(H("echo"))
    payload = b'{"x": 0.1, "s": "\xc3\xa9\\u00e9", "n": [1, 2.50, null], "big": 1e300}'
    route = b'{"actors": ["a", "b", "c"], "current": 1, "extra": true}'
    body = (b'{"id": "m-1", "route": ' + route + b', "headers": {"trace": "t"}, "payload": '
            + payload + b'}')
    raw = rt.request_raw(body)
    # The payload and the route come back exactly as received; current is not advanced.
    assert raw == b'[{"payload":' + payload + b',"route":' + route + b'}]'
    answer = json.loads(raw)
    assert answer[0]["route"]["current"] == 1
    assert list(answer[0]) == ["payload", "route"]


def test_scalar_and_null_payloads(runtime):
    rt = runtime(H("echo"))
    for payload in (None, 7, "text", [1, {"a": None}], True):
        answer = rt.request(envelope(payload))
        assert answer == [{"payload": payload, "route": {"actors": ["a", "b"], "current": 0}}]


def test_fanout(runtime):
    rt = runtime(H("fanout"))
    env = envelope({"count": 3}, actors=["x", "y"], current=1)
    answer = rt.request(env)
    assert answer == [{"payload": {"index": i, "of": 3}, "route": env["route"]}
                      for i in range(3)]


def test_empty(runtime):
    rt = runtime(H("empty"))
    assert rt.request_raw(envelope({"a": 1})) == b"[]"


def test_handler_error(runtime):
    rt = runtime(H("fail"))
    code, d = error_of(rt.request(envelope({"a": 1})))
    assert code == "processing_error"
    assert d["type"] == "ValueError"
    assert d["message"] == "Intentional test failure: boom"
    assert "rt_handlers.so:fail" in d["traceback"]


def test_handler_error_defaults(runtime):
    rt = runtime(H("fail_bare"))
    code, d = error_of(rt.request(envelope({})))
    assert (code, d["type"]) == ("processing_error", "HandlerError")
    assert d["message"]


def test_oom_and_cuda_oom(runtime):
    rt = runtime(H("oom"))
    code, d = error_of(rt.request(envelope({})))
    assert (code, d["type"], d["message"]) == ("oom_error", "MemoryError",
                                               "Simulated out of memory condition")
    rt2 = runtime(H("cuda_oom"))
    code, d = error_of(rt2.request(envelope({})))
    assert code == "cuda_oom_error"
    assert d["message"] == "CUDA out of memory: Tried to allocate 4.0 GiB"
    assert d["type"] == "OutOfMemoryError"


def test_unknown_status(runtime):
    rt = runtime(H("bad_status"))
    code, d = error_of(rt.request(envelope({})))
    assert code == "processing_error" and "unknown status 42" in d["message"]


def test_error_after_emit_drops_results(runtime):
    rt = runtime(H("emit_then_fail"))
    code, d = error_of(rt.request(envelope({})))
    assert (code, d["type"], d["message"]) == ("processing_error", "RuntimeError",
                                               "failed after emitting")


def test_emit_rejects_invalid_json(runtime):
    rt = runtime(H("emit_invalid"))
    code, d = error_of(rt.request(envelope({})))
    assert (code, d["type"]) == ("processing_error", "ResultError")
    assert "not valid JSON" in d["message"]


def test_results_larger_than_limit(runtime):
    rt = runtime(H("big"), env={"ASYA_MAX_MESSAGE_BYTES": "65536"})
    answer = rt.request(envelope({"count": 2, "kb": 10}))
    assert [len(r["payload"]) for r in answer] == [10240, 10240]
    code, d = error_of(rt.request(envelope({"count": 10, "kb": 10})))
    assert (code, d["type"]) == ("processing_error", "ResultError")
    assert "ASYA_MAX_MESSAGE_BYTES" in d["message"]


def test_call_fields_payload_mode(runtime):
    rt = runtime(H("inspect"))
    [res] = rt.request(envelope({"k": "v"}))
    assert res["payload"] == {"mode": 0, "envelope_has_route": True, "input_is_envelope": False,
                              "nul_terminated": True, "size": res["payload"]["size"]}
    assert res["payload"]["size"] >= 64


# ---- envelope mode ----------------------------------------------------------

def test_envelope_mode_echo_and_fanout(runtime):
    rt = runtime(H("env_echo"), env={"ASYA_HANDLER_MODE": "envelope"})
    env = envelope({"v": 1}, actors=["a", "b"], current=0, headers={"trace": "t"}, extra=[1])
    answer = rt.request(env)
    expected = dict(env, payload={"v": 1, "seen": True})
    assert answer == [expected]

    rt2 = runtime(H("env_fanout"), env={"ASYA_HANDLER_MODE": "envelope"})
    answer = rt2.request(env)
    assert len(answer) == 2
    assert answer[0] == env
    assert answer[1]["route"] == {"actors": ["a", "b", "extra"], "current": 0}

    rt3 = runtime(H("inspect"), env={"ASYA_HANDLER_MODE": "ENVELOPE"})
    code, d = error_of(rt3.request(env))  # inspect emits a non-envelope
    assert d["type"] == "EnvelopeError"


def test_envelope_mode_route_prefix_violation(runtime):
    rt = runtime(H("env_rewrite"), env={"ASYA_HANDLER_MODE": "envelope"})
    code, d = error_of(rt.request(envelope({}, actors=["a", "b", "c"], current=1)))
    assert (code, d["type"]) == ("processing_error", "RouteError")
    assert "already run" in d["message"]


def test_envelope_mode_rejects_non_envelopes(runtime):
    rt = runtime(H("env_not_envelope"), env={"ASYA_HANDLER_MODE": "envelope"})
    code, d = error_of(rt.request(envelope({})))
    assert (code, d["type"]) == ("processing_error", "EnvelopeError")
    assert "not a valid envelope" in d["message"]
    rt2 = runtime(H("env_array"), env={"ASYA_HANDLER_MODE": "envelope"})
    code, d = error_of(rt2.request(envelope({})))
    assert d["type"] == "EnvelopeError" and "not a JSON object" in d["message"]


# ---- malformed input --------------------------------------------------------

def test_malformed_requests(runtime):
    rt = runtime(H("echo"))
    code, d = error_of(rt.request(b"{not json"))
    assert (code, d["type"]) == ("msg_parsing_error", "JSONDecodeError")
    code, d = error_of(rt.request({"payload": 1}))
    assert code == "msg_parsing_error" and "route" in d["message"]
    code, d = error_of(rt.request(envelope(1, actors=["a"], current=5)))
    assert code == "msg_parsing_error" and "current" in d["message"]
    code, d = error_of(rt.request(b"[1,2]"))
    assert code == "msg_parsing_error"
    # A finished route (current == len(actors)) is accepted, as end actors see it.
    assert rt.request(envelope(1, actors=["a"], current=1))[0]["payload"] == 1
    # "steps" is the older alias of "actors".
    env = {"route": {"steps": ["a"], "current": 0}, "payload": 2}
    assert rt.request(env) == [{"payload": 2, "route": env["route"]}]


def test_oversized_frame(runtime):
    rt = runtime(H("echo"), env={"ASYA_MAX_MESSAGE_BYTES": "4096"})
    c = rt.client()
    c.sock.sendall(struct.pack(">I", 1 << 30))  # announces 1 GiB, sends nothing more
    code, d = error_of(c.recv())
    assert code == "msg_parsing_error"
    assert "1073741824" in d["message"] and "ASYA_MAX_MESSAGE_BYTES" in d["message"]
    assert c.recv_raw() is None  # the stream cannot be resynchronised: closed
    c.close()
    # Just over the limit, body included.
    code, _ = error_of(rt.request(envelope("x" * 5000)))
    assert code == "msg_parsing_error"
    # The runtime keeps serving.
    assert rt.request(envelope("ok"))[0]["payload"] == "ok"


# ---- connections --------------------------------------------------------------

def test_several_requests_on_one_connection(runtime):
    rt = runtime(H("echo"))
    c = rt.client()
    for i in range(5):
        assert c.call(envelope({"i": i})) == [
            {"payload": {"i": i}, "route": {"actors": ["a", "b"], "current": 0}}]
    # Pipelined: three frames at once, three answers in order.
    c.sock.sendall(b"".join(json_frame(envelope({"p": i})) for i in range(3)))
    assert [c.recv()[0]["payload"]["p"] for _ in range(3)] == [0, 1, 2]
    c.close()


def json_frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def test_one_connection_per_request(runtime):
    rt = runtime(H("echo"))
    for i in range(20):
        assert rt.request(envelope(i))[0]["payload"] == i


def test_workers_serve_concurrently(runtime):
    rt = runtime(H("pid_sleep"), workers=3)
    results = [None] * 3

    def one(i):
        results[i] = rt.request(envelope({"sleep_ms": 1000, "i": i}))

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.8, elapsed
    assert [r[0]["payload"]["in"]["i"] for r in results] == [0, 1, 2]
    assert len({r[0]["payload"]["pid"] for r in results}) == 3
    assert sorted(r[0]["payload"]["pid"] for r in results) == rt.workers()


def test_requests_queue_when_workers_are_busy(runtime):
    rt = runtime(H("pid_sleep"), workers=2)
    results = {}

    def one(i):
        results[i] = rt.request(envelope({"sleep_ms": 300, "i": i}))

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    elapsed = time.monotonic() - t0
    assert sorted(results) == list(range(6))
    assert all(results[i][0]["payload"]["in"]["i"] == i for i in range(6))
    assert 0.85 < elapsed < 3.0, elapsed


def test_queued_request_of_vanished_client_is_dropped(runtime):
    rt = runtime(H("pid_sleep"))
    [pid] = rt.workers()
    a = rt.client()
    a.send(envelope({"sleep_ms": 600}))
    time.sleep(0.1)
    b = rt.client()
    b.send(envelope({"sleep_ms": 5000}))  # queued behind a
    time.sleep(0.1)
    b.close()
    t0 = time.monotonic()
    assert a.recv()[0]["payload"]["pid"] == pid
    # b's request was dropped from the queue, so the next one runs at once
    # in the same worker.
    assert rt.request(envelope({}))[0]["payload"]["pid"] == pid
    assert time.monotonic() - t0 < 2.0
    a.close()


# ---- isolation ------------------------------------------------------------------

@pytest.mark.parametrize("fn,sig", [("segv", "SIGSEGV"), ("abort_handler", "SIGABRT")])
def test_crashing_handler(runtime, fn, sig):
    rt = runtime(H(fn))
    [pid] = rt.workers()
    code, d = error_of(rt.request(envelope({})))
    assert (code, d["type"]) == ("processing_error", sig)
    assert sig in d["message"] and str(pid) in d["message"]
    # The worker was replaced and the runtime serves the next request.
    [new] = rt.wait_workers(1)
    assert new != pid and pid_state(pid) == "gone"
    code, d = error_of(rt.request(envelope({})))
    assert d["type"] == sig


def test_crash_then_success_on_fresh_connection(runtime):
    rt = runtime(H("pid_sleep"))
    [pid] = rt.workers()
    rt.request(envelope({}))
    os.kill(pid, signal.SIGSEGV)  # idle worker dies: replaced, no answer owed
    new = wait_for(lambda: [p for p in rt.workers() if p != pid])
    assert new
    assert rt.request(envelope({}))[0]["payload"]["pid"] == new[0]


def test_exiting_handler(runtime):
    rt = runtime(H("exit3"))
    code, d = error_of(rt.request(envelope({})))
    assert (code, d["type"]) == ("processing_error", "WorkerExit")
    assert "status 3" in d["message"]


def test_sigkilled_worker_answers_oom(runtime):
    rt = runtime(H("pid_sleep"))
    [pid] = rt.workers()
    c = rt.client()
    c.send(envelope({"sleep_ms": 10000}))
    time.sleep(0.3)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    code, d = error_of(c.recv())
    assert time.monotonic() - t0 < 3
    assert (code, d["type"]) == ("oom_error", "MemoryError")
    assert "SIGKILL" in d["message"] and "out of memory" in d["message"]
    c.close()
    [new] = rt.wait_workers(1)
    assert new != pid
    assert rt.request(envelope({}))[0]["payload"]["pid"] == new


def test_handler_killing_itself(runtime):
    rt = runtime(H("kill_self"))
    code, d = error_of(rt.request(envelope({})))
    assert code == "oom_error" and "SIGKILL" in d["message"]


def test_hanging_handler_killed_when_client_disconnects(runtime):
    rt = runtime(H("hang"))
    [pid] = rt.workers()
    c = rt.client()
    c.send(envelope({}))
    time.sleep(0.3)
    assert pid_state(pid) not in ("gone", "Z")
    c.close()  # the sidecar's timeout fired
    assert wait_for(lambda: pid_state(pid) == "gone", 5), pid_state(pid)
    [new] = rt.wait_workers(1)
    assert new != pid
    assert "client disconnected" in rt.stderr()


def test_idle_worker_death_is_replaced(runtime):
    rt = runtime(H("pid_sleep"), workers=2)
    before = rt.workers()
    os.kill(before[0], signal.SIGKILL)
    after = wait_for(lambda: len(rt.workers()) == 2 and before[0] not in rt.workers()
                     and rt.workers())
    assert after and before[1] in after
    assert pid_state(before[0]) == "gone"
    assert "killed by SIGKILL" in rt.stderr()


@pytest.mark.skipif(ASAN, reason="RLIMIT_AS cannot work with AddressSanitizer")
def test_memory_limit(runtime):
    rt = runtime(H("alloc"), env={"ASYA_WORKER_MEMORY_MB": "256"})
    code, d = error_of(rt.request(envelope({"max_mb": 4096})))
    assert (code, d["type"]) == ("oom_error", "MemoryError")
    mb = int(d["message"].split("after ")[1].split(" MiB")[0])
    assert 0 < mb < 256
    # Memory was freed: a modest allocation in the same worker succeeds.
    assert rt.request(envelope({"max_mb": 64}))[0]["payload"] == {"allocated_mb": 64}


# ---- start-up failures --------------------------------------------------------

BAD_STARTS = [
    ("/nonexistent/lib.so:echo", {}, ["ASYA_HANDLER=/nonexistent/lib.so:echo",
                                      "cannot read library"]),
    (HANDLERS, {}, ["ASYA_HANDLER=", "missing ':<function>'"]),
    (HANDLERS + ":", {}, ["missing function name"]),
    (H("no_such_function"), {}, ["function 'no_such_function' not found"]),
    (lib("rt_nostamp") + ":echo", {}, ["no Asya ABI stamp", "ASYA_MODULE_MAGIC"]),
    (lib("rt_badabi") + ":echo", {}, ["ABI stamp check failed", "ABI 99", "ABI 1"]),
    (lib("rt_smallstamp") + ":echo", {}, ["ABI stamp check failed", "stamp size 4"]),
    (lib("rt_initfail") + ":echo", {}, ["asya_init failed",
                                        "model file /nonexistent/model.bin is missing"]),
    ("@conftest@:echo", {}, ["cannot load library"]),
    (H("echo"), {"ASYA_HANDLER_MODE": "stream"}, ["ASYA_HANDLER_MODE=stream"]),
    (H("echo"), {"ASYA_SHUTDOWN_TIMEOUT": "5parsecs"}, ["ASYA_SHUTDOWN_TIMEOUT=5parsecs"]),
    (H("echo"), {"ASYA_RUNTIME_WORKERS": "0"}, ["ASYA_RUNTIME_WORKERS=0"]),
    (H("echo"), {"ASYA_RUNTIME_WORKERS": "two"}, ["ASYA_RUNTIME_WORKERS=two"]),
    (H("echo"), {"ASYA_WORKER_MEMORY_MB": "lots"}, ["ASYA_WORKER_MEMORY_MB=lots"]),
    (H("echo"), {"ASYA_MAX_MESSAGE_BYTES": "-1"}, ["ASYA_MAX_MESSAGE_BYTES=-1"]),
    (H("echo"), {"ASYA_SOCKET_CHMOD": "0999"}, ["ASYA_SOCKET_CHMOD=0999"]),
    (H("echo"), {"ASYA_LOG_LEVEL": "LOUD"}, ["ASYA_LOG_LEVEL=LOUD"]),
    (H("echo"), {"ASYA_WORKER_MEMORY_MB": "8"}, ["ASYA_WORKER_MEMORY_MB=8"]),
]


@pytest.mark.parametrize("handler,env,expect", BAD_STARTS,
                         ids=[str(i) for i in range(len(BAD_STARTS))])
def test_bad_start(runtime, handler, env, expect):
    handler = handler.replace("@conftest@", os.path.join(os.path.dirname(__file__),
                                                         "conftest.py"))
    rt = runtime(handler, env=env, workers=2, start=False)
    rt.start(wait=False)
    code = rt.proc.wait(15)
    assert code != 0
    errors = [l for l in rt.stderr().splitlines() if "ERROR" in l]
    assert len(errors) == 1, rt.stderr()
    for text in expect:
        assert text in errors[0], errors[0]
    assert not os.path.exists(rt.socket)
    assert not os.path.exists(rt.ready)
    rt.check_sanitizers()


# ---- lifecycle -------------------------------------------------------------------

def test_ready_file_and_socket_mode(runtime):
    rt = runtime(H("echo"), env={"ASYA_SOCKET_CHMOD": "0o600"})
    assert stat.S_IMODE(os.stat(rt.socket).st_mode) == 0o600
    with open(rt.ready) as f:
        assert f.read().strip() == str(rt.proc.pid)
    rt2 = runtime(H("echo"), env={"ASYA_SOCKET_CHMOD": "640"})
    assert stat.S_IMODE(os.stat(rt2.socket).st_mode) == 0o640
    rt3 = runtime(H("echo"))  # default 0660
    assert stat.S_IMODE(os.stat(rt3.socket).st_mode) == 0o660
    assert stat.S_ISSOCK(os.stat(rt3.socket).st_mode)


def test_sigterm_drains_in_flight_request(runtime):
    rt = runtime(H("pid_sleep"))
    c = rt.client()
    c.send(envelope({"sleep_ms": 800, "tag": "drain"}))
    time.sleep(0.2)
    rt.proc.send_signal(signal.SIGTERM)
    # New connections are refused at once: the socket file is gone.
    assert wait_for(lambda: not os.path.exists(rt.socket), 2)
    with pytest.raises(OSError):
        Client(rt.socket)
    answer = c.recv()
    assert answer[0]["payload"]["in"]["tag"] == "drain"
    c.close()
    assert rt.proc.wait(10) == 0
    assert not os.path.exists(rt.socket) and not os.path.exists(rt.ready)
    assert "stopped" in rt.stderr()


def test_sigterm_drain_runs_queued_requests_too(runtime):
    rt = runtime(H("pid_sleep"))
    a, b = rt.client(), rt.client()
    a.send(envelope({"sleep_ms": 500, "n": "a"}))
    time.sleep(0.1)
    b.send(envelope({"sleep_ms": 100, "n": "b"}))  # queued: one worker only
    time.sleep(0.1)
    rt.proc.send_signal(signal.SIGTERM)
    assert a.recv()[0]["payload"]["in"]["n"] == "a"
    assert b.recv()[0]["payload"]["in"]["n"] == "b"
    a.close()
    b.close()
    assert rt.proc.wait(10) == 0


def test_shutdown_timeout_kills_stuck_worker(runtime):
    rt = runtime(H("hang"), env={"ASYA_SHUTDOWN_TIMEOUT": "300ms"})
    [pid] = rt.workers()
    c = rt.client()
    c.send(envelope({}))
    time.sleep(0.2)
    t0 = time.monotonic()
    rt.proc.send_signal(signal.SIGTERM)
    assert rt.proc.wait(10) == 0
    assert time.monotonic() - t0 < 3
    assert c.recv_raw() is None  # no answer: the sidecar requeues
    assert pid_state(pid) == "gone"
    c.close()


def test_init_and_fini_hooks(runtime, tmp_path):
    marker = str(tmp_path / "marker")
    rt = runtime(lib("rt_hooks") + ":count_inits", env={"ASYA_TEST_MARKER": marker},
                 workers=2)
    pids = rt.workers()
    for _ in range(3):
        res = rt.request(envelope({}))[0]["payload"]
        assert res["inits"] == 1 and res["pid"] in pids
    assert rt.stop() == 0
    with open(marker) as f:
        lines = sorted(f.read().split("\n"))[1:]
    assert lines == sorted(["init %d" % p for p in pids] + ["fini %d" % p for p in pids])


def test_stale_socket_and_json_logs(runtime):
    rt = runtime(H("echo"), env={"ASYA_LOG_FORMAT": "json", "ASYA_LOG_LEVEL": "INFO"},
                 start=False)
    os.makedirs(os.path.dirname(rt.socket))
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(rt.socket)
    stale.close()  # leaves a socket file nobody listens on
    rt.start()
    assert rt.request(envelope(1))[0]["payload"] == 1
    assert rt.stop() == 0
    lines = [json.loads(l) for l in rt.stderr().splitlines() if l.strip()]
    assert lines and all(l["program"].startswith("asya-runtime") for l in lines)
    assert any("ready" in l["msg"] for l in lines)
    # Payloads never appear in INFO logs.
    assert all('"payload"' not in l["msg"] for l in lines)


# ---- the example handler ---------------------------------------------------------

def test_example_hello_handler(runtime):
    hello = os.path.join(os.path.dirname(HANDLERS), "..", "asya", "hello.so")
    rt = runtime(hello + ":hello", env={"HELLO_GREETING": "Bonjour"})
    answer = rt.request(envelope({"name": "Ada"}))
    assert answer[0]["payload"] == {"name": "Ada", "greeting": "Bonjour, Ada!"}
    code, d = error_of(rt.request(envelope([1, 2])))
    assert (code, d["type"], d["message"]) == ("processing_error", "ValueError",
                                               "payload must be a JSON object")
    exported = subprocess.run(["nm", "-D", "--defined-only", hello], capture_output=True,
                              text=True, check=True).stdout.split()
    assert {"asya_module_magic", "hello", "asya_init", "asya_fini"} <= set(exported)


def test_worker_failing_at_restart_backs_off_and_recovers(runtime, tmp_path):
    flag = tmp_path / "fail"
    rt = runtime(lib("rt_hooks") + ":count_inits", env={"ASYA_TEST_FAIL_FLAG": str(flag)})
    [pid] = rt.workers()
    flag.write_text("x")
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: "flag file" in rt.stderr(), 5), rt.stderr()
    assert wait_for(lambda: rt.stderr().count("keeps failing") >= 2, 5), rt.stderr()
    c = rt.client()
    c.send(envelope({}))  # waits in the queue while no worker can start
    time.sleep(0.3)
    flag.unlink()
    answer = c.recv()
    assert answer[0]["payload"]["inits"] == 1
    c.close()
    assert rt.proc.poll() is None  # the supervisor never gave up


def test_large_messages_round_trip(runtime):
    rt = runtime(H("echo"), workers=2)
    big = "\u00e9x" * (3 * 1024 * 1024)  # ~9 MiB of JSON text once encoded
    c = rt.client()
    for _ in range(2):
        answer = c.call(envelope({"data": big}))
        assert answer[0]["payload"]["data"] == big
    c.close()


def test_many_concurrent_connections(runtime):
    rt = runtime(H("echo"), workers=4)
    errors = []

    def client(k):
        try:
            c = rt.client()
            for i in range(4):
                got = c.call(envelope({"k": k, "i": i}))
                if got[0]["payload"] != {"k": k, "i": i}:
                    errors.append((k, i, got))
            c.close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
