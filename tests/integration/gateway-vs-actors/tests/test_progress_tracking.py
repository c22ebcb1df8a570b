"""Progress tracking: every sidecar on a route reports received / processing /
completed; the gateway turns them into percents ((index*100 + 10/50/100) / steps),
streams them and keeps them in the job record.

A fast pipeline's reports reach the gateway out of order; the gateway puts them
back in route order (README.md, "Report order"), which
test_progress_calculation_accuracy_fast_pipeline checks on the seed's pipeline.
"""

import concurrent.futures
import threading
import time

import pytest

import gva
from gva import (DOUBLER, ECHO, ERROR, ERROR_TEXT, INCREMENTER, PROGRESS, assert_failed,
                 assert_progress, assert_succeeded, progress_of, read_stream)

PIPELINE = [DOUBLER, INCREMENTER]
TWO_STEPS = [PROGRESS, PROGRESS]


def test_progress_tracking_single_step(gw):
    """One step: 10, 50, 100 from test-echo-queue, then Succeeded at 100."""
    jid = gw.call_ok("test_echo", {"message": "progress test"})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    assert assert_progress(jid, [ECHO], progress_of(ups)) == [10.0, 50.0, 100.0]
    final = ups[-1].json()
    assert final["status"] == "Succeeded" and float(final["progress_percent"]) == 100.0
    assert_succeeded(gw.job(jid), {"echoed": "progress test"}, [ECHO])


def test_progress_tracking_multi_step(gw):
    """Two steps that take time: three checkpoints each, in route order, never
    going down; the steps' result (progress_handler twice)."""
    jid = gw.call_ok("test_progress_two_steps", {"steps": 1})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    prog = progress_of(ups)
    pcts = assert_progress(jid, TWO_STEPS, prog)
    assert pcts == sorted(pcts), pcts
    assert [u["step"] for u in prog] == [PROGRESS] * len(prog)
    assert ups[-1].json()["result"] == {"steps": 1, "steps_completed": 1}


def test_progress_multi_step_pipeline(gw):
    """The seed's fast pipeline: what arrives is consistent (each checkpoint once,
    a step's in order, the percents the formula's or the highest so far)."""
    jid = gw.call_ok("test_pipeline", {"value": 42})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    prog = progress_of(ups)
    assert prog, "no progress at all"
    pcts = assert_progress(jid, PIPELINE, prog, complete=False)
    assert pcts == sorted(pcts), pcts
    assert ups[-1].json()["result"] == {"value": 89, "operation": "incremented"}


def test_progress_calculation_accuracy(gw):
    """A two-step route: exactly 5, 25, 50, 55, 75 (and 100) % over SSE, and the
    same in GET /jobs/{id} while each step's handler runs (25 % in step 0, 75 %
    in step 1); 100 % at the end."""
    jid = gw.call_ok("test_progress_two_steps", {"steps": 4})  # 1.2 s per step
    polled = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            j = gw.job(jid)
            polled.append((float(j["progress_percent"]), j["status"], j["steps_completed"]))
            if j["status"] in gva.TERMINAL:
                return
            time.sleep(0.05)

    t = threading.Thread(target=poll)
    t.start()
    try:
        with gw.stream(jid) as s:
            _, ups = read_stream(s, timeout=20)
    finally:
        done.set()
        t.join(10)
    pcts = assert_progress(jid, TWO_STEPS, progress_of(ups))
    assert pcts == [5.0, 25.0, 50.0, 55.0, 75.0, 100.0], pcts
    assert float(ups[-1].json()["progress_percent"]) == 100.0
    seen = [p for p, _, _ in polled]
    assert seen == sorted(seen), polled
    assert set(seen) <= {0.0, 5.0, 25.0, 50.0, 55.0, 75.0, 100.0}, polled
    # Each handler sleeps 1.2 s: GET sees its step's processing percent many times.
    assert sum(1 for p, st, n in polled if p == 25.0 and st == "Running" and n == 0) >= 5, polled
    assert sum(1 for p, st, n in polled if p == 75.0 and st == "Running" and n == 1) >= 5, polled
    job = gw.job(jid)
    assert_succeeded(job, {"steps": 4, "steps_completed": 4}, TWO_STEPS)


def test_progress_calculation_accuracy_fast_pipeline(gw):
    """The seed's scenario word for word: test_pipeline's six checkpoints, 5, 25,
    50, 55, 75, 100 %, although its handlers take under a millisecond, so the
    next step's reports and the final often reach the gateway before the previous
    step's last ones (the gateway holds those until the checkpoint before them
    landed: README.md, "Report order")."""
    jid = gw.call_ok("test_pipeline", {"value": 100})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    pcts = [float(u["progress_percent"]) for u in progress_of(ups)]
    assert pcts == [5.0, 25.0, 50.0, 55.0, 75.0, 100.0], pcts


