"""Faults, each with an exact account of every job afterwards:

- PostgreSQL stopped (and crashed with SIGKILL) under traffic: tool calls get
  isError naming the database, /readyz 503 with a reason, progress/final 503
  (so end actors retry), /health stays 200; after the server is back the same
  gateway process works again, and every acknowledged job is there.
- the gateway SIGKILLed under traffic: every acknowledged tool call's job
  exists after the restart, Running, with exactly one envelope; no envelope
  for a job the store does not have, no Running job without its envelope.
- the broker stopped: tools/call -> isError "failed to send message: ..." and
  the job Failed; the gateway reconnects after start_app.
- an unroutable route (mandatory publish returned): the same.
"""

import collections
import threading
import time

import requests

from conftest import broker_ctl
from gwlib import SSE, close_to, post_final, post_progress, updates


class Traffic:
    """Threads calling tools/call until stopped; every outcome recorded."""

    def __init__(self, gw, tool="echo", threads=3, pause=0.02):
        self.gw = gw
        self.tool = tool
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.acked = []      # job ids of successful calls
        self.refused = []    # isError texts
        self.failed = []     # (exception or status, elapsed)
        self.slowest = 0.0
        self.n = 0
        self.pause = pause
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, k):
        import re
        s = requests.Session()
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            t = time.monotonic()
            try:
                r = s.post(self.gw.url + "/tools/call",
                           json={"name": self.tool, "arguments": {"message": f"t{k}-{i}"}},
                           timeout=15)
                dt = time.monotonic() - t
                with self.lock:
                    self.n += 1
                    self.slowest = max(self.slowest, dt)
                    if r.status_code != 200:
                        self.failed.append((r.status_code, r.text[:200]))
                    else:
                        res = r.json()
                        text = res["content"][0]["text"]
                        if res.get("isError"):
                            self.refused.append(text)
                        else:
                            self.acked.append(re.match(r"Job created successfully with ID: (\S+)",
                                                       text).group(1))
            except requests.RequestException as exc:
                with self.lock:
                    self.n += 1
                    self.failed.append((type(exc).__name__, time.monotonic() - t))
                time.sleep(0.05)
            time.sleep(self.pause)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)


def wait_status(g, path, code, timeout):
    deadline = time.monotonic() + timeout
    r = None
    while time.monotonic() < deadline:
        try:
            r = g.get(path, timeout=3)
            if r.status_code == code:
                return r
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{path} not {code} within {timeout}s (last {r and r.status_code} "
                         f"{r and r.text!r})")


def db_jobs(pg, name):
    return {row[0]: row for row in pg.rows("SELECT id, status, coalesce(error, '') FROM jobs",
                                           name)}


def envelopes(mq, queue):
    return collections.Counter(m.json.get("job_id") for m in mq.drain(queue)
                               if isinstance(m.json, dict))


def check_outage(g, jid):
    """What a gateway whose database is down answers."""
    r = wait_status(g, "/readyz", 503, 10)
    text = r.text.strip()
    assert text.startswith("not ready: ") and len(text) > len("not ready: ") + 3, text
    r = g.call("echo", {"message": "during the outage"})
    assert r.status_code == 200, (r.status_code, r.text)
    res = r.json()
    assert res.get("isError") is True, res
    assert "database" in res["content"][0]["text"].lower(), res
    for path, body in [("progress", {"step": "s", "step_index": 0, "total_steps": 1,
                                     "status": "received", "actor_name": "s"}),
                       ("heartbeat", {"actor_name": "s", "status": "processing"}),
                       ("final", {"job_id": jid, "status": "succeeded", "result": 1})]:
        r = g.post(f"/jobs/{jid}/{path}", body)
        assert r.status_code == 503, f"{path} during the outage: {r.status_code} {r.text!r}"
    r = g.get(f"/jobs/{jid}")
    assert r.status_code == 503, f"GET job during the outage: {r.status_code} {r.text!r}"
    assert g.get("/health").status_code == 200, "liveness is not readiness"


def check_recovered(g, mq, q, jid, name, pg, traffic):
    """After the database came back: the same process works, and the account."""
    pid = g.pid
    g.wait_ready(30)
    assert g.pid == pid and g.alive()
    after = g.call_ok("echo", {"message": "after"})
    r = post_progress(g, jid, q.echo, 0, 1, "processing")
    assert r.status_code == 200 and close_to(r.json()["progress_percent"], 50), r.text
    assert post_final(g, jid, "succeeded", result="survived").status_code == 200
    assert g.job(jid)["status"] == "Succeeded"
    assert g.job(after)["status"] == "Running"
    traffic.stop()
    assert not traffic.failed, \
        f"tool calls must answer (isError), not fail: {traffic.failed[:5]}"
    assert traffic.slowest < 12, f"a tool call took {traffic.slowest:.1f}s"
    for text in traffic.refused:
        assert "database" in text.lower(), text
    jobs = db_jobs(pg, name)
    env = envelopes(mq, q.echo)
    for a in traffic.acked + [after]:
        assert a in jobs, f"acknowledged job {a} lost"
        # Stored and published; the Running update itself may be what the
        # outage cut off (docs/gateway.md), never the job.
        assert jobs[a][1] in ("Running", "Pending"), jobs[a]
        assert env[a] == 1, f"job {a}: {env[a]} envelopes"
    assert jobs[after][1] == "Running"
    for jid2, n in env.items():
        assert jid2 in jobs, f"an envelope for job {jid2} the store does not have"
        assert n == 1, (jid2, n)
    return jobs


