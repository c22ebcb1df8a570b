"""A job driven end to end by the test, playing every actor: call the tool,
consume the envelope the gateway published, report progress as the sidecars do
and the final status as an end actor does; check the job JSON and the SSE
stream at every point.  Both stores."""

import time

from gwlib import (SSE, EOF, Event, close_to, now_utc, parse_time, percent, post_final,
                   post_progress, updates)

UPDATE_KEYS = {"job_id", "status", "message", "result", "error", "progress_percent", "step",
               "step_status", "timestamp"}


def check_update(u, jid):
    assert set(u) <= UPDATE_KEYS, f"unexpected keys {set(u) - UPDATE_KEYS}: {u}"
    assert u["job_id"] == jid, u
    parse_time(u["timestamp"])


def test_job_end_to_end(gw, mq, q):
    t0 = now_utc()
    args = {"value": 5, "tags": ["a", "b"], "opts": {"label": "x"}}
    jid = gw.call_ok("pipeline", args)
    steps = [q.alpha, q.beta, q.gamma]

    # The envelope, exactly.
    m = mq.get_job(q.alpha, jid, timeout=5)
    assert m is not None, "no envelope in the first step's queue"
    assert m.exchange == "asya" and m.routing_key == q.alpha, m
    assert m.props.delivery_mode == 2, "envelopes are published persistent"
    env = m.json
    assert set(env) == {"id", "job_id", "route", "payload", "deadline"}, env
    assert env["id"] == jid and env["job_id"] == jid
    assert env["route"] == {"steps": steps, "current": 0, "metadata": {"job_id": jid}}, env
    assert env["payload"] == {"value": 5, "mode": "fast", "ratio": 0.5, "flag": False,
                              "tags": ["a", "b"], "opts": {"label": "x", "depth": 2}}
    deadline = parse_time(env["deadline"])
    assert abs((deadline - t0).total_seconds() - 60) < 3, (t0, deadline)
    for other in (q.beta, q.gamma, q.echo):
        assert mq.get_job(other, jid, timeout=0) is None, f"envelope also in {other}"

    j = gw.job(jid)
    assert j["status"] == "Running"
    assert abs((parse_time(j["deadline"]) - deadline).total_seconds()) < 1, (j["deadline"], env)

    # A live subscriber from the start.
    with SSE(f"{gw.url}/jobs/{jid}/stream") as s:
        assert s.status_code == 200
        assert s.headers.get("Content-Type", "").startswith("text/event-stream"), s.headers
        first = s.next_event(5)
        assert first.event == "status" and first.data == "Running", first
        # The stored history comes first: creation, then "Sending message to first actor".
        replay = s.events_until(lambda e: e.event == "update" and
                                e.json().get("message") == "Sending message to first actor", 5)
        for ev in replay:
            assert ev.event == "update", ev
            check_update(ev.json(), jid)
            assert ev.json()["status"] in ("Pending", "Running"), ev
        assert replay[-1].json()["status"] == "Running"

        sent = []
        for i, step in enumerate(steps):
            for st in ("received", "processing", "completed"):
                r = post_progress(gw, jid, step, i, 3, st, message=f"{step} is {st}",
                                  duration_ms=3)
                assert r.status_code == 200, r.text
                sent.append((step, st, percent(i, 3, st)))
                ev = s.next_event(5)
                assert ev.event == "update", ev
                u = ev.json()
                check_update(u, jid)
                assert u["status"] == "Running"
                assert u["step"] == step and u["step_status"] == st, u
                assert close_to(u["progress_percent"], percent(i, 3, st)), u
                assert u["message"] == f"{step} is {st}", u
                j = gw.job(jid)
                assert j["current_step"] == step and close_to(j["progress_percent"],
                                                              percent(i, 3, st))
        result = {"value": 11, "steps_completed": 3}
        r = post_final(gw, jid, "succeeded", result=result)
        assert r.status_code == 200, r.text
        tail = s.read_until_eof(5)
        ev = [it for it in tail if isinstance(it, Event)]
        assert len(ev) == 1, f"exactly the final update, then the end: {tail}"
        u = ev[0].json()
        check_update(u, jid)
        assert u["status"] == "Succeeded" and u["result"] == result, u
        assert u["message"] == "Job completed successfully", u
        assert isinstance(tail[-1], EOF) and tail[-1].error is None, tail

    j = gw.job(jid)
    assert j["status"] == "Succeeded" and j["result"] == result, j
    assert close_to(j["progress_percent"], 100)
    assert j["steps_completed"] == 3 and j["total_steps"] == 3
    assert j["current_step"] == q.gamma
    assert j.get("error") is None
    assert parse_time(j["updated_at"]) >= parse_time(j["created_at"])
    assert gw.get(f"/jobs/{jid}/active").status_code == 410

    # A late subscriber sees the same history, then the stream ends.
    with SSE(f"{gw.url}/jobs/{jid}/stream") as s2:
        items = s2.read_until_eof(5)
    evs = [it for it in items if isinstance(it, Event)]
    assert evs[0].event == "status" and evs[0].data == "Succeeded", evs[0]
    ups = updates(evs)
    prog = [(u["step"], u["step_status"], u["progress_percent"]) for u in ups
            if u.get("step_status")]
    assert [(a, b) for a, b, _ in prog] == [(a, b) for a, b, _ in sent]
    assert all(close_to(p, w) for (_, _, p), (_, _, w) in zip(prog, sent))
    assert ups[-1]["status"] == "Succeeded" and ups[-1]["result"] == result
    assert [u["status"] for u in ups].count("Succeeded") == 1