def test_progress_in_job_status_endpoint(gw):
    """GET /jobs/{id} while the progress actor sleeps (10 steps = 3 s): Running at
    exactly 50 % (processing of step 0 of 1), current step test-progress-queue,
    nothing completed; every value polled is one of the checkpoints, never lower
    than the one before; at the end 100 %."""
    jid = gw.call_ok("test_progress", {"steps": 10})
    seen = []
    deadline = time.monotonic() + 20
    while True:
        job = gw.job(jid)
        seen.append((job["status"], float(job["progress_percent"]), job.get("current_step"),
                     job["steps_completed"]))
        if job["status"] in gva.TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    pcts = [p for _, p, _, _ in seen]
    assert pcts == sorted(pcts), seen
    assert set(pcts) <= {0.0, 10.0, 50.0, 100.0}, seen
    during = [x for x in seen if x[1] == 50.0]
    assert len(during) >= 10, f"50 % should last the handler's 3 s: {seen}"
    assert all(st == "Running" and step == PROGRESS and done == 0 for st, _, step, done in during)
    assert seen[-1][0] == "Succeeded", seen
    job = gw.job(jid)
    assert_succeeded(job, {"steps": 10, "steps_completed": 10}, [PROGRESS])
    assert job["total_steps"] == 1 and job["steps_completed"] == 1, job


def test_concurrent_jobs_independent_progress(gw):
    """Three test_progress jobs at once (2, 5 and 8 steps, the actor runs them side
    by side): each stream carries only its own job's updates, each job its own
    result; when the short one is done the long one is still at 50 %."""
    steps = [2, 5, 8]
    ids = [gw.call_ok("test_progress", {"steps": n}) for n in steps]
    streams = {}

    def follow(jid):
        with gw.stream(jid) as s:
            streams[jid] = read_stream(s, timeout=20)[1]

    threads = [threading.Thread(target=follow, args=(jid,)) for jid in ids]
    for t in threads:
        t.start()
    short = gw.wait_final(ids[0], timeout=10)
    long_now = gw.job(ids[2])
    assert long_now["status"] == "Running" and float(long_now["progress_percent"]) == 50.0, \
        long_now
    for t in threads:
        t.join(30)
    assert_succeeded(short, {"steps": 2, "steps_completed": 2}, [PROGRESS])
    for jid, n in zip(ids, steps):
        ups = streams[jid]
        assert {u.json()["job_id"] for u in ups} == {jid}
        assert assert_progress(jid, [PROGRESS], progress_of(ups)) == [10.0, 50.0, 100.0]
        assert ups[-1].json()["result"] == {"steps": n, "steps_completed": n}
        assert_succeeded(gw.job(jid), {"steps": n, "steps_completed": n}, [PROGRESS])
    # Finished in the order of their lengths.
    ends = [streams[jid][-1].t for jid in ids]
    assert ends == sorted(ends), ends


def test_concurrent_pipelines_progress(gw):
    """Twenty pipeline jobs at once: each ends with its own result, each stream
    only with its own, consistent progress."""
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        ids = list(ex.map(lambda v: gw.call_ok("test_pipeline", {"value": v}), range(20)))
    for v, jid in enumerate(ids):
        with gw.stream(jid) as s:
            _, ups = read_stream(s, timeout=20)
        assert {u.json()["job_id"] for u in ups} == {jid}
        assert_progress(jid, PIPELINE, progress_of(ups), complete=False)
        assert ups[-1].json()["result"] == {"value": 2 * v + 5, "operation": "incremented"}


def test_last_checkpoint_precedes_final(gw):
    """Ten jobs at once whose handler takes 0.3 s: the last report (completed)
    leaves the actor before its result does, and the gateway applies a job's
    changes in arrival order, so it precedes the final status (the final came
    first now and then before bc71090: a job's writes went to different database
    connections)."""
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        ids = list(ex.map(lambda _: gw.call_ok("test_progress", {"steps": 1}), range(10)))
    lost = []
    for jid in ids:
        with gw.stream(jid) as s:
            _, ups = read_stream(s, timeout=20)
        if [u["step_status"] for u in progress_of(ups)] != ["received", "processing",
                                                            "completed"]:
            lost.append(jid)
    assert not lost, f"{len(lost)} of 10 jobs lost their completed checkpoint: {lost}"


def test_progress_with_error(gw):
    """error_handler fails: received (10 %), maybe processing (50 %), never
    completed; the job is Failed with the error, below 100 %."""
    jid = gw.call_ok("test_error", {"should_fail": True})
    with gw.stream(jid) as s:
        _, ups = read_stream(s, timeout=20)
    pcts = assert_progress(jid, [ERROR], progress_of(ups), complete=False, failed_at=0)
    assert pcts in ([10.0], [10.0, 50.0]), pcts
    final = ups[-1].json()
    assert final["status"] == "Failed" and final["error"] == ERROR_TEXT, final
    job = gw.job(jid)
    assert_failed(job, ERROR_TEXT, [ERROR])
    assert float(job["progress_percent"]) in (10.0, 50.0) and job["steps_completed"] == 0, job
