"""Job deadlines: a tool's timeout makes the job Failed with "job timed out";
/active turns 410 at the deadline; the first final decides (a final after the
timeout changes nothing).  Beyond the reference: deadlines live in the store,
so a gateway killed with SIGKILL and started again still fails the job (pg)."""

import time

from gwlib import SSE, parse_time, post_final, post_progress, updates

ROUTES = """\
defaults: {progress: true, timeout: 30}
tools:
  - name: short
    description: two seconds
    parameters: {message: {type: string}}
    route: ["{q}-work"]
    timeout: 2
  - name: four
    description: four seconds
    route: ["{q}-work"]
    timeout: 4
  - name: eight
    description: eight seconds
    route: ["{q}-work"]
    timeout: 8
  - name: forever
    description: no deadline
    route: ["{q}-work"]
    timeout: 0
"""


def test_timeout_fails_the_job(gw, mq, q):
    t0 = time.monotonic()
    jid = gw.call_ok("short", {"message": "slow"})
    j = gw.job(jid)
    assert j["timeout_seconds"] == 2
    assert abs((parse_time(j["deadline"]) - parse_time(j["created_at"])).total_seconds() - 2) < 0.5
    env = mq.get_job(q.work, jid, timeout=5)
    assert env is not None
    assert abs((parse_time(env.json["deadline"]) - parse_time(j["deadline"])).total_seconds()) < 1
    with SSE(f"{gw.url}/jobs/{jid}/stream") as s:
        assert s.next_event(5).event == "status"
        assert gw.get(f"/jobs/{jid}/active").status_code == 200
        time.sleep(max(0.0, 1.2 - (time.monotonic() - t0)))
        assert gw.job(jid)["status"] == "Running", "not failed before its deadline"
        j = gw.wait_job(jid, lambda j: j["status"] == "Failed", timeout=6)
        elapsed = time.monotonic() - t0
        assert j["error"] == "job timed out", j
        assert 1.8 <= elapsed <= 4.5, f"failed {elapsed:.1f}s after the call (deadline 2 s)"
        ups = updates(s.read_until_eof(5))
    assert ups[-1]["status"] == "Failed" and ups[-1]["error"] == "job timed out", ups
    r = gw.get(f"/jobs/{jid}/active")
    assert r.status_code == 410 and r.json() == {"active": False}


def test_active_410_at_the_deadline(gw):
    t0 = time.monotonic()
    jid = gw.call_ok("short", {})
    assert gw.get(f"/jobs/{jid}/active").status_code == 200
    time.sleep(max(0.0, 2.05 - (time.monotonic() - t0)))
    r = gw.get(f"/jobs/{jid}/active")
    assert r.status_code == 410 and r.json() == {"active": False}, r.text


def test_final_after_timeout_changes_nothing(gw):
    jid = gw.call_ok("short", {})
    j = gw.wait_job(jid, lambda j: j["status"] == "Failed", timeout=7)
    assert j["error"] == "job timed out"
    assert post_final(gw, jid, "succeeded", result={"late": True}).status_code == 200
    assert gw.job(jid) == j


def test_final_before_deadline_wins(gw, q):
    jid = gw.call_ok("short", {})
    assert post_progress(gw, jid, q.work, 0, 1, "received").status_code == 200
    assert post_final(gw, jid, "succeeded", result="in time").status_code == 200
    time.sleep(3)
    j = gw.job(jid)
    assert j["status"] == "Succeeded" and j["result"] == "in time" and j.get("error") is None, j


def test_progress_keeps_no_job_alive_past_its_deadline(gw, q):
    jid = gw.call_ok("short", {})
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        post_progress(gw, jid, q.work, 0, 1, "processing")
        time.sleep(0.2)
    j = gw.wait_job(jid, lambda j: j["status"] == "Failed", timeout=6)
    assert j["error"] == "job timed out"


def test_no_deadline_means_none(gw):
    jid = gw.call_ok("forever", {})
    j = gw.job(jid)
    assert j.get("timeout_seconds") in (None, 0), j
    assert j.get("deadline") in (None, ""), j
    time.sleep(0.5)
    assert gw.get(f"/jobs/{jid}/active").status_code == 200


# ---- deadlines survive the gateway (PostgreSQL) -------------------------------------------


def test_deadline_fires_after_gateway_sigkill_and_restart(pg, gateways, mq, q):
    db = pg.url(pg.new_database("dl"))
    g = gateways.start("gateway", db_url=db)
    past = g.call_ok("four", {})    # its deadline passes while no gateway runs
    future = g.call_ok("eight", {})  # its deadline comes after the restart
    t0 = time.monotonic()
    g.kill()
    time.sleep(max(0.0, 4.5 - (time.monotonic() - t0)))
    g.start()
    j = g.wait_job(past, lambda j: j["status"] == "Failed", timeout=5)
    assert j["error"] == "job timed out", j
    j = g.job(future)
    assert j["status"] == "Running", f"not failed before its deadline: {j}"
    j = g.wait_job(future, lambda j: j["status"] == "Failed", timeout=8)
    elapsed = time.monotonic() - t0
    assert j["error"] == "job timed out"
    assert elapsed >= 7.5, f"failed {elapsed:.1f}s after the call, before its 8 s deadline"
    # One "job timed out" entry each, in the store.
    for jid in (past, future):
        n = pg.psql(f"SELECT count(*) FROM job_updates WHERE job_id = '{jid}' "
                    f"AND status = 'Failed'", db.rsplit("/", 1)[1]).strip()
        assert n == "1", (jid, n)
