"""GET /metrics (Prometheus text): tool calls by tool and outcome, jobs by
final status, the job duration histogram, open SSE subscribers.  Counts are
checked as exact deltas.  Both stores."""

import re
import time

from gwlib import SSE, metric_value, post_final

CALLS = "asya_gateway_tool_calls_total"
JOBS = "asya_gateway_jobs_total"
DUR = "asya_gateway_job_duration_seconds"
SUBS = "asya_gateway_sse_subscribers"


def val(text, name, labels=None, default=None):
    v = metric_value(text, name, labels)
    if v is None:
        if default is not None:
            return default
        raise AssertionError(f"no series {name}{labels or ''} in /metrics:\n{text[:3000]}")
    return v


def test_metric_families_declared(gw):
    text = gw.metrics()
    for name, kind in [(CALLS, "counter"), (JOBS, "counter"), (DUR, "histogram"),
                       (SUBS, "gauge")]:
        assert re.search(rf"^# TYPE {name} {kind}$", text, re.M), f"{name} {kind}"
        assert re.search(rf"^# HELP {name} \S", text, re.M), f"HELP {name}"
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.eE+\-]+$|'
                            r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (\+Inf|NaN)$', line), line


def test_tool_calls_by_tool_and_outcome(gw):
    t0 = gw.metrics()
    ok = {"tool": "echo", "outcome": "ok"}
    bad = {"tool": "echo", "outcome": "invalid_arguments"}
    unknown = {"tool": "", "outcome": "unknown_tool"}
    ok0, bad0, unk0 = (val(t0, CALLS, lab, 0) for lab in (ok, bad, unknown))
    pipe0 = val(t0, CALLS, {"tool": "pipeline", "outcome": "ok"}, 0)
    gw.call_ok("echo", {"message": "1"})
    gw.call_ok("echo", {"message": "2"})
    assert gw.call("echo", {}).json()["isError"] is True
    assert gw.call("no_such_tool", {}).status_code == 404
    t1 = gw.metrics()
    assert val(t1, CALLS, ok) == ok0 + 2
    assert val(t1, CALLS, bad) == bad0 + 1
    assert val(t1, CALLS, unknown) == unk0 + 1
    assert val(t1, CALLS, {"tool": "pipeline", "outcome": "ok"}) == pipe0


def test_jobs_by_final_status_and_duration(gw):
    t0 = gw.metrics()
    s0 = val(t0, JOBS, {"status": "Succeeded"}, 0)
    f0 = val(t0, JOBS, {"status": "Failed"}, 0)
    c0 = val(t0, DUR + "_count", None, 0)
    sum0 = val(t0, DUR + "_sum", None, 0)
    a = gw.call_ok("quiet", {})
    b = gw.call_ok("quiet", {})
    time.sleep(0.3)
    assert post_final(gw, a, "succeeded", result=1).status_code == 200
    assert post_final(gw, a, "succeeded", result=1).status_code == 200  # a repeat counts nothing
    assert post_final(gw, b, "failed", error="E").status_code == 200
    assert post_final(gw, b, "succeeded", result=2).status_code == 200
    t1 = gw.metrics()
    assert val(t1, JOBS, {"status": "Succeeded"}) == s0 + 1
    assert val(t1, JOBS, {"status": "Failed"}) == f0 + 1
    assert val(t1, DUR + "_count") == c0 + 2
    assert val(t1, DUR + "_sum") - sum0 >= 0.6 - 0.05
    buckets = []
    for line in t1.splitlines():
        m = re.match(rf'^{DUR}_bucket\{{le="([^"]+)"\}} (\S+)$', line)
        if m:
            buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)),
                            float(m.group(2))))
    assert len(buckets) >= 3 and buckets[-1][0] == float("inf"), buckets
    assert [b[0] for b in buckets] == sorted(b[0] for b in buckets)
    assert all(x[1] <= y[1] for x, y in zip(buckets, buckets[1:])), "cumulative buckets"
    assert buckets[-1][1] == val(t1, DUR + "_count")
    below0 = {}
    for line in t0.splitlines():
        m = re.match(rf'^{DUR}_bucket\{{le="([^"]+)"\}} (\S+)$', line)
        if m and m.group(1) != "+Inf":
            below0[float(m.group(1))] = float(m.group(2))
    for le, n in buckets:
        if le < 0.3:
            assert n == below0.get(le, 0), f"a 0.3 s job counted in le={le}"


def test_timeout_counts_as_failed(gw):
    t0 = gw.metrics()
    f0 = val(t0, JOBS, {"status": "Failed"}, 0)
    jid = gw.call_ok("short", {})
    gw.wait_job(jid, lambda j: j["status"] == "Failed", timeout=7)
    t1 = gw.metrics()
    assert val(t1, JOBS, {"status": "Failed"}) == f0 + 1


def subs(gw):
    return val(gw.metrics(), SUBS)


def wait_subs(gw, n, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        v = subs(gw)
        if v == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{SUBS} is {v}, expected {n}")
        time.sleep(0.05)


def test_sse_subscribers_gauge(gw):
    wait_subs(gw, 0)
    jid = gw.call_ok("quiet", {})
    s1 = SSE(f"{gw.url}/jobs/{jid}/stream")
    s2 = SSE(f"{gw.url}/jobs/{jid}/stream")
    try:
        s1.next_event(5)
        s2.next_event(5)
        wait_subs(gw, 2)
        s1.close()  # the client goes away: noticed at the latest at the next keepalive
        wait_subs(gw, 1, timeout=4)
        assert post_final(gw, jid, "succeeded", result=1).status_code == 200
        s2.read_until_eof(5)
        wait_subs(gw, 0)
    finally:
        s1.close()
        s2.close()
    # A 404 stream is no subscriber.
    s = SSE(f"{gw.url}/jobs/00000000-0000-4000-8000-000000000000/stream")
    assert s.status_code == 404
    s.close()
    assert subs(gw) == 0
