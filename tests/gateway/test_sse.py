"""GET /jobs/{id}/stream: the first `status` event, live updates, the end after
the terminal update, full replay for a late subscriber, `Last-Event-ID`
resume, `: keepalive` comments (ASYA_GATEWAY_SSE_KEEPALIVE=1s here), 404.
Both stores."""

import threading
import time
import uuid

import pytest

from gwlib import SSE, EOF, Comment, Event, close_to, percent, post_final, post_progress, updates


def stream_url(gw, jid):
    return f"{gw.url}/jobs/{jid}/stream"


def replay_done(s):
    """Read the status event and the stored history up to the Running entry."""
    first = s.next_event(5)
    assert first.event == "status", first
    s.events_until(lambda e: e.event == "update" and e.json().get("status") == "Running", 5)
    return first


def test_first_event_is_the_bare_status(gw):
    jid = gw.call_ok("quiet", {})
    with SSE(stream_url(gw, jid)) as s:
        assert s.status_code == 200
        assert s.headers.get("Content-Type", "").startswith("text/event-stream")
        ev = s.next_event(5)
        assert ev.event == "status" and ev.data == "Running", ev


def test_live_updates_arrive_promptly_and_stream_ends(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    with SSE(stream_url(gw, jid)) as s:
        replay_done(s)
        for st in ("received", "processing", "completed"):
            t = time.monotonic()
            assert post_progress(gw, jid, q.alpha, 0, 3, st).status_code == 200
            ev = s.next_event(5)
            assert time.monotonic() - t < 1.0, "an update reaches a live subscriber within 1 s"
            u = ev.json()
            assert ev.event == "update" and u["step_status"] == st and u["step"] == q.alpha, u
            assert close_to(u["progress_percent"], percent(0, 3, st)), u
            assert u["status"] == "Running"
        assert post_final(gw, jid, "succeeded", result="r").status_code == 200
        t = time.monotonic()
        items = s.read_until_eof(5)
        assert time.monotonic() - t < 2.0, "the stream ends right after the terminal update"
    evs = [it for it in items if isinstance(it, Event)]
    assert [e.json()["status"] for e in evs] == ["Succeeded"], items
    assert isinstance(items[-1], EOF) and items[-1].error is None


def test_handler_progress_streams_between_processing_and_completed(gw, q):
    """A handler's own progress (relayed by its sidecar) reaches a live subscriber as
    updates with its message and a percent between the step's two."""
    jid = gw.call_ok("pipeline", {"value": 1})
    with SSE(stream_url(gw, jid)) as s:
        replay_done(s)
        assert post_progress(gw, jid, q.alpha, 0, 3, "processing").status_code == 200
        for i in (1, 2):
            assert post_progress(gw, jid, q.alpha, 0, 3, "processing", progress=i / 2,
                                 message=f"page {i} of 2").status_code == 200
        assert post_progress(gw, jid, q.alpha, 0, 3, "completed").status_code == 200
        evs = [s.next_event(5).json() for _ in range(4)]
    assert [e["step_status"] for e in evs] == ["processing"] * 3 + ["completed"], evs
    assert [e.get("message") for e in evs[1:3]] == ["page 1 of 2", "page 2 of 2"], evs
    pcts = [e["progress_percent"] for e in evs]
    assert close_to(pcts[1], (50 + 24.5) / 3) and close_to(pcts[2], (50 + 49) / 3), pcts
    assert pcts == sorted(pcts) and close_to(pcts[3], percent(0, 3, "completed")), pcts


@pytest.mark.parametrize("final", ["succeeded", "failed"])
def test_early_reports_wait_for_the_checkpoint_before_them(gw, q, final):
    """Reports of one job that arrive out of route order (a fast pipeline): step
    beta's received before alpha's completed, and the final before both.  The
    gateway holds each until the checkpoint before it is written (at most 0.5 s),
    so the history, and every stream, has them in route order, all before the
    final.  One that never comes holds nothing past 0.5 s."""
    jid = gw.call_ok("pipeline", {"value": 1})
    assert post_progress(gw, jid, q.alpha, 0, 3, "received").status_code == 200
    assert post_progress(gw, jid, q.alpha, 0, 3, "processing").status_code == 200
    answers = {}

    def send(name, fn):
        t0 = time.monotonic()
        r = fn()
        answers[name] = (r.status_code, time.monotonic() - t0)

    early = [
        ("beta-received", lambda: post_progress(gw, jid, q.beta, 1, 3, "received")),
        ("final", lambda: post_final(gw, jid, final, result={"v": 1}, error="E: late")),
    ]
    threads = []
    for name, fn in early:
        t = threading.Thread(target=send, args=(name, fn))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # in this order
    assert post_progress(gw, jid, q.alpha, 0, 3, "completed").status_code == 200
    for t in threads:
        t.join(5)
    assert all(code == 200 for code, _ in answers.values()), answers
    # beta's received went in as soon as alpha's completed did (about 0.1 s after it
    # was sent), not when its 0.5 s were up.
    assert answers["beta-received"][1] < 0.4, answers
    with SSE(stream_url(gw, jid)) as s:
        items = s.read_until_eof(5)
    ups = updates(items)
    got = [(u.get("step"), u.get("step_status")) for u in ups if u.get("step_status")]
    assert got == [(q.alpha, "received"), (q.alpha, "processing"), (q.alpha, "completed"),
                   (q.beta, "received")], got
    want = "Succeeded" if final == "succeeded" else "Failed"
    assert ups[-1]["status"] == want and [u["status"] for u in ups].count(want) == 1, ups
    pcts = [u["progress_percent"] for u in ups if u.get("step_status")]
    assert pcts == sorted(pcts) and close_to(pcts[-1], percent(1, 3, "received")), pcts


def test_a_report_whose_predecessor_never_comes_waits_half_a_second(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    t0 = time.monotonic()
    r = post_progress(gw, jid, q.gamma, 2, 3, "completed")  # nothing before it ever comes
    took = time.monotonic() - t0
    assert r.status_code == 200 and close_to(r.json()["progress_percent"], 100), r.text
    assert 0.4 <= took < 2.0, took


def test_late_subscriber_gets_full_replay(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    sent = []
    for i, step in enumerate([q.alpha, q.beta, q.gamma]):
        for st in ("received", "completed"):
            assert post_progress(gw, jid, step, i, 3, st, message=f"m{i}{st}").status_code == 200
            sent.append((step, st, f"m{i}{st}"))
    assert post_final(gw, jid, "failed", error="E: x").status_code == 200
    with SSE(stream_url(gw, jid)) as s:
        items = s.read_until_eof(5)
    evs = [it for it in items if isinstance(it, Event)]
    assert evs[0].event == "status" and evs[0].data == "Failed", evs[0]
    ups = updates(evs)
    assert all(e.event == "update" for e in evs[1:]), evs
    got = [(u["step"], u["step_status"], u["message"]) for u in ups if u.get("step_status")]
    assert got == sent
    statuses = [u["status"] for u in ups]
    assert statuses[-1] == "Failed" and statuses.count("Failed") == 1, statuses
    assert "Running" in statuses and statuses.index("Running") < len(statuses) - 1
    assert ups[-1]["error"] == "E: x" and ups[-1]["message"] == "Job failed: E: x"
    # Every update has an increasing id.
    ids = [e.id for e in evs[1:]]
    assert all(i is not None and i != "" for i in ids), ids
    nums = [int(i) for i in ids]
    assert nums == sorted(nums) and len(set(nums)) == len(nums), ids


def test_fast_job_is_never_missed(gw):
    """The job finishes before anybody subscribes: the subscriber still gets
    everything, ending with the final."""
    for _ in range(5):
        jid = gw.call_ok("quiet", {})
        assert post_final(gw, jid, "succeeded", result={"n": 1}).status_code == 200
        with SSE(stream_url(gw, jid)) as s:
            items = s.read_until_eof(5)
        ups = updates(items)
        assert ups and ups[-1]["status"] == "Succeeded" and ups[-1]["result"] == {"n": 1}, items


def test_last_event_id_resume(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    posts = [(0, "received"), (0, "processing"), (0, "completed"), (1, "received")]
    for i, st in posts:
        assert post_progress(gw, jid, [q.alpha, q.beta][i], i, 3, st).status_code == 200
    with SSE(stream_url(gw, jid)) as s:
        replay_done(s)
        seen = [s.next_event(5) for _ in posts]
    assert [e.json()["step_status"] for e in seen] == [st for _, st in posts]
    resume_after = seen[1]  # the client saw up to "processing" of step 0
    assert resume_after.id, "updates carry ids"
    # More happens while the client is away.
    assert post_progress(gw, jid, q.beta, 1, 3, "completed").status_code == 200
    with SSE(stream_url(gw, jid), last_event_id=resume_after.id) as s:
        evs = []
        while len(evs) < 3:
            ev = s.next_event(5)
            if ev.event == "status":
                continue
            evs.append(ev)
        got = [(e.json()["step"], e.json()["step_status"]) for e in evs]
        assert got == [(q.alpha, "completed"), (q.beta, "received"), (q.beta, "completed")], got
        assert [e.id for e in evs[:2]] == [seen[2].id, seen[3].id]
        assert post_final(gw, jid, "succeeded", result=0).status_code == 200
        rest = s.read_until_eof(5)
    assert [u["status"] for u in updates(rest)] == ["Succeeded"], rest


def test_last_event_id_of_last_update_sends_only_new(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    assert post_progress(gw, jid, q.alpha, 0, 3, "received").status_code == 200
    with SSE(stream_url(gw, jid)) as s:
        replay_done(s)
        last = s.next_event(5)
    with SSE(stream_url(gw, jid), last_event_id=last.id) as s:
        assert post_progress(gw, jid, q.alpha, 0, 3, "processing").status_code == 200
        ev = s.next_event(5)
        if ev.event == "status":
            ev = s.next_event(5)
        assert ev.event == "update" and ev.json()["step_status"] == "processing", ev


def test_keepalive_comments(gw):
    jid = gw.call_ok("quiet", {})
    with SSE(stream_url(gw, jid)) as s:
        replay_done(s)
        t_end = time.monotonic() + 3.6
        got = []
        while time.monotonic() < t_end:
            try:
                it = s.next(max(0.01, t_end - time.monotonic()))
            except AssertionError:
                break
            got.append(it)
        comments = [it for it in got if isinstance(it, Comment)]
        assert not [it for it in got if not isinstance(it, Comment)], got
        assert len(comments) >= 2, f"keepalives every 1 s: {got}"
        assert all(c.text == "keepalive" for c in comments), comments
        gaps = [b.t - a.t for a, b in zip(comments, comments[1:])]
        assert all(0.5 < g < 2.0 for g in gaps), gaps
        # The stream is still live after the keepalives.
        assert post_final(gw, jid, "succeeded", result=1).status_code == 200
        assert updates(s.read_until_eof(5))[-1]["status"] == "Succeeded"


def test_many_subscribers_see_the_same(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    subs = [SSE(stream_url(gw, jid)) for _ in range(8)]
    try:
        for s in subs:
            replay_done(s)
        assert post_progress(gw, jid, q.alpha, 0, 3, "received").status_code == 200
        assert post_final(gw, jid, "succeeded", result="all").status_code == 200
        for s in subs:
            ups = updates(s.read_until_eof(5))
            assert [u["status"] for u in ups] == ["Running", "Succeeded"], ups
            assert ups[0]["step_status"] == "received" and ups[1]["result"] == "all"
    finally:
        for s in subs:
            s.close()


def test_client_that_goes_away_does_not_disturb(gw):
    jid = gw.call_ok("quiet", {})
    for _ in range(5):
        s = SSE(stream_url(gw, jid))
        s.next_event(5)
        s.close()
    assert post_final(gw, jid, "succeeded", result=1).status_code == 200
    assert gw.get("/health").status_code == 200


@pytest.mark.parametrize("jid", [str(uuid.uuid4()), "not-a-uuid"])
def test_stream_404_unknown_job(gw, jid):
    s = SSE(stream_url(gw, jid))
    assert s.status_code == 404, s.status_code
    s.close()


def test_stream_and_updates_in_parallel(gw, q):
    """Progress posted from several threads while a subscriber reads: every
    update is delivered once, in the order the store recorded it."""
    jid = gw.call_ok("pipeline", {"value": 1})
    with SSE(stream_url(gw, jid)) as s:
        replay_done(s)
        n_threads, per = 4, 10
        errors = []

        def worker(k):
            import requests
            for n in range(per):
                r = requests.post(f"{gw.url}/jobs/{jid}/progress",
                                  json={"step": q.alpha, "step_index": 0, "total_steps": 3,
                                        "status": "received", "actor_name": "alpha",
                                        "message": f"{k}-{n}"}, timeout=10)
                if r.status_code != 200:
                    errors.append(r.status_code)

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors
        evs = [s.next_event(5) for _ in range(n_threads * per)]
        msgs = [e.json()["message"] for e in evs]
        assert sorted(msgs) == sorted(f"{k}-{n}" for k in range(n_threads) for n in range(per))
        for k in range(n_threads):
            mine = [m for m in msgs if m.startswith(f"{k}-")]
            assert mine == [f"{k}-{n}" for n in range(per)], mine
        ids = [int(e.id) for e in evs]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_long_history_is_replayed_whole(gw, q):
    """Hundreds of stored updates: a late subscriber gets every one, in order,
    then the final (no page of the history is skipped)."""
    import requests
    jid = gw.call_ok("pipeline", {"value": 1})
    s = requests.Session()
    n = 300
    for k in range(n):
        r = s.post(f"{gw.url}/jobs/{jid}/progress",
                   json={"step": q.alpha, "step_index": 0, "total_steps": 3,
                         "status": "processing", "actor_name": "alpha", "message": f"m{k}"},
                   timeout=10)
        assert r.status_code == 200, r.text
    assert post_final(gw, jid, "succeeded", result="long").status_code == 200
    with SSE(stream_url(gw, jid)) as sse:
        items = sse.read_until_eof(15)
    ups = updates(items)
    msgs = [u["message"] for u in ups if u.get("step_status") == "processing"]
    assert msgs == [f"m{k}" for k in range(n)], (len(msgs), msgs[:3], msgs[-3:])
    assert ups[-1]["status"] == "Succeeded"
    ids = [int(it.id) for it in items if isinstance(it, Event) and it.event == "update"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize("last", ["not-a-number", "-5", "99999999999999999999999", "", "0"])
def test_odd_last_event_id(gw, last):
    jid = gw.call_ok("quiet", {})
    with SSE(stream_url(gw, jid), last_event_id=last) as s:
        assert s.status_code in (200, 400), s.status_code
        if s.status_code == 200:
            assert s.next_event(5).event == "status"
            assert post_final(gw, jid, "succeeded", result=1).status_code == 200
            ups = updates(s.read_until_eof(5))
            assert ups and ups[-1]["status"] == "Succeeded", ups
    assert gw.get("/health").status_code == 200
