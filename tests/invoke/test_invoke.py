"""asya-invoke: one request through a real asya-runtime child, every exit
status, the start-up errors, timeouts and clean-up."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from invokelib import (ASAN, EXIT_NO_ANSWER, EXIT_OK, EXIT_OOM, EXIT_PARSING, EXIT_PROCESSING,
                       EXIT_TIMEOUT, EXIT_USAGE, FIXTURES, INVOKE, RT, RUNTIME, clean_env,
                       invoke, processes_with_env, rt, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_runtime.py")
ROUTE = {"actors": ["invoke"], "current": 0}


# ---- command line ---------------------------------------------------------

def test_version():
    res = invoke("--version")
    assert res.code == 0
    assert res.stdout == "asya-invoke 0.1.0 (handler ABI 1)\n"
    # The same version line shape as the runtime's.
    out = subprocess.run([RUNTIME, "--version"], capture_output=True, text=True)
    assert out.stdout == res.stdout.replace("asya-invoke", "asya-runtime")


def test_help_documents_options_and_exit_codes():
    res = invoke("--help")
    assert res.code == 0 and res.stderr == ""
    for word in ("--handler", "--mode", "--payload", "--timeout", "--memory-mb", "--pretty",
                 "--start-timeout", "--verbose", "ASYA_RUNTIME_BIN", "Exit status",
                 "processing_error", "oom_error", "timeout_error", "msg_parsing_error"):
        assert word in res.stdout, word
    for code in range(7):
        assert "\n  %d  " % code in res.stdout, code


@pytest.mark.parametrize("args, text", [
    ([], "no handler"),
    (["--handler", rt("echo"), "--mode", "stream"], "--mode stream"),
    (["--handler", rt("echo"), "--timeout", "5 parsecs"], "--timeout 5 parsecs"),
    (["--handler", rt("echo"), "--memory-mb", "lots"], "--memory-mb lots"),
    (["--handler", rt("echo"), "--bogus"], "unknown option '--bogus'"),
    (["--handler"], "--handler needs a value"),
    (["--handler", rt("echo"), "a.json", "b.json"], "one input file at most"),
    (["--handler", rt("echo"), "/nonexistent/input.json"], "cannot read /nonexistent/input.json"),
])
def test_usage_errors(args, text):
    res = invoke(*args, input="{}")
    assert res.code == EXIT_USAGE, res
    assert res.stdout == ""
    assert text in res.stderr, res
    assert len(res.stderr.splitlines()) == 1, res


def test_runtime_not_found():
    res = invoke("--handler", rt("echo"), input="{}",
                 env={"ASYA_RUNTIME_BIN": "/nonexistent/asya-runtime"})
    assert res.code == EXIT_USAGE and res.stdout == ""
    assert "cannot run /nonexistent/asya-runtime" in res.stderr


# ---- start-up errors: the runtime's own line, exit 2 ------------------------

@pytest.mark.parametrize("handler, text", [
    ("/nonexistent/lib.so:fn",
     "asya-runtime: ASYA_HANDLER=/nonexistent/lib.so:fn: cannot read library "
     "/nonexistent/lib.so: No such file or directory"),
    (RT + ":no_such_function",
     "asya-runtime: ASYA_HANDLER=%s:no_such_function: function 'no_such_function' not "
     "found in %s (is it exported with ASYA_EXPORT?)" % (RT, RT)),
    (os.path.join(FIXTURES, "rt_badabi.so") + ":echo",
     "ABI stamp check failed: library built for handler ABI 99, this runtime speaks ABI 1"),
    (os.path.join(FIXTURES, "rt_nostamp.so") + ":echo",
     "has no Asya ABI stamp (asya_module_magic not found)"),
    (os.path.join(FIXTURES, "rt_initfail.so") + ":echo",
     "asya_init failed: model file /nonexistent/model.bin is missing"),
    (RT, "missing ':<function>'"),
    (RT + ":not-an-identifier", "is not a C identifier"),
])
def test_startup_errors_print_the_runtime_line(handler, text):
    res = invoke("--handler", handler, "--payload", input="{}")
    assert res.code == EXIT_USAGE, res
    assert res.stdout == ""
    assert text in res.stderr, res
    # Exactly the runtime's one error line, without its timestamp prefix.
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asya-runtime: "), res


def test_startup_error_is_the_same_as_the_runtime(tmp_path):
    """The line is the one asya-runtime itself logs for the same handler."""
    handler = os.path.join(FIXTURES, "rt_badabi.so") + ":echo"
    out = subprocess.run([RUNTIME], env=clean_env({
        "ASYA_HANDLER": handler, "ASYA_SOCKET_PATH": str(tmp_path / "s.sock")}),
        capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    runtime_line = [l for l in out.stderr.splitlines() if " ERROR " in l][0]
    res = invoke("--handler", handler, input="{}")
    assert res.stderr.strip() == "asya-runtime: " + runtime_line.split("]: ", 1)[1]


def test_bare_library_name_gets_a_hint():
    res = subprocess.run([INVOKE, "--handler", "rt_handlers.so:echo", "--payload"],
                         input=b"{}", capture_output=True, cwd=FIXTURES, env=clean_env())
    assert res.returncode == EXIT_USAGE
    err = res.stderr.decode()
    assert "cannot load library" in err
    assert "hint:" in err and "./rt_handlers.so:echo" in err


def test_handler_from_environment():
    res = invoke("--payload", input='{"a": 1}', env={"ASYA_HANDLER": rt("echo")})
    assert res.code == EXIT_OK, res
    assert res.json() == [{"payload": {"a": 1}, "route": ROUTE}]


# ---- answers: exit 0 ------------------------------------------------------

def test_payload_is_wrapped_and_kept_byte_exact():
    payload = '{"x": 2.50, "big": 1e300, "s": "\\u00e9\u00e9", "n": [1, null]}'
    res = invoke("--handler", rt("echo"), "--payload", input=payload)
    assert res.code == EXIT_OK, res
    # The answer is the runtime's frame, unchanged, plus a newline.
    assert res.stdout == ('[{"payload":' + payload + ',"route":'
                          '{"actors":["invoke"],"current":0}}]\n')
    assert res.stderr == ""


def test_envelope_from_file_and_stdin(tmp_path):
    env = {"id": "m-7", "route": {"actors": ["a", "b"], "current": 1}, "headers": {"t": "x"},
           "payload": {"k": [1, 2]}}
    f = tmp_path / "env.json"
    f.write_text(json.dumps(env))
    want = [{"payload": {"k": [1, 2]}, "route": {"actors": ["a", "b"], "current": 1}}]
    for args, stdin in (([str(f)], None), (["-"], env), ([], env)):
        res = invoke("--handler", rt("echo"), *args, input=stdin)
        assert res.code == EXIT_OK, res
        assert res.json() == want


def test_pretty():
    res = invoke("--handler", rt("echo"), "--payload", "--pretty", input='{"a": 1}')
    assert res.code == EXIT_OK
    assert res.stdout.startswith("[\n  {\n")
    assert json.loads(res.stdout) == [{"payload": {"a": 1}, "route": ROUTE}]


def test_empty_result_is_success():
    res = invoke("--handler", rt("empty"), "--payload", input="{}")
    assert res.code == EXIT_OK, res
    assert res.stdout == "[]\n"


def test_fanout():
    res = invoke("--handler", rt("fanout"), "--payload", input='{"count": 3}')
    assert res.code == EXIT_OK, res
    assert res.json() == [{"payload": {"index": i, "of": 3}, "route": ROUTE} for i in range(3)]


def test_envelope_mode():
    """In envelope mode the handler gets (and echo returns) the whole envelope
    that --payload built."""
    want = [{"id": "invoke-1", "route": ROUTE, "payload": {"a": 1}}]
    res = invoke("--handler", rt("echo"), "--mode", "envelope", "--payload", input='{"a": 1}')
    assert res.code == EXIT_OK, res
    assert res.json() == want
    # ASYA_HANDLER_MODE from the environment works too.
    res = invoke("--handler", rt("echo"), "--payload", input='{"a": 1}',
                 env={"ASYA_HANDLER_MODE": "envelope"})
    assert res.json() == want
    # A result that is not an envelope is the handler's error, as in the runtime.
    res = invoke("--handler", rt("inspect"), "--mode", "envelope", "--payload", input="{}")
    assert res.code == EXIT_PROCESSING, res
    assert "not a valid envelope" in res.error()[1]["message"]


# ---- error answers: exit 3..6 ---------------------------------------------

def test_processing_error():
    res = invoke("--handler", rt("fail"), "--payload", input='{"error_msg": "boom"}')
    assert res.code == EXIT_PROCESSING, res
    code, details = res.error()
    assert code == "processing_error" and details["type"] == "ValueError"
    assert "boom" in details["message"]
    assert res.stderr.strip().startswith("asya-invoke: processing_error: ValueError: ")


@pytest.mark.parametrize("fn, sig", [("segv", "SIGSEGV"), ("abort_handler", "SIGABRT")])
def test_crash_is_processing_error(fn, sig):
    res = invoke("--handler", rt(fn), "--payload", input="{}")
    assert res.code == EXIT_PROCESSING, res
    code, details = res.error()
    assert code == "processing_error" and details["type"] == sig


@pytest.mark.parametrize("fn, code", [("oom", "oom_error"), ("cuda_oom", "cuda_oom_error")])
def test_oom(fn, code):
    res = invoke("--handler", rt(fn), "--payload", input="{}")
    assert res.code == EXIT_OOM, res
    assert res.error()[0] == code


@pytest.mark.skipif(ASAN, reason="RLIMIT_AS cannot work under AddressSanitizer")
def test_memory_limit():
    res = invoke("--handler", rt("alloc"), "--payload", "--memory-mb", "64",
                 input='{"max_mb": 512}')
    assert res.code == EXIT_OOM, res
    assert res.error()[0] == "oom_error"
    # Without the limit the same request succeeds.
    res = invoke("--handler", rt("alloc"), "--payload", input='{"max_mb": 128}')
    assert res.code == EXIT_OK, res


def test_timeout_kills_the_worker():
    tmpdir = tempfile.mkdtemp(prefix="invoke-timeout-")
    env = clean_env({"TMPDIR": tmpdir})
    start = time.monotonic()
    with open(os.path.join(tmpdir, "in.json"), "w") as f:
        f.write("{}")
    proc = subprocess.Popen([INVOKE, "--handler", rt("hang"), "--payload", "--timeout", "1500ms",
                             os.path.join(tmpdir, "in.json")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    # The runtime and its worker carry the private socket path in their environment.
    seen = wait_for(lambda: len(processes_with_env(tmpdir)) >= 2 and processes_with_env(tmpdir))
    assert seen, "runtime and worker not found"
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - start
    assert proc.returncode == EXIT_TIMEOUT, (out, err)
    assert 1.4 < elapsed < 15, elapsed
    answer = json.loads(out)
    assert answer[0]["error"] == "timeout_error"
    assert answer[0]["details"]["type"] == "TimeoutError"
    assert "1.5s" in answer[0]["details"]["message"]
    # The runtime killed the busy worker because the connection closed.
    assert "client disconnected while worker" in err.decode(), err
    assert wait_for(lambda: processes_with_env(tmpdir) == [], timeout=10), seen
    assert os.listdir(tmpdir) == ["in.json"]
    shutil.rmtree(tmpdir)


def test_timeout_from_environment():
    res = invoke("--handler", rt("hang"), "--payload", input="{}",
                 env={"ASYA_RUNTIME_TIMEOUT": "500ms"})
    assert res.code == EXIT_TIMEOUT, res
    assert "500ms" in res.error()[1]["message"]


@pytest.mark.parametrize("body, args, text", [
    ("not json at all", [], "invalid JSON"),
    ('{"payload": 1}', [], "route"),
    ('{"payload": 1, "route": {"actors": ["a"], "current": "x"}}', [], "current"),
    ("not json", ["--payload"], "the payload is not valid JSON"),
    ("", ["--payload"], "the payload is not valid JSON"),
])
def test_msg_parsing_error(body, args, text):
    res = invoke("--handler", rt("echo"), *args, input=body)
    assert res.code == EXIT_PARSING, res
    code, details = res.error()
    assert code == "msg_parsing_error"
    assert text in details["message"], details


# ---- no usable answer: exit 1 ---------------------------------------------

@pytest.mark.parametrize("mode, text", [
    ("close", "closed the connection without answering"),
    ("die", "closed the connection without answering"),
    ("garbage", "not the protocol"),
])
def test_no_usable_answer(mode, text):
    res = invoke("--handler", rt("echo"), "--payload", input="{}",
                 env={"ASYA_RUNTIME_BIN": FAKE, "FAKE_MODE": mode}, unclean_stop=True)
    assert res.code == EXIT_NO_ANSWER, res
    assert text in res.stdout + res.stderr, res
    if mode != "garbage":
        assert res.error()[0] == "connection_error"


def test_unknown_error_code():
    res = invoke("--handler", rt("echo"), "--payload", input="{}",
                 env={"ASYA_RUNTIME_BIN": FAKE, "FAKE_MODE": "unknown_code"})
    assert res.code == EXIT_NO_ANSWER, res
    assert res.error()[0] == "weird_error"


def test_runtime_environment():
    """What the runtime child gets: a private socket, one worker, the options."""
    res = invoke("--handler", rt("echo"), "--payload", "--memory-mb", "300", "--mode",
                 "envelope", input="{}",
                 env={"ASYA_RUNTIME_BIN": FAKE, "FAKE_MODE": "env",
                      "ASYA_MAX_MESSAGE_BYTES": "123456", "ASYA_RUNTIME_WORKERS": "8"})
    assert res.code == EXIT_OK, res
    env = res.json()[0]["payload"]
    assert env["ASYA_HANDLER"] == rt("echo")
    assert env["ASYA_HANDLER_MODE"] == "envelope"
    assert env["ASYA_WORKER_MEMORY_MB"] == "300"
    assert env["ASYA_RUNTIME_WORKERS"] == "1"
    assert env["ASYA_MAX_MESSAGE_BYTES"] == "123456"  # passed through
    assert env["ASYA_SOCKET_PATH"].startswith(res.tmpdir + "/asya-invoke-")
    assert env["ASYA_SOCKET_CHMOD"] == "0600"


# ---- signals --------------------------------------------------------------

def test_interrupt_stops_the_runtime():
    tmpdir = tempfile.mkdtemp(prefix="invoke-int-")
    with open(os.path.join(tmpdir, "in.json"), "w") as f:
        f.write("{}")
    proc = subprocess.Popen([INVOKE, "--handler", rt("hang"), "--payload",
                             os.path.join(tmpdir, "in.json")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env({"TMPDIR": tmpdir}))
    assert wait_for(lambda: len(processes_with_env(tmpdir)) >= 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT, (out, err)
    assert out == b""
    assert wait_for(lambda: processes_with_env(tmpdir) == [], timeout=10)
    assert os.listdir(tmpdir) == ["in.json"]
    shutil.rmtree(tmpdir)


def test_verbose_shows_runtime_log():
    res = invoke("-v", "--handler", rt("echo"), "--payload", input="{}")
    assert res.code == EXIT_OK
    assert " INFO " in res.stderr and "asya-runtime[" in res.stderr
