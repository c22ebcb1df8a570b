"""Gateway -> actors -> end actors -> gateway: tool calls (REST and MCP), the job
record, SSE, pipelines, errors, concurrency, timeouts.

Every job runs through the real actors run.sh started; what the job ends with
is what the handlers computed and the end actors reported.
"""

import concurrent.futures
import datetime
import time

import pytest

import gva
from gva import (DOUBLER, ECHO, ERROR, ERROR_TEXT, INCREMENTER, PROGRESS, TIMEOUT,
                 assert_failed, assert_progress, assert_succeeded, parse_time,
                 progress_of, read_stream)


def create(gw, mcp, via, name, args):
    """A job through POST /tools/call (via="rest") or MCP tools/call (via="mcp")."""
    return gw.call_ok(name, args) if via == "rest" else mcp.call_ok(name, args)


VIA = pytest.mark.parametrize("via", ["rest", "mcp"])


# ---- simple tool execution ------------------------------------------------------------


@VIA
def test_simple_tool_execution(gw, mcp, via):
    """test_echo: echo_handler's {"echoed": message} is the job's result."""
    msg = f"Hello, World! ({via}) ✓"
    jid = create(gw, mcp, via, "test_echo", {"message": msg})
    job = gw.wait_final(jid)
    assert_succeeded(job, {"echoed": msg}, [ECHO], payload={"message": msg})
    assert job["id"] == jid
    assert job["steps_completed"] == 1 and job["current_step"] == ECHO, job


def test_tool_call_answer_text(gw):
    """The success text names the job and its endpoints (progress is on for every tool)."""
    res = gw.call("test_echo", {"message": "text"})
    jid = gva.job_id_of(res)
    assert res["content"][0]["text"].splitlines() == [
        f"Job created successfully with ID: {jid}",
        f"Check status: GET /jobs/{jid}",
        f"Stream progress: GET /jobs/{jid}/stream",
    ]
    gw.wait_final(jid)


def test_mcp_lists_the_suite_tools(mcp):
    tools = mcp.tools()
    assert {"test_echo", "test_progress", "test_pipeline", "test_error",
            "test_timeout"} <= set(tools), sorted(tools)
    echo = tools["test_echo"]["inputSchema"]
    assert echo["type"] == "object" and echo["required"] == ["message"], echo
    assert echo["properties"]["message"]["type"] == "string", echo
    pipe = tools["test_pipeline"]["inputSchema"]
    assert pipe["properties"]["value"]["type"] == "integer" and pipe["required"] == ["value"]
    assert tools["test_progress"]["inputSchema"]["properties"]["steps"]["default"] == 3
    assert tools["test_error"]["inputSchema"]["properties"]["should_fail"] == {
        "type": "boolean", "description": "Whether the handler should fail", "default": True}
    assert tools["test_timeout"]["inputSchema"]["properties"]["sleep_seconds"]["default"] == 60


def test_missing_required_argument_creates_no_job(gw, mcp):
    res = gw.call("test_pipeline", {})
    assert res.get("isError") is True, res
    assert "value" in res["content"][0]["text"], res
    res = mcp.call("test_echo", {"message": 5})
    assert res.get("isError") is True, res
    assert "message" in res["content"][0]["text"], res


# ---- SSE ------------------------------------------------------------------------------


def test_sse_progress_streaming(gw):
    """test_progress (5 steps = 1.5 s in the handler): the stream opens with the
    status, then every update as it happens: created (Pending), sent to the first
    actor (Running), the actor's received /
    processing / completed with their percents, the final Succeeded with the
    result; then it ends.  The completed update arrives while the stream is open,
    a handler's time after processing."""
    jid = gw.call_ok("test_progress", {"steps": 5})
    with gw.stream(jid) as s:
        first, ups = read_stream(s, timeout=20)
    assert first.data in ("Pending", "Running"), first
    data = [u.json() for u in ups]
    assert [(d["status"], d.get("message")) for d in data[:2]] == [
        ("Pending", "Job created"), ("Running", "Sending message to first actor")], data[:2]
    prog = progress_of(ups)
    assert assert_progress(jid, [PROGRESS], prog) == [10.0, 50.0, 100.0]
    final = data[-1]
    assert final["status"] == "Succeeded", final
    assert final["result"] == {"steps": 5, "steps_completed": 5}, final
    assert final["message"] == "Job completed successfully", final
    assert float(final["progress_percent"]) == 100.0
    assert len(data) == 6, data  # created, sent, 3 checkpoints, Succeeded: nothing else
    # Streamed live, not replayed at the end: the handler's 1.5 s lie between
    # processing and the end.
    t_processing = next(u.t for u in ups if u.json().get("step_status") == "processing")
    assert ups[-1].t - t_processing >= 1.2, (t_processing, ups[-1].t)
    assert_succeeded(gw.job(jid), {"steps": 5, "steps_completed": 5}, [PROGRESS])


