"""A handler's own progress (asya_call.progress, beyond the seed): the real
asya-runtime relays it as {"asya_progress": f, "message": ...} frames ahead of its
answer, only for a request that asked with "asya_progress": true; the sidecar asks
only for messages whose progress goes to a gateway, reports each as "processing"
with "progress" and "message", and the request key never travels further.

The fake gateway and helpers are test_gateway_reports.py's.
"""
import json
import socket
import struct

from conftest import wait_for
from test_gateway_reports import gateway, job_envelope, reporting_sidecar  # noqa: F401

STEPS = 3
BURST = 20  # calls right after each step's report: inside the 100 ms limit, dropped


def progress_payload(**extra):
    p = {"steps": STEPS, "step_s": 0.15, "burst": BURST}
    p.update(extra)
    return p


def expected_codes(first):
    """progress_codes of self_progress_handler: per step one call answering `first`,
    then BURST rate-limited ones answering 1."""
    return ([first] + [1] * BURST) * STEPS


def test_handler_progress_reported_between_processing_and_completed(ctx, gateway):
    """3 steps: received, processing, 3 x processing with progress 1/3, 2/3, 1 and
    "step i of 3", completed, in that order; the burst calls are rate-limited (not
    relayed), the result at happy-end carries no request key."""
    ctx.real_runtime("self_progress_handler")
    reporting_sidecar(ctx, gateway)
    job, env = job_envelope(ctx, progress_payload(), [ctx.queue])
    ctx.publish(env)
    got = ctx.wait_ends(happy=1, timeout=20)
    assert len(got["happy"]) == 1 and got["error"] == [], got
    out = got["happy"][0]
    assert "asya_progress" not in out, out
    assert out["payload"]["progress_codes"] == expected_codes(0)
    assert wait_for(lambda: len(gateway.all("progress")) >= 6, timeout=10), gateway.all("progress")
    reports = gateway.progress_by_job()[job]
    assert [r["status"] for r in reports] == ["received"] + ["processing"] * 4 + ["completed"]
    assert "progress" not in reports[1]
    own = reports[2:5]
    assert [r["progress"] for r in own] == [1 / 3, 2 / 3, 1.0]
    assert [r["message"] for r in own] == [f"step {i} of 3" for i in (1, 2, 3)]
    for r in own:
        assert r["step"] == ctx.queue and r["step_index"] == 0 and r["total_steps"] == 1
        assert r["actor_name"] == ctx.queue


def test_no_handler_progress_without_a_gateway_or_a_job(ctx, gateway):
    """Nobody listens (progress returns 1) when the sidecar has no gateway, or the
    message carries no job id; the runtime got no request key then."""
    ctx.real_runtime("self_progress_handler")
    reporting_sidecar(ctx, gateway)
    _, anon = job_envelope(ctx, progress_payload(burst=0), [ctx.queue], where="none")
    ctx.publish(anon)
    got = ctx.wait_ends(happy=1, timeout=20)
    assert got["happy"][0]["payload"]["progress_codes"] == [1] * STEPS
    assert gateway.all("progress") == []


def test_no_handler_progress_from_a_sidecar_without_gateway(ctx):
    ctx.real_runtime("self_progress_handler")
    ctx.sidecar()
    _, env = job_envelope(ctx, progress_payload(burst=0), [ctx.queue])
    ctx.publish(env)
    got = ctx.wait_ends(happy=1, timeout=20)
    assert got["happy"][0]["payload"]["progress_codes"] == [1] * STEPS
    assert "asya_progress" not in got["happy"][0]


def test_envelope_mode_result_does_not_carry_the_request_key(ctx, gateway):
    """An envelope-mode handler that returns the envelope it got (echo) hands back the
    request key too: the sidecar drops it, the next actor never sees it."""
    ctx.real_runtime("echo_handler", env={"ASYA_HANDLER_MODE": "envelope"})
    reporting_sidecar(ctx, gateway)
    job, env = job_envelope(ctx, {"k": "v"}, [ctx.queue])
    ctx.publish(env)
    got = ctx.wait_ends(happy=1, timeout=20)
    out = got["happy"][0]
    assert "asya_progress" not in out and out["payload"] == {"k": "v"}, out
    assert out["job_id"] == job
    assert wait_for(lambda: len(gateway.all("progress")) >= 3, timeout=10)


# ---- the runtime's side of the protocol, on its socket ------------------------------


def frames(sock, until_array=True):
    """Read frames until the answer (an array); returns every frame parsed."""
    out = []
    buf = b""

    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            assert chunk, f"runtime closed after {out}"
            buf += chunk
        head, buf = buf[:n], buf[n:]
        return head

    while True:
        (n,) = struct.unpack(">I", need(4))
        f = json.loads(need(n))
        out.append(f)
        if isinstance(f, list) or not until_array:
            return out


def call(path, envelope):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    body = json.dumps(envelope).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    try:
        return frames(s)
    finally:
        s.close()


def test_runtime_sends_progress_frames_only_when_asked(ctx):
    rt = ctx.real_runtime("self_progress_handler")
    env = {"id": "p1", "route": {"actors": ["a"], "current": 0},
           "payload": progress_payload(burst=5)}
    got = call(rt.sock, dict(env, asya_progress=True))
    assert got[:-1] == [{"asya_progress": 1 / 3, "message": "step 1 of 3"},
                        {"asya_progress": 2 / 3, "message": "step 2 of 3"},
                        {"asya_progress": 1.0, "message": "step 3 of 3"}]
    answer = got[-1]
    assert answer[0]["payload"]["progress_codes"] == ([0] + [1] * 5) * STEPS
    # Asked by nobody: the answer alone, as the reference runtime gives it.
    got = call(rt.sock, env)
    assert len(got) == 1 and got[0][0]["payload"]["progress_codes"] == [1] * 18
