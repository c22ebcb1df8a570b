"""Smoke tests of the progress features: a tool call, the job status, an SSE stream."""

import time

from gva import ECHO, UUID_RE, assert_progress, progress_of, read_stream


def test_mcp_tool_call(mcp):
    """MCP JSON-RPC tools/call answers a CallToolResult naming a new job."""
    res = mcp.call("test_echo", {"message": "Hello from standalone test!"})
    assert res.get("isError") in (None, False), res
    assert res["content"][0]["type"] == "text"
    text = res["content"][0]["text"]
    assert text.startswith("Job created successfully with ID: "), text
    assert UUID_RE.fullmatch(text.split("\n", 1)[0].rsplit(" ", 1)[1]), text


def test_job_status(gw):
    jid = gw.call_ok("test_echo", {"message": "status test"})
    job = gw.job(jid)
    for field in ("id", "status", "progress_percent", "total_steps", "steps_completed", "route",
                  "payload", "deadline", "created_at", "updated_at"):
        assert field in job, (field, job)
    assert job["status"] in ("Running", "Succeeded") and job["total_steps"] == 1, job
    assert 0.0 <= float(job["progress_percent"]) <= 100.0
    job = gw.wait_final(jid)
    assert job["status"] == "Succeeded" and job["result"] == {"echoed": "status test"}, job


def test_sse_streaming(gw):
    jid = gw.call_ok("test_echo", {"message": "SSE test"})
    t0 = time.monotonic()
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    assert time.monotonic() - t0 < 10
    pcts = [float(u.json()["progress_percent"]) for u in ups if "progress_percent" in u.json()]
    assert pcts and pcts == sorted(pcts) and pcts[-1] == 100.0, pcts
    assert_progress(jid, [ECHO], progress_of(ups))
    assert ups[-1].json()["status"] == "Succeeded"
    assert ups[-1].json()["result"] == {"echoed": "SSE test"}
