"""Two gateway replicas on one PostgreSQL database (behind one load balancer):
both start at once (migrations under an advisory lock), a job created on one
is visible on the other, a stream on replica A sees progress and the final
posted to replica B (LISTEN/NOTIFY), and a deadline fails a job once."""

import threading
import time

import pytest

from gwlib import SSE, close_to, percent, post_final, post_progress, updates


@pytest.fixture
def pair(pg, gateways, mq):
    name = pg.new_database("rep")
    db = pg.url(name)
    a = gateways.new("replica-a", db_url=db)
    b = gateways.new("replica-b", db_url=db)
    # Both start at the same moment on an empty database.
    a.start(wait=False)
    b.start(wait=False)
    a.wait_ready()
    b.wait_ready()
    return a, b, name


def test_migrations_applied_once_with_two_replicas(pg, pair):
    a, b, db = pair
    tables = pg.psql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                     "WHERE schemaname = 'public'", db).strip().split(",")
    assert "jobs" in tables and "job_updates" in tables, tables
    # Each migration file recorded once.
    mig = [t for t in tables if t not in ("jobs", "job_updates")]
    assert len(mig) == 1, f"one bookkeeping table for migrations: {tables}"
    rows = pg.psql(f"SELECT count(*) FROM {mig[0]}", db).strip()
    import glob
    import os
    from conftest import MIGRATIONS_DIR
    assert int(rows) == len(glob.glob(os.path.join(MIGRATIONS_DIR, "*.sql"))), rows


def test_stream_on_a_sees_updates_posted_to_b(pair, q):
    a, b, _ = pair
    jid = a.call_ok("pipeline", {"value": 1})
    assert b.job(jid)["status"] == "Running"
    with SSE(f"{a.url}/jobs/{jid}/stream") as s:
        assert s.next_event(5).event == "status"
        s.events_until(lambda e: e.json().get("status") == "Running", 5)
        for i, st in [(0, "received"), (0, "completed"), (1, "processing")]:
            t = time.monotonic()
            r = post_progress(b, jid, [q.alpha, q.beta][i], i, 3, st)
            assert r.status_code == 200, r.text
            ev = s.next_event(5)
            lag = time.monotonic() - t
            u = ev.json()
            assert u["step_status"] == st and close_to(u["progress_percent"], percent(i, 3, st)), u
            assert lag < 2.0, f"update from replica B reached A's stream after {lag:.2f}s"
        assert post_final(b, jid, "succeeded", result={"via": "b"}).status_code == 200
        ups = updates(s.read_until_eof(5))
    assert [u["status"] for u in ups] == ["Succeeded"] and ups[0]["result"] == {"via": "b"}
    assert a.job(jid)["status"] == "Succeeded"


def test_streams_on_both_replicas(pair, q):
    a, b, _ = pair
    jid = b.call_ok("echo", {"message": "x"})
    sa = SSE(f"{a.url}/jobs/{jid}/stream")
    sb = SSE(f"{b.url}/jobs/{jid}/stream")
    try:
        for s in (sa, sb):
            assert s.next_event(5).event == "status"
            s.events_until(lambda e: e.json().get("status") == "Running", 5)
        assert post_progress(a, jid, q.echo, 0, 1, "processing").status_code == 200
        assert post_final(b, jid, "failed", error="E: both").status_code == 200
        for s in (sa, sb):
            ups = updates(s.read_until_eof(5))
            assert [u["status"] for u in ups] == ["Running", "Failed"], ups
            assert ups[1]["error"] == "E: both"
    finally:
        sa.close()
        sb.close()


def test_finals_on_both_replicas_first_wins(pair):
    a, b, _ = pair
    jids = [a.call_ok("quiet", {}) for _ in range(10)]
    res = {}

    def send(g, tag):
        for jid in jids:
            r = post_final(g, jid, "succeeded", result=tag)
            res.setdefault(jid, []).append(r.status_code)

    ta = threading.Thread(target=send, args=(a, "a"))
    tb = threading.Thread(target=send, args=(b, "b"))
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    for jid in jids:
        assert res[jid] == [200, 200], res[jid]
        ja, jb = a.job(jid), b.job(jid)
        assert ja == jb and ja["status"] == "Succeeded" and ja["result"] in ("a", "b"), (ja, jb)
        with SSE(f"{a.url}/jobs/{jid}/stream") as s:
            ups = updates(s.read_until_eof(5))
        assert [u["status"] for u in ups].count("Succeeded") == 1, ups


def test_deadline_fails_once_with_two_replicas(pg, pair):
    a, b, db = pair
    jid = a.call_ok("short", {})
    ja = a.wait_job(jid, lambda j: j["status"] == "Failed", timeout=7)
    assert ja["error"] == "job timed out"
    time.sleep(1.5)  # both replicas' janitors have run
    n = pg.psql(f"SELECT count(*) FROM job_updates WHERE job_id = '{jid}' AND status = 'Failed'",
                db).strip()
    assert n == "1", f"{n} Failed entries"
    assert b.job(jid) == a.job(jid)
