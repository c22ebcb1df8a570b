#!/usr/bin/python3
"""make bench-gateway: asya-gateway's tool-call rate and latency against PostgreSQL's own
single-row INSERT rate, and the memory one open SSE stream costs; one table from one run.

Set-up: a private PostgreSQL (tests/lib/postgres.sh), a private RabbitMQ (tests/lib/broker.sh)
and build/bin/asya-gateway with the PostgreSQL store.  The tools' route is one queue,
bench-gw-sink, declared durable and bound to exchange asya (so every publish is routed and
confirmed) with x-max-length and drop-head, so the broker never holds more than
SINK_MAX_LENGTH of the bench's messages; it is purged after each row and at the end.

(a) Tool calls: a load generator of BENCH_GW_PROCS processes x threads, one keep-alive
    http.client connection per thread (C connections in all), each sending the next call as
    soon as the last one's answer arrived, for BENCH_GW_SECONDS after a 1 s warm-up.
    calls/s = answers completed in the window / window; p50/p99 of the reply latency of
    those answers.  Every answer is checked (200, "Job created successfully", no isError).
    Rows: POST /tools/call at each C, and MCP tools/call (POST /mcp with a session per
    connection) at the largest C.  The generator is not the bottleneck when its ceiling
    row, GET /health through the same generator at the largest C, is well above the tool
    rows; the generator's own CPU use (% of one core, all its processes) is shown per row.
(b) pgbench -n -c C -j 2 -T BENCH_GW_SECONDS -f insert.sql against the same server, in the
    same run, while the gateway idles: insert.sql inserts one row per transaction into
    bench_jobs, CREATE TABLE ... (LIKE jobs INCLUDING ALL) after the gateway migrated the
    database (same columns, defaults, CHECKs and indexes).  Ratio = (a) calls/s / (b) tps
    at the same C; target >= 0.5.  A second pgbench row adds a pg_notify() to each such
    transaction, as the gateway's job_updates trigger does: PostgreSQL serializes notifying
    commits, so that row is the ceiling of anything that NOTIFYs once per write.
    The (a) rows also show, from the gateway's own metrics over the same window, its mean
    publish-to-confirm time, mean store operation time and store operations per call.
(c) SSE memory: BENCH_GW_STREAMS jobs created (their messages sit in the capped queue: the
    jobs stay non-terminal), 20 streams opened and closed as warm-up, the gateway's VmRSS
    read from /proc/<pid>/status, then one GET /jobs/<id>/stream per job opened and held
    (each answered 200 text/event-stream with its first `event: status`), VmRSS read again
    after 1 s.  KiB per stream = (after - before) / streams; target <= 20.  RLIMIT_NOFILE is
    raised for the bench and the gateway.

Environment:
  BENCH_GW_CONCURRENCY  client counts for (a) and (b), comma-separated (default 16,64)
  BENCH_GW_SECONDS      measured seconds per (a) row and per pgbench run (default 10)
  BENCH_GW_PROCS        load generator processes (default 2)
  BENCH_GW_STREAMS      SSE streams for (c) (default 1000)
  BENCH_GW_POOL         ASYA_DATABASE_POOL_SIZE of the gateway (default: the gateway's, 8)
  BENCH_GW_STORE        pg (default) or mem: the gateway's store, to tell the database's share
                        of the (a) figures from the rest (pgbench runs either way)
  BENCH_GW_PORT / BENCH_GW_PG_PORT / BENCH_GW_AMQP_PORT / BENCH_GW_MGMT_PORT
                        private ports (default 18098 / 55498 / 5698 / 15698)
  ASYA_BUILD_DIR        build directory (default build); logs end up in <build>/bench/gateway-logs
"""
import base64
import http.client
import json
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("ASYA_BUILD_DIR", os.path.join(ROOT, "build")))
GATEWAY = os.path.join(BUILD, "bin", "asya-gateway")
BROKER_SH = os.path.join(ROOT, "tests", "lib", "broker.sh")
POSTGRES_SH = os.path.join(ROOT, "tests", "lib", "postgres.sh")
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")