def test_sse_of_a_finished_job_replays_everything(gw):
    """A subscriber that connects after the end still gets the whole history."""
    jid = gw.call_ok("test_pipeline", {"value": 1})
    gw.wait_final(jid)
    with gw.stream(jid) as s:
        first, ups = read_stream(s, timeout=10)
    assert first.data == "Succeeded"
    assert [(u.json()["status"], u.json().get("message")) for u in ups[:2]] == [
        ("Pending", "Job created"), ("Running", "Sending message to first actor")]
    # A fast pipeline's checkpoints are put back in order within 0.5 s only
    # (README.md, "Report order"): what must hold whatever the timing.
    assert_progress(jid, [DOUBLER, INCREMENTER], progress_of(ups), complete=False)
    assert ups[-1].json()["result"] == {"value": 7, "operation": "incremented"}


# ---- multi-step pipeline ----------------------------------------------------------------


@VIA
def test_multi_step_pipeline(gw, mcp, via):
    """doubler then incrementer: 10 * 2 + 5 = 25; the stream shows the steps'
    progress (in route order unless a report was over 0.5 s late: README.md,
    "Report order") and ends with the result."""
    jid = create(gw, mcp, via, "test_pipeline", {"value": 10})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    prog = progress_of(ups)
    assert prog, "no progress at all"
    assert_progress(jid, [DOUBLER, INCREMENTER], prog, complete=False)
    assert ups[-1].json()["status"] == "Succeeded"
    assert ups[-1].json()["result"] == {"value": 25, "operation": "incremented"}
    job = gw.job(jid)
    assert_succeeded(job, {"value": 25, "operation": "incremented"}, [DOUBLER, INCREMENTER],
                     payload={"value": 10})
    assert job["current_step"] in (DOUBLER, INCREMENTER), job


@pytest.mark.parametrize("value,want", [(0, 5), (-7, -9), (123456789, 246913583)])
def test_pipeline_values(gw, value, want):
    jid = gw.call_ok("test_pipeline", {"value": value})
    assert_succeeded(gw.wait_final(jid), {"value": want, "operation": "incremented"},
                     [DOUBLER, INCREMENTER])


# ---- errors ---------------------------------------------------------------------------


@VIA
def test_error_handling_with_sse(gw, mcp, via):
    """error_handler fails: error-end reports "<code>: <message>"; the stream ends
    with Failed and that error; the job holds it, no result."""
    jid = create(gw, mcp, via, "test_error", {"should_fail": True})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    final = ups[-1].json()
    assert final["status"] == "Failed", final
    assert final["error"] == ERROR_TEXT, final
    assert final["message"] == f"Job failed: {ERROR_TEXT}", final
    assert "result" not in final or final["result"] is None, final
    job = gw.job(jid)
    assert_failed(job, ERROR_TEXT, [ERROR])
    assert job["payload"] == {"should_fail": True}


def test_error_tool_default_fails(gw):
    """should_fail's default (true) is applied by the gateway."""
    jid = gw.call_ok("test_error")
    job = gw.wait_final(jid)
    assert_failed(job, ERROR_TEXT, [ERROR])
    assert job["payload"] == {"should_fail": True}


def test_error_tool_can_succeed(gw):
    jid = gw.call_ok("test_error", {"should_fail": False})
    assert_succeeded(gw.wait_final(jid), {"should_fail": False}, [ERROR])


# ---- the job status endpoint -------------------------------------------------------------


