"""The HTTP API of GATEWAY.md, endpoint by endpoint, against both stores.

Every test here runs twice: with the in-memory store and with PostgreSQL (a
fresh database per module).  One gateway per store is shared by the module's
tests; each test makes its own jobs, so they never see each other's.
"""

import datetime
import re
import time
import uuid

import pytest

from conftest import UUID_RE
from gwlib import (close_to, now_utc, parse_time, percent, post_final, post_heartbeat,
                   post_progress)

PIPELINE_DEFAULTS = {"mode": "fast", "ratio": 0.5, "flag": False}


def tool_text(r):
    assert r.status_code == 200, f"{r.status_code} {r.text!r}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    res = r.json()
    assert isinstance(res.get("content"), list) and len(res["content"]) == 1, res
    c = res["content"][0]
    assert c.get("type") == "text" and isinstance(c.get("text"), str), res
    return res, c["text"]


def tool_error(r, text):
    """A tool-level failure: 200, isError true, exactly this text (the
    gateway's "invalid arguments: " and the reason of routes.h)."""
    res, got = tool_text(r)
    assert res.get("isError") is True, res
    assert got == text, f"error text {got!r}, expected {text!r}"
    assert set(res) <= {"content", "isError"}, res


def job_id_of(text):
    first = text.splitlines()[0]
    m = re.fullmatch(r"Job created successfully with ID: (\S+)", first)
    assert m, f"first line {first!r}"
    assert UUID_RE.match(m.group(1)), f"not a v4 UUID: {m.group(1)!r}"
    return m.group(1)


def int_field(j, k):
    v = j[k]
    assert isinstance(v, int) and not isinstance(v, bool), f"{k}: {v!r} is not an integer"
    return v


def num_field(j, k):
    v = j[k]
    assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{k}: {v!r} is not a number"
    return float(v)


def absent_or_null(j, k):
    assert j.get(k) is None, f"{k} should be absent or null: {j.get(k)!r}"


# ---- POST /tools/call ------------------------------------------------------------------


def test_tools_call_success_text(gw, mq, q):
    r = gw.call("echo", {"message": "hello"})
    res, text = tool_text(r)
    assert not res.get("isError"), res
    jid = job_id_of(text)
    lines = text.splitlines()
    status = [i for i, l in enumerate(lines) if re.search(rf"GET /jobs/{jid}(?![/\w-])", l)]
    stream = [i for i, l in enumerate(lines) if f"GET /jobs/{jid}/stream" in l]
    meta = [(i, l) for i, l in enumerate(lines) if re.fullmatch(r"  [^ :]+: .*", l)]
    assert len(status) == 1, f"one line naming GET /jobs/{jid}: {text!r}"
    assert len(stream) == 1, f"one line naming GET /jobs/{jid}/stream: {text!r}"
    assert [l for _, l in meta] == ["  owner: team-x", "  tier: gold"], text
    assert 0 < status[0] < stream[0] < meta[0][0], f"order: id, status, stream, metadata: {text!r}"
    # The job exists, and its envelope went out.
    assert gw.job(jid)["id"] == jid
    assert mq.get_job(q.echo, jid, timeout=5) is not None


def test_tools_call_without_progress_names_no_stream(gw, mq, q):
    res, text = tool_text(gw.call("quiet", {"message": "shh"}))
    assert not res.get("isError"), res
    jid = job_id_of(text)
    assert re.search(rf"GET /jobs/{jid}(?![/\w-])", text), text
    assert "/stream" not in text, text
    assert not [l for l in text.splitlines() if re.fullmatch(r"  [^ :]+: .*", l)], \
        f"a tool without metadata shows none: {text!r}"
    assert mq.get_job(q.echo, jid, timeout=5) is not None


def test_tools_call_ids_are_unique(gw, mq, q):
    ids = {gw.call_ok("quiet", {}) for _ in range(20)}
    assert len(ids) == 20
    for jid in ids:
        assert mq.get_job(q.echo, jid, timeout=5) is not None, jid


@pytest.mark.parametrize("body", [b"{not json", b"", b"null", b"[]", b'"echo"',
                                  b'{"name": "echo", "arguments": {"message": "x"}',
                                  b'{"name": 5, "arguments": {}}',
                                  b'{"arguments": {"message": "x"}}',
                                  b'{"name": "", "arguments": {}}'])