def test_job_failed_end_to_end(gw, mq, q):
    jid = gw.call_ok("echo", {"message": "fail me"})
    m = mq.get_job(q.echo, jid, timeout=5)
    assert m is not None and m.json["payload"] == {"message": "fail me"}
    assert m.json["route"] == {"steps": [q.echo], "current": 0, "metadata": {"job_id": jid}}
    with SSE(f"{gw.url}/jobs/{jid}/stream") as s:
        assert s.next_event(5).event == "status"
        assert post_progress(gw, jid, q.echo, 0, 1, "received").status_code == 200
        assert post_progress(gw, jid, q.echo, 0, 1, "processing").status_code == 200
        err = "processing_error: handler raised ValueError"
        assert post_final(gw, jid, "failed", error=err).status_code == 200
        items = s.read_until_eof(5)
    ups = updates(items)
    assert ups[-1]["status"] == "Failed", ups
    assert ups[-1]["error"] == err and ups[-1]["message"] == f"Job failed: {err}", ups[-1]
    assert [u.get("step_status") for u in ups if u.get("step_status")][-2:] == \
        ["received", "processing"]
    j = gw.job(jid)
    assert j["status"] == "Failed" and j["error"] == err
    assert close_to(j["progress_percent"], 50)


def test_concurrent_tool_calls(gw, mq, q):
    """100 tool calls from 10 threads: 100 distinct jobs, each Running with
    exactly one envelope."""
    import collections
    import threading

    import requests
    ids, errors = [], []
    lock = threading.Lock()

    def worker(k):
        s = requests.Session()
        for n in range(10):
            r = s.post(f"{gw.url}/tools/call",
                       json={"name": "echo", "arguments": {"message": f"c{k}-{n}"}}, timeout=15)
            res = r.json() if r.status_code == 200 else {}
            with lock:
                if r.status_code != 200 or res.get("isError"):
                    errors.append((r.status_code, r.text[:200]))
                else:
                    ids.append(res["content"][0]["text"].split("ID: ", 1)[1].split("\n", 1)[0])

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:5]
    assert len(ids) == 100 and len(set(ids)) == 100
    seen = collections.Counter()
    deadline = time.monotonic() + 10
    while sum(seen[i] for i in ids) < 100 and time.monotonic() < deadline:
        m = mq.get(q.echo)
        if m is None:
            time.sleep(0.05)
            continue
        seen[m.json.get("job_id")] += 1
    assert all(seen[i] == 1 for i in ids), [i for i in ids if seen[i] != 1][:5]
    payloads = set()
    for i in ids:
        j = gw.job(i)
        assert j["status"] == "Running"
        payloads.add(j["payload"]["message"])
    assert payloads == {f"c{k}-{n}" for k in range(10) for n in range(10)}