CONC = [int(c) for c in os.environ.get("BENCH_GW_CONCURRENCY", "16,64").split(",") if c]
SECONDS = float(os.environ.get("BENCH_GW_SECONDS", "10"))
PROCS = int(os.environ.get("BENCH_GW_PROCS", "2"))
STREAMS = int(os.environ.get("BENCH_GW_STREAMS", "1000"))
POOL = os.environ.get("BENCH_GW_POOL", "")
STORE = os.environ.get("BENCH_GW_STORE", "pg")
GW_PORT = int(os.environ.get("BENCH_GW_PORT", "18098"))
PG_PORT = int(os.environ.get("BENCH_GW_PG_PORT", "55498"))
AMQP_PORT = int(os.environ.get("BENCH_GW_AMQP_PORT", "5698"))
MGMT_PORT = int(os.environ.get("BENCH_GW_MGMT_PORT", "15698"))
AMQP_URL = "amqp://guest:guest@127.0.0.1:%d/" % AMQP_PORT
SINK = "bench-gw-sink"
SINK_MAX_LENGTH = 2000
WARMUP = 1.0
TARGET_RATIO = 0.5
TARGET_KIB_PER_STREAM = 20

ROUTES = """\
defaults: {progress: true, timeout: 300}
tools:
  - name: bench_echo
    description: benchmark tool, one step
    parameters:
      value: {type: integer, description: a number, required: true}
    route: [%s]
""" % SINK

# One row per transaction, shaped like the gateway's own Pending insert of a job.
INSERT_SQL = """\
INSERT INTO bench_jobs (id, status, route_steps, route_current, payload, timeout_sec, deadline,
                        progress_percent, steps_completed, total_steps)
VALUES (gen_random_uuid()::text, 'Pending', ARRAY['%s'], 0, '{"value": 1}'::jsonb, 300,
        now() + interval '300 seconds', 0, 0, 1);
""" % SINK
# The same row and a NOTIFY in its transaction, as each job_updates row the gateway writes
# carries one (db/001_jobs.sql): notifying commits are serialized by PostgreSQL (a global
# lock held through the commit's WAL flush), so this row shows that ceiling.
INSERT_NOTIFY_SQL = "BEGIN;\n" + INSERT_SQL + "SELECT pg_notify('bench_gw', 'x');\nCOMMIT;\n"

procs = []  # (Popen, name) we started
workdir = tempfile.mkdtemp(prefix="asya-bgw-")  # short: the PostgreSQL socket lives here
os.chmod(workdir, 0o755)  # the broker and the server run as their own users when root
broker_dir = os.path.join(workdir, "broker")
pg_dir = os.path.join(workdir, "pg")
started = {"broker": False, "pg": False}
notes = []


def log(msg):
    print("bench-gateway: " + msg, file=sys.stderr, flush=True)


def start(cmd, name, env=None, preexec_fn=None):
    out = open(os.path.join(workdir, name + ".log"), "ab")
    p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec_fn)
    out.close()
    procs.append((p, name))
    return p


def tail(name, n=30):
    try:
        with open(os.path.join(workdir, name + ".log"), "rb") as f:
            return b"".join(f.readlines()[-n:]).decode(errors="replace")
    except OSError:
        return ""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- the broker, over its management API ----------------------------------------