def test_job_status_endpoint(gw):
    """GET /jobs/{id} right after the call (Running: the envelope is confirmed and
    the job set Running before the answer), then at the end; /active follows."""
    before = datetime.datetime.now(datetime.timezone.utc)
    jid = gw.call_ok("test_echo", {"message": "status test"})
    job = gw.job(jid)
    assert job["id"] == jid
    assert job["status"] == "Running", job
    assert job["route"]["steps"] == [ECHO] and job["route"]["current"] == 0, job["route"]
    assert job["payload"] == {"message": "status test"}
    assert job["total_steps"] == 1 and job["timeout_seconds"] == 30, job
    created = parse_time(job["created_at"])
    assert abs((created - before).total_seconds()) < 5, (created, before)
    deadline = parse_time(job["deadline"])
    assert abs((deadline - created).total_seconds() - 30) < 1, (created, deadline)
    assert gw.get(f"/jobs/{jid}/active").status_code == 200
    final = gw.wait_final(jid)
    assert_succeeded(final, {"echoed": "status test"}, [ECHO])
    assert parse_time(final["updated_at"]) >= parse_time(final["created_at"])
    assert final["created_at"] == job["created_at"]
    r = gw.get(f"/jobs/{jid}/active")
    assert r.status_code == 410 and r.json() == {"active": False}, (r.status_code, r.text)


def test_unknown_job_is_404(gw):
    r = gw.get("/jobs/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404 and r.text.strip() == "Job not found", (r.status_code, r.text)
    r = gw.get("/jobs/00000000-0000-4000-8000-000000000000/stream")
    assert r.status_code == 404


# ---- concurrent jobs -----------------------------------------------------------------------


def test_concurrent_jobs(gw):
    """40 jobs at once on three tools (8 threads, REST and MCP): each ends with its own result."""
    specs = ([("test_pipeline", {"value": i}, {"value": 2 * i + 5, "operation": "incremented"},
               [DOUBLER, INCREMENTER]) for i in range(30)] +
             [("test_echo", {"message": f"concurrent-{i}"}, {"echoed": f"concurrent-{i}"}, [ECHO])
              for i in range(4)] +
             [("test_progress", {"steps": 1 + i % 3}, {"steps": 1 + i % 3,
                                                       "steps_completed": 1 + i % 3}, [PROGRESS])
              for i in range(6)])

    def run(k):
        name, args, _, _ = specs[k]
        if k % 2:
            return gw.call_ok(name, args)
        m = gva.Mcp(gw.url)
        try:
            return m.call_ok(name, args)
        finally:
            m.close()

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(run, range(len(specs))))
    assert len(set(ids)) == len(ids)
    for jid, (name, args, result, route) in zip(ids, specs):
        assert_succeeded(gw.wait_final(jid, timeout=30), result, route, payload=args)


# ---- timeouts ---------------------------------------------------------------------------------


def test_timeout_handling_sidecar_timeout(gw):
    """timeout_handler sleeps 60 s; its sidecar gives up after 5 s (ASYA_RUNTIME_TIMEOUT):
    error-end reports timeout_error, the job is Failed well before its 10 s deadline."""
    t0 = time.monotonic()
    jid = gw.call_ok("test_timeout", {"sleep_seconds": 60})
    job = gw.wait_final(jid, timeout=15)
    took = time.monotonic() - t0
    assert_failed(job, "timeout_error: the runtime did not answer within 5s (ASYA_RUNTIME_TIMEOUT)",
                  [TIMEOUT])
    assert 4.5 <= took < 9.5, f"failed after {took:.1f}s"
    assert job["timeout_seconds"] == 10


def test_timeout_handling_job_deadline(gw):
    """The tool's own 10 s deadline: three 4 s jobs queue on the one-at-a-time
    timeout actor; the first two finish in time (8 s), the third would finish at
    12 s and is Failed "job timed out" at 10 s; its late final changes nothing."""
    ids = [gw.call_ok("test_timeout", {"sleep_seconds": 4}) for _ in range(3)]
    t0 = time.monotonic()
    for jid in ids[:2]:
        assert_succeeded(gw.wait_final(jid, timeout=12), {"sleep_seconds": 4}, [TIMEOUT])
    with gw.stream(ids[2]) as s:
        _, ups = read_stream(s, timeout=15)
    took = time.monotonic() - t0
    final = ups[-1].json()
    assert final["status"] == "Failed" and final["error"] == "job timed out", final
    assert final["message"] == "Job failed: job timed out", final
    assert 9.0 <= took < 12.5, f"deadline after {took:.1f}s"
    # The actor still finishes it (~12 s) and happy-end reports it: the job stays as it was.
    before = gva.actor_metric(gva.HAPPY_END, "final_reports_sent_total")
    gw.wait_job(ids[2], lambda j: True)
    deadline = time.monotonic() + 10
    while gva.actor_metric(gva.HAPPY_END, "final_reports_sent_total") <= before:
        assert time.monotonic() < deadline, "happy-end never reported the late job"
        time.sleep(0.1)
    job = gw.job(ids[2])
    assert_failed(job, "job timed out", [TIMEOUT])
