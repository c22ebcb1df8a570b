"""Beyond the seed: a handler's own progress (asya_progress in the handler ABI).

self_progress_handler (test-self-progress-queue) reports after each of its steps;
its sidecar asked the runtime for those reports and relays them, and the gateway
streams them between the step's "processing" (50 %) and "completed" (100 %), at
50 + 49 * fraction percent, each with the handler's message.
"""

import gva
from gva import progress_of, read_stream

SELF = "test-self-progress-queue"


def test_handler_progress_streams_between_processing_and_completed(gw):
    jid = gw.call_ok("test_self_progress", {"steps": 4, "step_s": 0.3})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=30)
    prog = progress_of(ups)
    assert [u["step_status"] for u in prog] == (
        ["received", "processing"] + ["processing"] * 4 + ["completed"]), prog
    assert all(u["step"] == SELF for u in prog), prog
    own = prog[2:6]
    assert [u["message"] for u in own] == [f"step {i} of 4" for i in (1, 2, 3, 4)], own
    pcts = [float(u["progress_percent"]) for u in prog]
    assert pcts == [10.0, 50.0, 62.25, 74.5, 86.75, 99.0, 100.0], pcts
    final = ups[-1].json()
    assert final["status"] == "Succeeded", final
    # Every call was relayed (0): the sidecar asked, nothing was rate-limited.
    assert final["result"]["progress_codes"] == [0, 0, 0, 0], final
    job = gw.job(jid)
    assert job["status"] == "Succeeded" and float(job["progress_percent"]) == 100.0, job
    assert job["steps_completed"] == 1 and "asya_progress" not in job["result"], job


def test_handler_progress_of_the_reference_kind_is_absent_elsewhere(gw):
    """The seed's handlers never call it: their streams carry the three checkpoints
    per step only (no update with a handler message)."""
    jid = gw.call_ok("test_progress", {"steps": 2})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    prog = progress_of(ups)
    assert [u["step_status"] for u in prog] == ["received", "processing", "completed"], prog
    assert gva.TERMINAL[0] == ups[-1].json()["status"]