def test_tools_call_400(gw, body):
    r = gw.post("/tools/call", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, f"{body!r}: {r.status_code} {r.text!r}"


def test_tools_call_404_unknown_tool(gw):
    r = gw.call("no_such_tool", {})
    assert r.status_code == 404, r.text
    assert r.text.strip() == 'Tool "no_such_tool" not found'


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_tools_call_405(gw, method):
    r = gw.request(method, "/tools/call")
    assert r.status_code == 405, f"{method}: {r.status_code} {r.text!r}"
    assert "POST" in r.headers.get("Allow", ""), r.headers


@pytest.mark.parametrize("tool,args,text", [
    ("echo", {}, "missing required parameter: message"),
    ("echo", None, "missing required parameter: message"),
    ("echo", {"message": 5}, "parameter message: expected string, got integer"),
    ("echo", {"message": None}, "parameter message: expected string, got null"),
    ("pipeline", {}, "missing required parameter: value"),
    ("pipeline", {"value": "seven"}, "parameter value: expected integer, got string"),
    ("pipeline", {"value": 1.5}, "parameter value: expected integer, got number"),
    ("pipeline", {"value": True}, "parameter value: expected integer, got boolean"),
    ("pipeline", {"value": 1, "mode": "turbo"}, 'parameter mode: "turbo" is not one of [fast, slow]'),
    ("pipeline", {"value": 1, "ratio": "half"}, "parameter ratio: expected number, got string"),
    ("pipeline", {"value": 1, "flag": "yes"}, "parameter flag: expected boolean, got string"),
    ("pipeline", {"value": 1, "opts": [1]}, "parameter opts: expected object, got array"),
    ("pipeline", {"value": 1, "opts": {"depth": True}},
     "parameter opts.depth: expected number, got boolean"),
    ("pipeline", {"value": 1, "tags": "a,b"}, "parameter tags: expected array, got string"),
])
def test_tools_call_invalid_arguments(gw, mq, q, tool, args, text):
    first = q.echo if tool == "echo" else q.alpha
    before = mq.depth(first)
    tool_error(gw.call(tool, args), "invalid arguments: " + text)
    time.sleep(0.1)
    assert mq.depth(first) == before, "a refused call publishes nothing"


def test_tools_call_invalid_array_item(gw, mq, q):
    before = mq.depth(q.alpha)
    res, text = tool_text(gw.call("pipeline", {"value": 1, "tags": ["a", 2]}))
    assert res.get("isError") is True, res
    assert text.startswith("invalid arguments: parameter tags") and \
        text.endswith("expected string, got integer"), text
    assert mq.depth(q.alpha) == before


def test_tools_call_arguments_not_an_object(gw, mq, q):
    before = mq.depth(q.echo)
    r = gw.call("quiet", [1, 2])
    if r.status_code == 200:
        assert r.json().get("isError") is True, r.json()
    else:
        assert r.status_code == 400, r.text
    assert mq.depth(q.echo) == before


def test_tools_call_defaults_applied_to_payload(gw, mq, q):
    jid = gw.call_ok("pipeline", {"value": 3})
    want = {"value": 3, **PIPELINE_DEFAULTS}
    m = mq.get_job(q.alpha, jid, timeout=5)
    assert m is not None
    assert m.json["payload"] == want
    assert gw.job(jid)["payload"] == want


def test_tools_call_nested_defaults_and_unknown_names_kept(gw, mq, q):
    args = {"value": -4, "mode": "slow", "flag": True, "opts": {"label": "x"},
            "tags": ["a", "b"], "extra": {"keep": [1, 2]}}
    jid = gw.call_ok("pipeline", args)
    want = {"value": -4, "mode": "slow", "ratio": 0.5, "flag": True,
            "opts": {"label": "x", "depth": 2}, "tags": ["a", "b"], "extra": {"keep": [1, 2]}}
    m = mq.get_job(q.alpha, jid, timeout=5)
    assert m is not None and m.json["payload"] == want, m
    assert gw.job(jid)["payload"] == want


def test_tools_call_integer_valued_number_is_an_integer(gw, mq, q):
    jid = gw.call_ok("pipeline", {"value": 2, "ratio": 3})
    m = mq.get_job(q.alpha, jid, timeout=5)
    assert m.json["payload"]["ratio"] == 3


# ---- GET /jobs/{id} ----------------------------------------------------------------------


def test_job_json_fields_and_types(gw, mq, q):
    t0 = now_utc()
    jid = gw.call_ok("pipeline", {"value": 7})
    j = gw.job(jid)
    required = {"id", "status", "route", "payload", "deadline", "progress_percent",
                "steps_completed", "total_steps", "created_at", "updated_at"}
    optional = {"result", "error", "timeout_seconds", "current_step"}
    assert required <= set(j), f"missing {required - set(j)}: {j}"
    assert set(j) <= required | optional, f"unexpected {set(j) - required - optional}"
    assert j["id"] == jid
    assert j["status"] == "Running", j
    route = j["route"]
    assert route["steps"] == [q.alpha, q.beta, q.gamma], route
    assert int_field(route, "current") == 0
    assert set(route) <= {"steps", "current", "metadata"}, route
    assert route.get("metadata") in (None, {"job_id": jid}), route
    assert j["payload"] == {"value": 7, **PIPELINE_DEFAULTS}
    absent_or_null(j, "result")
    absent_or_null(j, "error")
    absent_or_null(j, "current_step")
    assert int_field(j, "timeout_seconds") == 60
    assert num_field(j, "progress_percent") == 0
    assert int_field(j, "steps_completed") == 0
    assert int_field(j, "total_steps") == 3
    created, updated, deadline = (parse_time(j[k]) for k in ("created_at", "updated_at", "deadline"))
    slack = datetime.timedelta(seconds=2)
    assert t0 - slack <= created <= now_utc() + slack, (t0, created)
    assert created <= updated <= now_utc() + slack
    assert abs((deadline - created).total_seconds() - 60) < 1.5, (created, deadline)
    assert mq.get_job(q.alpha, jid, timeout=5) is not None


def test_job_404(gw):
    r = gw.get(f"/jobs/{uuid.uuid4()}")
    assert r.status_code == 404
    assert r.text.strip() == "Job not found"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_job_405(gw, method):
    jid = gw.call_ok("quiet", {})
    r = gw.request(method, f"/jobs/{jid}")
    assert r.status_code == 405, f"{method}: {r.status_code} {r.text!r}"
    assert gw.job(jid)["status"] == "Running"


@pytest.mark.parametrize("method,path", [
    ("POST", "/jobs/{id}/stream"), ("POST", "/jobs/{id}/active"),
    ("GET", "/jobs/{id}/progress"), ("GET", "/jobs/{id}/heartbeat"), ("GET", "/jobs/{id}/final"),
    ("PUT", "/jobs/{id}/final"), ("POST", "/health"), ("DELETE", "/health"),
])
def test_subresource_405(gw, method, path):
    jid = gw.call_ok("quiet", {})
    r = gw.request(method, path.format(id=jid))
    assert r.status_code == 405, f"{method} {path}: {r.status_code} {r.text!r}"


@pytest.mark.parametrize("method,path", [
    ("GET", "/jobs/"), ("GET", "/jobs//stream"), ("GET", "/jobs//active"),
    ("POST", "/jobs//progress"), ("POST", "/jobs//heartbeat"), ("POST", "/jobs//final"),
])
def test_empty_id_400(gw, method, path):
    r = gw.request(method, path, json={"status": "succeeded"} if method == "POST" else None)
    assert r.status_code == 400, f"{method} {path}: {r.status_code} {r.text!r}"


def test_unknown_path_404(gw):
    assert gw.get("/nope").status_code == 404
    assert gw.get(f"/jobs/{uuid.uuid4()}/nope").status_code == 404


# ---- GET /jobs/{id}/active ------------------------------------------------------------------


def test_active_200_then_410(gw):
    jid = gw.call_ok("quiet", {})
    r = gw.get(f"/jobs/{jid}/active")
    assert r.status_code == 200 and r.json() == {"active": True}, r.text
    assert post_final(gw, jid, "succeeded", result={"ok": 1}).status_code == 200
    r = gw.get(f"/jobs/{jid}/active")
    assert r.status_code == 410 and r.json() == {"active": False}, r.text


def test_active_410_after_failed(gw):
    jid = gw.call_ok("quiet", {})
    assert post_final(gw, jid, "failed", error="E: no").status_code == 200
    r = gw.get(f"/jobs/{jid}/active")
    assert r.status_code == 410 and r.json() == {"active": False}, r.text


# ---- POST /jobs/{id}/progress ---------------------------------------------------------------------


def test_progress_percent_arithmetic(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    steps = [q.alpha, q.beta, q.gamma]
    done = 0
    for i, step in enumerate(steps):
        for st in ("received", "processing", "completed"):
            r = post_progress(gw, jid, step, i, 3, st, message=f"{step} {st}")
            assert r.status_code == 200, r.text
            body = r.json()
            want = percent(i, 3, st)
            assert body["status"] == "ok" and set(body) == {"status", "progress_percent"}, body
            assert close_to(body["progress_percent"], want), (st, i, body, want)
            if st == "completed":
                done = i + 1
            j = gw.job(jid)
            assert j["status"] == "Running", j
            assert close_to(j["progress_percent"], want), (st, i, j["progress_percent"], want)
            assert j["current_step"] == step
            assert j["steps_completed"] == done, (st, i, j["steps_completed"])
    assert close_to(gw.job(jid)["progress_percent"], 100)


def test_progress_never_goes_down(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    assert post_progress(gw, jid, q.beta, 1, 3, "completed").status_code == 200
    high = percent(1, 3, "completed")
    for i, st in [(0, "received"), (1, "received"), (0, "completed"), (1, "processing")]:
        r = post_progress(gw, jid, [q.alpha, q.beta][i], i, 3, st)
        assert r.status_code == 200, r.text
        assert close_to(r.json()["progress_percent"], high), (i, st, r.json())
        assert close_to(gw.job(jid)["progress_percent"], high)
    assert gw.job(jid)["steps_completed"] == 2


@pytest.mark.parametrize("index,total,st,want", [
    (7, 3, "completed", 100.0),   # past the route: clamped to 100
    (0, 0, "completed", 0.0),     # total_steps 0 -> 0
    (-1, 3, "received", 0.0),     # below 0: clamped to 0
    (1, 4, "processing", 37.5),
    (0, 1, "processing", 50.0),
])
def test_progress_clamp_and_zero_total(gw, q, index, total, st, want):
    jid = gw.call_ok("pipeline", {"value": 1})
    r = post_progress(gw, jid, q.alpha, index, total, st)
    assert r.status_code == 200, r.text
    assert close_to(r.json()["progress_percent"], want), r.json()
    j = gw.job(jid)
    assert close_to(j["progress_percent"], want) and j["status"] == "Running", j


def test_progress_sets_running_and_ignores_extra_fields(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    r = post_progress(gw, jid, q.alpha, 0, 3, "processing", duration_ms=12, route={"x": 1},
                      unknown="field")
    assert r.status_code == 200, r.text
    j = gw.job(jid)
    assert j["status"] == "Running" and j["current_step"] == q.alpha


def test_handler_progress_within_a_step(gw, q):
    """A sidecar relaying its handler's own progress: status processing with
    "progress" f places the job at (index*100 + 50 + 49*f) / total, between the
    step's processing and completed; the message is the update's."""
    jid = gw.call_ok("pipeline", {"value": 1})
    assert post_progress(gw, jid, q.beta, 1, 3, "processing").status_code == 200
    for f in (0.0, 0.5, 1.0):
        r = post_progress(gw, jid, q.beta, 1, 3, "processing", message=f"{f:.0%} done",
                          progress=f)
        assert r.status_code == 200, r.text
        want = (100 + 50 + 49 * f) / 3
        assert close_to(r.json()["progress_percent"], want), (f, r.json())
        j = gw.job(jid)
        assert close_to(j["progress_percent"], want) and j["steps_completed"] == 0, j
    r = post_progress(gw, jid, q.beta, 1, 3, "completed")
    assert close_to(r.json()["progress_percent"], percent(1, 3, "completed"))


@pytest.mark.parametrize("status,progress", [
    ("processing", 1.5), ("processing", -0.1), ("processing", "half"), ("processing", None),
    ("received", 0.5), ("completed", 0.5),
])
def test_handler_progress_400_out_of_range_or_wrong_status(gw, q, status, progress):
    jid = gw.call_ok("pipeline", {"value": 1})
    r = post_progress(gw, jid, q.alpha, 0, 3, status, progress=progress)
    assert r.status_code == 400 and "progress must be a number from 0 to 1" in r.text, r.text
    assert gw.job(jid)["progress_percent"] == 0


@pytest.mark.parametrize("body", [b"{", b"", b"[1,2]", b'{"step": "a", "step_index": 0,'])
def test_progress_400_bad_json(gw, body):
    jid = gw.call_ok("quiet", {})
    r = gw.post(f"/jobs/{jid}/progress", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, f"{body!r}: {r.status_code} {r.text!r}"
    assert gw.job(jid)["progress_percent"] == 0


def test_progress_bad_status_changes_nothing(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    r = post_progress(gw, jid, q.alpha, 0, 3, "exploded")
    assert 400 <= r.status_code < 500, r.text
    j = gw.job(jid)
    assert j["progress_percent"] == 0 and j.get("current_step") is None, j


def test_progress_404_unknown_job(gw, q):
    r = post_progress(gw, str(uuid.uuid4()), q.alpha, 0, 3, "received")
    assert r.status_code == 404, r.text


def test_progress_for_terminal_job_changes_nothing(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    assert post_final(gw, jid, "succeeded", result=[1]).status_code == 200
    before = gw.job(jid)
    time.sleep(0.05)
    post_progress(gw, jid, q.alpha, 0, 3, "received")
    post_heartbeat(gw, jid, "alpha", "error", "late")
    after = gw.job(jid)
    assert after == before, (before, after)


# ---- POST /jobs/{id}/heartbeat --------------------------------------------------------------------


def test_heartbeat_mapping(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    for st, mapped in [("picked_up", "received"), ("processing", "processing"),
                       ("completed", "completed")]:
        r = post_heartbeat(gw, jid, "beta", st, f"beta {st}")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok"}, r.text
        j = gw.job(jid)
        assert j["status"] == "Running"
        assert close_to(j["progress_percent"], percent(1, 3, mapped)), (st, j["progress_percent"])
        assert j["current_step"] == q.beta, j
    # The full queue name works too (a sidecar's ASYA_ACTOR_NAME): gamma is step 2.
    assert post_heartbeat(gw, jid, q.gamma, "completed").status_code == 200
    assert close_to(gw.job(jid)["progress_percent"], 100)
    assert gw.job(jid)["status"] == "Running"


def test_heartbeat_error_fails_the_job(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    r = post_heartbeat(gw, jid, "alpha", "error", "boom: it broke")
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    j = gw.job(jid)
    assert j["status"] == "Failed" and j["error"] == "boom: it broke", j
    assert gw.get(f"/jobs/{jid}/active").status_code == 410


def test_heartbeat_400_bad_status_and_json(gw):
    jid = gw.call_ok("pipeline", {"value": 1})
    assert post_heartbeat(gw, jid, "alpha", "exploded").status_code == 400
    assert post_heartbeat(gw, jid, "alpha", "received").status_code == 400  # progress' name, not heartbeat's
    r = gw.post(f"/jobs/{jid}/heartbeat", data=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    j = gw.job(jid)
    assert j["status"] == "Running" and j["progress_percent"] == 0, j


def test_heartbeat_404_unknown_job(gw):
    assert post_heartbeat(gw, str(uuid.uuid4()), "alpha", "processing").status_code == 404


# ---- POST /jobs/{id}/final ----------------------------------------------------------------------------


def test_final_succeeded(gw):
    jid = gw.call_ok("pipeline", {"value": 1})
    result = {"answer": 42, "list": [1, "two", None, {"x": 1.5}]}
    r = post_final(gw, jid, "succeeded", result=result, metadata={"k": "v"},
                   timestamp="2026-01-01T00:00:00Z")
    assert r.status_code == 200, r.text
    j = gw.job(jid)
    assert j["status"] == "Succeeded", j
    assert j["result"] == result
    absent_or_null(j, "error")
    assert close_to(j["progress_percent"], 100)
    # No step reported "completed" (the final overtook them): Succeeded still
    # means every step ran.
    assert j["steps_completed"] == j["total_steps"] == 3, j


def test_final_failed_keeps_steps_completed(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    assert post_progress(gw, jid, q.alpha, 0, 3, "completed").status_code == 200
    assert post_final(gw, jid, "failed", error="E: at beta").status_code == 200
    j = gw.job(jid)
    assert j["status"] == "Failed" and j["steps_completed"] == 1, j


@pytest.mark.parametrize("result", ["plain text", [1, 2, 3], 0, False])
def test_final_result_any_json(gw, result):
    jid = gw.call_ok("quiet", {})
    assert post_final(gw, jid, "succeeded", result=result).status_code == 200
    assert gw.job(jid)["result"] == result


def test_final_failed(gw):
    jid = gw.call_ok("pipeline", {"value": 1})
    r = post_final(gw, jid, "failed", error="ValueError: bad input")
    assert r.status_code == 200, r.text
    j = gw.job(jid)
    assert j["status"] == "Failed" and j["error"] == "ValueError: bad input", j
    absent_or_null(j, "result")


def test_final_is_idempotent(gw):
    jid = gw.call_ok("quiet", {})
    assert post_final(gw, jid, "succeeded", result={"first": True}).status_code == 200
    before = gw.job(jid)
    time.sleep(0.05)
    for body in [("succeeded", {"second": True}, None), ("failed", None, "late error"),
                 ("succeeded", {"first": True}, None)]:
        r = post_final(gw, jid, body[0], result=body[1], error=body[2])
        assert r.status_code == 200, f"repeat final {body}: {r.status_code} {r.text!r}"
    assert gw.job(jid) == before


def test_final_first_failed_decides(gw):
    jid = gw.call_ok("quiet", {})
    assert post_final(gw, jid, "failed", error="first").status_code == 200
    assert post_final(gw, jid, "succeeded", result=1).status_code == 200
    j = gw.job(jid)
    assert j["status"] == "Failed" and j["error"] == "first" and j.get("result") is None, j


@pytest.mark.parametrize("status", ["done", "Succeeded", "SUCCEEDED", "", "running"])
def test_final_400_unknown_status(gw, status):
    jid = gw.call_ok("quiet", {})
    r = post_final(gw, jid, status, result=1)
    assert r.status_code == 400, f"{status!r}: {r.status_code} {r.text!r}"
    assert gw.job(jid)["status"] == "Running"


def test_final_400_bad_json(gw):
    jid = gw.call_ok("quiet", {})
    for body in (b"{", b"", b"[]", b'{"status": "succeeded"'):
        r = gw.post(f"/jobs/{jid}/final", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, f"{body!r}: {r.status_code}"
    assert gw.job(jid)["status"] == "Running"


def test_final_404_unknown_job(gw):
    assert post_final(gw, str(uuid.uuid4()), "succeeded", result=1).status_code == 404


# ---- /health, /readyz, /metrics ------------------------------------------------------------------------


def test_health_get_and_head(gw):
    r = gw.get("/health")
    assert r.status_code == 200 and r.text.strip() == "OK", r.text
    r = gw.head("/health")
    assert r.status_code == 200 and r.content == b""


def test_readyz(gw):
    r = gw.get("/readyz")
    assert r.status_code == 200 and r.text.strip() == "ready", r.text


def test_metrics_is_prometheus_text(gw):
    r = gw.get("/metrics")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    assert "# TYPE asya_gateway_tool_calls_total counter" in r.text


def test_unicode_round_trip(gw, mq, q):
    text = "h\u00e9llo \u4e16\u754c \U0001F600 \"quoted\" \\ back\nslash\ttab"
    jid = gw.call_ok("echo", {"message": text})
    m = mq.get_job(q.echo, jid, timeout=5)
    assert m.json["payload"] == {"message": text}
    assert gw.job(jid)["payload"] == {"message": text}
    result = {"\u00fc": [text, 1e300, -0.5, 12345678901234]}
    assert post_final(gw, jid, "succeeded", result=result).status_code == 200
    assert gw.job(jid)["result"] == result


def test_large_numbers_round_trip(gw, mq, q):
    """Reals beyond the 64-bit integer range (jsonb prints 1e20 as a 21-digit
    integer) come back as the numbers they were, in the job and its history."""
    args = {"message": "big", "big": 1e20, "huge": 1e300, "small": 5}
    jid = gw.call_ok("echo", args)
    assert mq.get_job(q.echo, jid, timeout=5).json["payload"] == args
    assert gw.job(jid)["payload"] == args
    assert post_final(gw, jid, "succeeded", result=[1e21, -1e200]).status_code == 200
    j = gw.job(jid)
    assert j["status"] == "Succeeded" and j["result"] == [1e21, -1e200], j
    from gwlib import SSE, updates
    with SSE(f"{gw.url}/jobs/{jid}/stream") as s:
        ups = updates(s.read_until_eof(5))
    assert ups[-1]["result"] == [1e21, -1e200], ups[-1]