def mgmt(method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d/api/%s" % (MGMT_PORT, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        data = r.read()
    return json.loads(data) if data else None


def declare_sink():
    mgmt("PUT", "exchanges/%2F/asya", {"type": "topic", "durable": True})
    mgmt("PUT", "queues/%2F/" + SINK, {"durable": True, "arguments": {
        "x-max-length": SINK_MAX_LENGTH, "x-overflow": "drop-head"}})
    mgmt("POST", "bindings/%2F/e/asya/q/" + SINK, {"routing_key": SINK})


def purge_sink():
    mgmt("DELETE", "queues/%2F/" + SINK + "/contents")


# ---- PostgreSQL ----------------------------------------------------------------------

def psql(sql):
    r = subprocess.run([POSTGRES_SH, "psql", pg_dir, "-d", "asya", "-qAt", "-v", "ON_ERROR_STOP=1",
                        "-c", sql], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("psql %r: %s%s" % (sql, r.stdout, r.stderr))
    return r.stdout.strip()


def pgbench(c, notify=False):
    script = os.path.join(workdir, "insert-notify.sql" if notify else "insert.sql")
    with open(script, "w") as f:
        f.write(INSERT_NOTIFY_SQL if notify else INSERT_SQL)
    psql("TRUNCATE bench_jobs")
    env = dict(os.environ, PGPASSWORD="asya")
    cmd = [os.path.join(PG_BIN, "pgbench"), "-n", "-c", str(c), "-j", "2", "-T", "%d" % SECONDS,
           "-f", script, "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "asya", "asya"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=SECONDS + 60)
    if r.returncode != 0:
        raise RuntimeError("pgbench -c %d failed: %s%s" % (c, r.stdout, r.stderr))
    tps = lat = None
    for line in r.stdout.splitlines():
        if line.startswith("tps = "):
            tps = float(line.split()[2])
        elif line.startswith("latency average = "):
            lat = float(line.split()[3])
    if tps is None:
        raise RuntimeError("pgbench -c %d: no tps line in: %s" % (c, r.stdout))
    rows = int(psql("SELECT count(*) FROM bench_jobs"))
    psql("TRUNCATE bench_jobs")
    return tps, lat, rows


# ---- the gateway ---------------------------------------------------------------------

def gw_conn(timeout=30):
    return http.client.HTTPConnection("127.0.0.1", GW_PORT, timeout=timeout)


def gw_request(method, path, body=None, headers=None, conn=None):
    c = conn or gw_conn()
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        if conn is None:
            c.close()


def start_gateway(db_url, routes):
    nofile = STREAMS + 1024

    def limits():
        raise_nofile(nofile)
    env = dict(os.environ, ASYA_GATEWAY_PORT=str(GW_PORT), ASYA_GATEWAY_ADDR="127.0.0.1",
               ASYA_RABBITMQ_URL=AMQP_URL, ASYA_RABBITMQ_EXCHANGE="asya",
               ASYA_DATABASE_URL=db_url, ASYA_CONFIG_PATH=routes,
               ASYA_GATEWAY_MIGRATIONS_DIR=os.path.join(ROOT, "db"), ASYA_LOG_LEVEL="WARNING")
    if POOL:
        env["ASYA_DATABASE_POOL_SIZE"] = POOL
    p = start([GATEWAY], "gateway", env, preexec_fn=limits)
    deadline = time.time() + 30
    while True:
        if p.poll() is not None:
            raise RuntimeError("asya-gateway exited with %s at start:\n%s" % (p.returncode,
                                                                              tail("gateway")))
        try:
            if gw_request("GET", "/health", conn=None)[0] == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError("asya-gateway not answering /health after 30 s:\n" + tail("gateway"))
        time.sleep(0.1)
    # Healthy is not yet published-to: the first call waits until the publisher is up.
    deadline = time.time() + 30
    while True:
        st, _, body = tool_call(gw_conn(), 0)
        if st == 200 and b"Job created successfully" in body and b'"isError":true' not in body:
            return p
        if time.time() > deadline:
            raise RuntimeError("tool call still failing after 30 s: %s %s\n%s"
                               % (st, body[:300], tail("gateway")))
        time.sleep(0.2)


def tool_call(conn, n):
    body = json.dumps({"name": "bench_echo", "arguments": {"value": n}})
    return gw_request("POST", "/tools/call", body, {"Content-Type": "application/json"}, conn)


def metric_sums():
    """{name: value summed over label sets} for the _sum/_count series the table uses."""
    want = ("asya_gateway_publish_latency_seconds_sum", "asya_gateway_publish_latency_seconds_count",
            "asya_gateway_store_latency_seconds_sum", "asya_gateway_store_latency_seconds_count")
    out = dict.fromkeys(want, 0.0)
    try:
        st, _, body = gw_request("GET", "/metrics")
    except OSError:
        return out
    if st != 200:
        return out
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            try:
                out[name] += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return out


def mean_ms(m0, m1, base):
    n = m1[base + "_count"] - m0[base + "_count"]
    return (1000.0 * (m1[base + "_sum"] - m0[base + "_sum"]) / n, n) if n > 0 else (None, 0)


# ---- (a) the load generator ------------------------------------------------------------

def _mcp_session(conn):
    hdr = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bench-gateway", "version": "0"}}}
    conn.request("POST", "/mcp", json.dumps(init), hdr)
    r = conn.getresponse()
    r.read()
    sid = r.getheader("Mcp-Session-Id")
    if r.status != 200 or not sid:
        raise RuntimeError("MCP initialize: HTTP %d, session %r" % (r.status, sid))
    hdr = dict(hdr, **{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"})
    conn.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                 hdr)
    r = conn.getresponse()
    r.read()
    return hdr


def _gen_thread(kind, t_begin, t_end, seq, out):
    lat, errors, first_err = [], 0, None
    conn = gw_conn()
    n = seq * 1000000
    try:
        if kind == "mcp":
            hdr = _mcp_session(conn)
        else:
            hdr = {"Content-Type": "application/json"}
        while True:
            t0 = time.monotonic()
            if t0 >= t_end:
                break
            n += 1
            if kind == "health":
                conn.request("GET", "/health")
            elif kind == "rest":
                conn.request("POST", "/tools/call", json.dumps(
                    {"name": "bench_echo", "arguments": {"value": n}}), hdr)
            else:
                conn.request("POST", "/mcp", json.dumps(
                    {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                     "params": {"name": "bench_echo", "arguments": {"value": n}}}), hdr)
            r = conn.getresponse()
            body = r.read()
            t1 = time.monotonic()
            ok = r.status == 200 and (kind == "health" or (b"Job created successfully" in body and
                                                           b'"isError":true' not in body))
            if not ok:
                errors += 1
                if first_err is None:
                    first_err = "HTTP %d %s" % (r.status, body[:200])
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = gw_conn()
            if t_begin <= t1 < t_end:
                lat.append(t1 - t0)
    except Exception as e:  # a dropped connection etc.: counted, the row is marked
        errors += 1
        first_err = first_err or "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()
    out.append((lat, errors, first_err))


def _gen_proc(kind, threads, t_begin, t_end, base, pipe):
    out = []
    ts = [threading.Thread(target=_gen_thread, args=(kind, t_begin, t_end, base + i, out))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lat, errors, first = [], 0, None
    for lt, e, fe in out:
        lat.extend(lt)
        errors += e
        first = first or fe
    u = os.times()
    pipe.send((lat, errors, first, u.user + u.system))
    pipe.close()


def load(kind, c, gw_pid):
    """C connections over PROCS processes; returns (rate, p50 ms, p99 ms, errors, first
    error, generator CPU % of one core, gateway CPU % of one core, the gateway's mean
    publish-to-confirm ms, its mean store operation ms and store operations per answer)."""
    ctx = multiprocessing.get_context("fork")
    nprocs = max(1, min(PROCS, c))
    per = [c // nprocs + (1 if i < c % nprocs else 0) for i in range(nprocs)]
    t_begin = time.monotonic() + 0.5 + WARMUP
    t_end = t_begin + SECONDS
    workers = []
    for i, n in enumerate(per):
        a, b = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_gen_proc, args=(kind, n, t_begin, t_end, sum(per[:i]), b))
        p.start()
        workers.append((p, a))
    # The warm-up: connections open and calls flow before t_begin; measure from t_begin.
    while time.monotonic() < t_begin:
        time.sleep(0.01)
    gw_cpu0 = cpu_seconds(gw_pid)
    m0 = metric_sums()
    time.sleep(max(0.0, t_end - time.monotonic()))
    gw_cpu1 = cpu_seconds(gw_pid)
    m1 = metric_sums()
    lat, errors, first, gen_cpu = [], 0, None, 0.0
    for p, a in workers:
        if not a.poll(SECONDS + 60):
            raise RuntimeError("load generator process did not report")
        lt, e, fe, cpu = a.recv()
        p.join(10)
        lat.extend(lt)
        errors += e
        first = first or fe
        gen_cpu += cpu
    lat.sort()
    if not lat:
        raise RuntimeError("%s at C=%d: no answer in the window (%d errors, first: %s)"
                           % (kind, c, errors, first))

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000.0
    # The generator's CPU includes its 1.5 s of start and warm-up; close enough for a
    # "is it saturated" figure, and an over-estimate if anything.
    pub_ms, _ = mean_ms(m0, m1, "asya_gateway_publish_latency_seconds")
    store_ms, store_n = mean_ms(m0, m1, "asya_gateway_store_latency_seconds")
    return (len(lat) / SECONDS, pct(0.50), pct(0.99), errors, first,
            100.0 * gen_cpu / (SECONDS + WARMUP + 0.5), 100.0 * (gw_cpu1 - gw_cpu0) / SECONDS,
            pub_ms, store_ms, store_n / float(len(lat)))


# ---- (c) SSE streams -------------------------------------------------------------------

def open_stream(job_id):
    s = socket.create_connection(("127.0.0.1", GW_PORT), timeout=30)
    s.sendall(("GET /jobs/%s/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
               % job_id).encode())
    buf = b""
    while b"event: status" not in buf or b"\n\n" not in buf.split(b"event: status", 1)[1]:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("stream %s closed before its first event: %r" % (job_id, buf[:300]))
        buf += chunk
        if len(buf) > 65536:
            raise RuntimeError("stream %s: no status event in 64 KiB" % job_id)
    head = buf.split(b"\r\n\r\n", 1)[0].lower()
    if not head.startswith(b"http/1.1 200") or b"text/event-stream" not in head:
        raise RuntimeError("stream %s: %r" % (job_id, head[:300]))
    return s


def sse_memory(gw_pid):
    raise_nofile(STREAMS + 1024)
    conn = gw_conn()
    ids = []
    for i in range(STREAMS + 20):
        st, _, body = tool_call(conn, i)
        text = json.loads(body)["content"][0]["text"] if st == 200 else ""
        if not text.startswith("Job created successfully with ID: "):
            raise RuntimeError("creating job %d for (c): HTTP %d %s" % (i, st, body[:300]))
        ids.append(text.split("ID: ", 1)[1].split()[0])
    conn.close()
    purge_sink()
    for s in [open_stream(j) for j in ids[STREAMS:]]:  # warm-up
        s.close()
    time.sleep(1.0)
    before = rss_kib(gw_pid)
    socks = []
    t0 = time.time()
    try:
        for j in ids[:STREAMS]:
            socks.append(open_stream(j))
        open_secs = time.time() - t0
        time.sleep(1.0)
        after = rss_kib(gw_pid)
        st = gw_request("GET", "/health")[0]
        if st != 200:
            raise RuntimeError("GET /health with %d streams open: HTTP %d" % (STREAMS, st))
    finally:
        for s in socks:
            s.close()
    time.sleep(1.0)
    closed = rss_kib(gw_pid)
    return before, after, closed, open_secs


# ---- report ----------------------------------------------------------------------------

def report(rows, ceiling, pg, pgn, sse, settings, elapsed, stop_info):
    w = 92
    print()
    print("=" * w)
    print("asya bench-gateway: asya-gateway + private PostgreSQL 15 + private RabbitMQ, one machine;")
    print("%d s per row after a %.0f s warm-up; generator: %d process(es) x threads, keep-alive;"
          " nproc=%d; load avg before start %.2f" % (SECONDS, WARMUP, PROCS, os.cpu_count(), LOAD0))
    print("gateway settings: %s" % settings)
    print("-" * w)
    print("%-34s %3s %8s %7s %7s %5s %5s %6s %6s %5s %4s" % (
        "(a) row", "C", "calls/s", "p50 ms", "p99 ms", "gen%", "gw%", "pub ms", "db ms", "db/c",
        "err"))

    def opt(v, f):
        return f % v if v is not None else "-"
    for (kind, c), (rate, p50, p99, errs, first, gcpu, gwcpu, pub, db, dbn) in rows:
        label = {"rest": "POST /tools/call", "mcp": "MCP tools/call (POST /mcp)",
                 "health": "generator ceiling: GET /health"}[kind]
        print("%-34s %3d %8.0f %7.2f %7.2f %5.0f %5.0f %6s %6s %5s %4d" % (
            label, c, rate, p50, p99, gcpu, gwcpu, opt(pub, "%.2f"), opt(db, "%.2f"),
            "%.1f" % dbn if db is not None else "-", errs))
        if first:
            notes.append("%s C=%d: first error: %s" % (label, c, first))
    print("    gen% / gw%: CPU of the load generator (all its processes) / of the gateway, in % of"
          " one core;")
    print("    pub ms: the gateway's mean publish-to-confirm time; db ms: its mean store operation"
          " time;")
    print("    db/c: store operations per answer (gateway metrics over the same window)")
    print("-" * w)
    print("%-44s %4s %9s %8s %8s" % ("(b) pgbench -n -j 2, one INSERT per xact", "C", "tps",
                                     "avg ms", "rows"))
    for label, runs in (("INSERT INTO bench_jobs (LIKE jobs)", pg),
                        ("the same + pg_notify() in its transaction", pgn)):
        for c, (tps, lat, nrows) in runs:
            print("%-44s %4d %9.0f %8s %8d" % (label, c, tps,
                                                 "%.2f" % lat if lat is not None else "-", nrows))
    print("-" * w)
    if sse:
        before, after, closed, open_secs = sse
        per = (after - before) / float(STREAMS)
        print("(c) %d SSE streams on non-terminal jobs (opened in %.1f s)" % (STREAMS, open_secs))
        print("    gateway VmRSS KiB: before %d, with the streams open %d, after closing %d"
              % (before, after, closed))
        print("    KiB per open stream: %.1f" % per)
        print("-" * w)
    print("targets")

    def target(name, ok, detail):
        print("  %-52s %-5s %s" % (name, "PASS" if ok else "MISS", detail))
    rest = {c: v for (k, c), v in rows if k == "rest"}
    for c, (tps, _, _) in pg:
        if c in rest:
            ratio = rest[c][0] / tps if tps else 0.0
            target("(a)/(b) job creation >= %.1f x pgbench INSERT, C=%d" % (TARGET_RATIO, c),
                   ratio >= TARGET_RATIO, "%.2f x (%.0f vs %.0f)" % (ratio, rest[c][0], tps))
    if ceiling:
        top = max(v[0] for (k, _), v in rows if k in ("rest", "mcp"))
        target("generator not the bottleneck (ceiling >= 2 x tool rate)", ceiling >= 2 * top,
               "%.0f vs %.0f calls/s" % (ceiling, top))
    errs = sum(v[3] for _, v in rows)
    target("every answer correct", errs == 0, "%d errors" % errs)
    if sse:
        per = (sse[1] - sse[0]) / float(STREAMS)
        target("(c) <= %d KiB per SSE stream" % TARGET_KIB_PER_STREAM, per <= TARGET_KIB_PER_STREAM,
               "%.1f KiB" % per)
    if stop_info is not None:
        rc, secs = stop_info
        target("SIGTERM: exit 0 within 10 s", rc == 0 and secs <= 10, "exit %s in %.1f s"
               % (rc, secs))
    for n in notes:
        print("note: " + n)
    print("bench wall time %.0f s" % elapsed)
    print("=" * w)


def main():
    t_start = time.time()
    if not os.path.exists(GATEWAY):
        sys.exit("bench-gateway: %s missing (make %s)" % (GATEWAY, os.path.relpath(GATEWAY, ROOT)))
    if not os.path.exists(os.path.join(PG_BIN, "pgbench")):
        sys.exit("bench-gateway: %s/pgbench missing (scripts/install-deps.sh)" % PG_BIN)
    log("workdir %s" % workdir)
    started["pg"] = True
    subprocess.run([POSTGRES_SH, "start", pg_dir, str(PG_PORT)], check=True)
    db_url = subprocess.run([POSTGRES_SH, "url", pg_dir], check=True, capture_output=True,
                            text=True).stdout.strip()
    started["broker"] = True
    subprocess.run([BROKER_SH, "start", broker_dir, str(AMQP_PORT), str(MGMT_PORT)], check=True)
    declare_sink()
    routes = os.path.join(workdir, "routes.yaml")
    with open(routes, "w") as f:
        f.write(ROUTES)
    if STORE != "pg":
        # A gateway on the database first: pgbench's table is shaped on its migrations.
        gwm = start_gateway(db_url, routes)
        gwm.send_signal(signal.SIGTERM)
        gwm.wait(15)
    gw = start_gateway(db_url if STORE == "pg" else "", routes)
    settings = ("store %s, ASYA_DATABASE_POOL_SIZE=%s"
                % ("PostgreSQL" if STORE == "pg" else "memory", POOL or "default"))
    psql("SET ROLE asya; CREATE TABLE IF NOT EXISTS bench_jobs (LIKE jobs INCLUDING ALL)")

    rows = []
    for c in CONC:
        log("(a) POST /tools/call, C=%d" % c)
        rows.append((("rest", c), load("rest", c, gw.pid)))
        purge_sink()
    top = max(CONC)
    log("(a) MCP tools/call, C=%d" % top)
    rows.append((("mcp", top), load("mcp", top, gw.pid)))
    purge_sink()
    log("(a) generator ceiling, GET /health, C=%d" % top)
    h = load("health", top, gw.pid)
    rows.append((("health", top), h))
    pg, pgn = [], []
    for c in CONC:
        log("(b) pgbench, C=%d" % c)
        pg.append((c, pgbench(c)))
        log("(b) pgbench with NOTIFY, C=%d" % c)
        pgn.append((c, pgbench(c, notify=True)))
    sse = None
    if STREAMS > 0:
        log("(c) %d SSE streams" % STREAMS)
        sse = sse_memory(gw.pid)
        purge_sink()
    if gw.poll() is not None:
        raise RuntimeError("asya-gateway exited with %s during the bench:\n%s"
                           % (gw.returncode, tail("gateway")))
    t0 = time.time()
    gw.send_signal(signal.SIGTERM)
    try:
        gw.wait(15)
    except subprocess.TimeoutExpired:
        gw.kill()
        gw.wait()
    stop_info = (gw.returncode, time.time() - t0)
    report(rows, h[0], pg, pgn, sse, settings, time.time() - t_start, stop_info)
    if stop_info[0] != 0:
        log("gateway log tail:\n" + tail("gateway"))


def cleanup():
    while procs:
        p, _ = procs.pop()
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if started["broker"]:
        try:
            purge_sink()
        except Exception:
            pass
        subprocess.run([BROKER_SH, "stop", broker_dir], stdout=subprocess.DEVNULL)
    if started["pg"]:
        subprocess.run([POSTGRES_SH, "stop", pg_dir], stdout=subprocess.DEVNULL)
    keep = os.path.join(BUILD, "bench", "gateway-logs")
    shutil.rmtree(keep, ignore_errors=True)
    os.makedirs(keep, exist_ok=True)
    for f in os.listdir(workdir):
        if f.endswith(".log"):
            shutil.copy(os.path.join(workdir, f), keep)
    if os.path.exists(os.path.join(pg_dir, "postgres.log")):
        shutil.copy(os.path.join(pg_dir, "postgres.log"), keep)
    shutil.rmtree(workdir, ignore_errors=True)


def on_signal(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    LOAD0 = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    rc = 0
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except Exception as e:  # report, then tear down
        log("FAILED: %s" % e)
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup()
    sys.exit(rc)