def test_postgres_restart_mid_traffic(pg_up, gateways, mq, q):
    pg = pg_up
    name = pg.new_database("flt")
    g = gateways.start("gateway", db_url=pg.url(name))
    mq.purge(q.echo)
    jid = g.call_ok("echo", {"message": "before"})
    traffic = Traffic(g).start()
    time.sleep(0.5)
    pg.stop()
    try:
        check_outage(g, jid)
        time.sleep(1.0)
        n_refused = len(traffic.refused)
        assert n_refused > 0, "calls during the outage were refused"
    finally:
        pg.start()
    check_recovered(g, mq, q, jid, name, pg, traffic)
    assert len(traffic.acked) > 5


def test_postgres_crash_mid_traffic(pg_up, gateways, mq, q):
    pg = pg_up
    name = pg.new_database("crash")
    g = gateways.start("gateway", db_url=pg.url(name))
    mq.purge(q.echo)
    jid = g.call_ok("echo", {"message": "before"})
    traffic = Traffic(g).start()
    time.sleep(0.7)
    pg.kill()
    try:
        check_outage(g, jid)
    finally:
        pg.start()
    jobs = check_recovered(g, mq, q, jid, name, pg, traffic)
    assert jid in jobs


def test_gateway_sigkill_mid_traffic(pg, gateways, mq, q):
    name = pg.new_database("kill")
    g = gateways.start("gateway", db_url=pg.url(name))
    mq.purge(q.echo)
    traffic = Traffic(g, threads=4, pause=0.0).start()
    time.sleep(1.5)
    g.kill()
    traffic.stop()
    acked = list(traffic.acked)
    assert len(acked) > 20, f"only {len(acked)} calls before the kill"
    g.start()
    jobs = db_jobs(pg, name)
    env = envelopes(mq, q.echo)
    for a in acked:
        assert a in jobs, f"acknowledged job {a} lost"
        assert jobs[a][1] == "Running", jobs[a]
        assert g.job(a)["status"] == "Running"
        assert env[a] == 1, f"job {a}: {env[a]} envelopes"
    for jid, row in jobs.items():
        assert row[1] in ("Pending", "Running", "Failed"), row
        # A tool call stores its job as sent before publishing (docs/gateway.md):
        # only a call the kill cut short may be Running without its envelope.
        if row[1] == "Running" and jid in acked:
            assert env[jid] == 1, f"acknowledged job {jid} is Running without its envelope"
    for jid, n in env.items():
        assert jid in jobs, f"an envelope for job {jid} the store does not have"
        assert n == 1
    unacked = set(jobs) - set(acked)
    assert len(unacked) <= 4, f"at most one call in flight per thread: {unacked}"
    # The restarted gateway works.
    a = acked[-1]
    assert post_final(g, a, "succeeded", result="after restart").status_code == 200
    with SSE(f"{g.url}/jobs/{a}/stream") as s:
        ups = updates(s.read_until_eof(5))
    assert ups[-1]["status"] == "Succeeded" and ups[-1]["result"] == "after restart"


def test_broker_stopped(pg, gateways, mq, q):
    name = pg.new_database("mq")
    g = gateways.start("gateway", db_url=pg.url(name))
    before = g.call_ok("echo", {"message": "before"})
    assert mq.get_job(q.echo, before, timeout=5) is not None
    broker_ctl("stop_app")
    try:
        r = wait_status(g, "/readyz", 503, 15)
        assert r.text.strip().startswith("not ready: "), r.text
        t = time.monotonic()
        r = g.call("echo", {"message": "lost"}, timeout=20)
        assert time.monotonic() - t < 12
        assert r.status_code == 200, r.text
        res = r.json()
        assert res.get("isError") is True, res
        text = res["content"][0]["text"]
        assert text.startswith("failed to send message:"), text
        rows = pg.rows("SELECT id, status, error FROM jobs WHERE payload->>'message' = 'lost'",
                       name)
        assert len(rows) == 1, rows
        jid, status, error = rows[0]
        assert status == "Failed" and error.startswith("failed to send message:"), rows
        j = g.job(jid)
        assert j["status"] == "Failed" and j["error"] == error, j
        assert g.get("/health").status_code == 200
        # Reports still work without the broker.
        assert post_progress(g, before, q.echo, 0, 1, "received").status_code == 200
        # A gateway started while the broker is down: alive, not ready.
        late = gateways.start("gateway-late", wait=False)
        wait_status(late, "/health", 200, 10)
        r = late.get("/readyz")
        assert r.status_code == 503 and r.text.strip().startswith("not ready: "), r.text
    finally:
        broker_ctl("start_app")
    g.wait_ready(60)
    late.wait_ready(60)
    jid = late.call_ok("echo", {"message": "late"})
    assert mq.get_job(q.echo, jid, timeout=10) is not None
    jid = g.call_ok("echo", {"message": "back"})
    assert mq.get_job(q.echo, jid, timeout=10) is not None
    assert g.job(jid)["status"] == "Running"


def test_unroutable_route_fails_the_job(pg, gateways, mq, q):
    name = pg.new_database("noroute")
    g = gateways.start("gateway", db_url=pg.url(name))
    r = g.call("nowhere", {})
    assert r.status_code == 200
    res = r.json()
    assert res.get("isError") is True, res
    text = res["content"][0]["text"]
    assert text.startswith("failed to send message:"), text
    rows = pg.rows("SELECT id, status, error FROM jobs", name)
    assert len(rows) == 1 and rows[0][1] == "Failed", rows
    assert rows[0][2].startswith("failed to send message:"), rows
    # The publisher is fine for the next call.
    jid = g.call_ok("echo", {"message": "routable"})
    assert mq.get_job(q.echo, jid, timeout=5) is not None


def test_pool_of_one_serves_concurrent_work(pg, gateways, mq, q):
    """ASYA_DATABASE_POOL_SIZE=1: concurrent tool calls, reads and reports
    queue for the one connection and all get their answer."""
    name = pg.new_database("pool1")
    g = gateways.start("gateway", db_url=pg.url(name), env={"ASYA_DATABASE_POOL_SIZE": "1"})
    mq.purge(q.echo)
    traffic = Traffic(g, threads=6, pause=0.0).start()
    jid = g.call_ok("echo", {"message": "pool"})
    for st in ("received", "processing", "completed"):
        assert post_progress(g, jid, q.echo, 0, 1, st).status_code == 200
    time.sleep(1.0)
    traffic.stop()
    assert not traffic.failed and not traffic.refused, (traffic.failed[:3], traffic.refused[:3])
    assert len(traffic.acked) > 20
    jobs = db_jobs(pg, name)
    assert all(jobs[a][1] == "Running" for a in traffic.acked)
    assert close_to(g.job(jid)["progress_percent"], 100)


def test_stream_survives_postgres_restart(pg_up, gateways, mq, q):
    """An SSE stream open across a database restart still gets the updates
    written after it (the listener reconnects and catches up)."""
    pg = pg_up
    name = pg.new_database("sse")
    a = gateways.start("gateway-a", db_url=pg.url(name))
    b = gateways.start("gateway-b", db_url=pg.url(name))
    jid = a.call_ok("pipeline", {"value": 1})
    with SSE(f"{a.url}/jobs/{jid}/stream") as s:
        assert s.next_event(5).event == "status"
        s.events_until(lambda e: e.json().get("status") == "Running", 5)
        pg.stop()
        time.sleep(0.3)
        pg.start()
        a.wait_ready(30)
        b.wait_ready(30)
        for g, st in [(a, "received"), (b, "processing")]:
            assert post_progress(g, jid, q.alpha, 0, 3, st).status_code == 200
            ev = s.next_event(5)
            assert ev.json()["step_status"] == st, ev
        assert post_final(b, jid, "succeeded", result="after restart").status_code == 200
        ups = updates(s.read_until_eof(5))
    assert [u["status"] for u in ups] == ["Succeeded"], ups


def test_gateway_started_before_postgres(pg_up, gateways, mq, q):
    """Started while the database is down: alive, not ready (with the reason),
    and ready by itself once the database is there."""
    pg = pg_up
    name = pg.new_database("late")
    pg.stop()
    try:
        # (pg.url() needs no running server: it only reads pg.env)
        g = gateways.new("gateway", db_url=f"postgres://asya:asya@127.0.0.1:{pg_port(pg)}/{name}")
        g.start(wait=False)
        r = wait_status(g, "/health", 200, 10)
        r = g.get("/readyz")
        assert r.status_code == 503 and r.text.strip().startswith("not ready: "), r.text
        res = g.call("echo", {"message": "too early"}).json()
        assert res.get("isError") is True and "database" in res["content"][0]["text"].lower()
    finally:
        pg.start()
    g.wait_ready(30)
    jid = g.call_ok("echo", {"message": "in time"})
    assert mq.get_job(q.echo, jid, timeout=5) is not None
    assert g.job(jid)["status"] == "Running"


def pg_port(pg):
    with open(f"{pg.dir}/pg.env") as f:
        for line in f:
            if line.startswith("PG_PORT="):
                return int(line.split("=", 1)[1])
    raise AssertionError("no PG_PORT in pg.env")
