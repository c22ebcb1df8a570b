#!/usr/bin/python3
"""make bench: throughput and latency of asya-sidecar + asya-runtime against a
bare C relay, on a private RabbitMQ, printed as one table from one run.

Method (issue 7): N ~200-byte JSON envelopes, persistent, are preloaded into
the input queue with confirms (build/bench/asya-bench preload); then the
consumer (bare relay or actor) starts and `asya-bench drain` times from the
first message leaving the input queue until the sink queue holds all N
(passive queue.declare polled every 2 ms).  After every run: the sink holds
exactly N, the input queue is empty, and once the consumer has stopped it is
still empty (nothing was left unacked).  The first repeat of each row also
consumes the sink and checks every id arrived exactly once (and in order
where one in-flight slot makes order a promise).

Rows (BENCH_ROWS picks them; all of them by default):
  a  bare C relay: a0 no confirms, a0b acks per read burst, a1 confirms awaited
     every 100, a2 confirms pipelined
  b  echo actor, default settings          e  latency, one message in flight
  c  echo actor, BENCH_TUNED               f  VmRSS after (b, e) and (c)
  d  pipeline of 3 echo actors             g  reference Python runtime
  h  echo actor, every message a gateway job: no / slow / hung gateway
  Issue 16:
  s  payload sizes (BENCH_SIZES, default 1 KiB, 64 KiB, 1 MiB): the relay with
     pipelined confirms (as a2) and the echo actor with defaults and
     echo_bytes_handler (the payload's bytes back, unparsed), msg/s and MB/s
     side by side, their ratio, and the sidecar's peak RSS (VmHWM, read just
     before it is stopped); fewer messages for bigger sizes: N/4, N/20, N/100
     (20000 -> 5000 / 1000 / 200), at least 20
  p  pipeline of 10 echo actors (BENCH_PIPELINE10), N/4 messages, end to end
  o  fan-out: fanout_handler answering BENCH_FANOUT (100) results per input,
     defaults, N/40 inputs (at least 20); the sink must hold exactly 100 x that;
     input and output msg/s
  i  instructions per message under callgrind (repeatable where seconds are
     not): sidecar, runtime supervisor and its worker(s) (--trace-children=yes,
     one callgrind.out per pid), echo actor, defaults, ~200-byte messages; two
     runs of BENCH_INSTR_MESSAGES/10 and BENCH_INSTR_MESSAGES, per message =
     difference / difference, so start-up cancels out; skipped without valgrind;
     the callgrind outputs stay in <build>/bench/callgrind-*

Environment:
  BENCH_MESSAGES    messages per run (default 20000)
  BENCH_REPEATS     runs per row, the median is shown (default 3)
  BENCH_ROWS        rows to run, e.g. "a,b,c,d,e,g,h" (default: all,
                    "a,b,c,d,e,g,h,s,p,o,i"; g only with BENCH_PY_RUNTIME)
  BENCH_AMQP_PORT / BENCH_MGMT_PORT   private broker ports (default 5699 / 15699)
  BENCH_TUNED       tuned actor settings, e.g. "ASYA_CONCURRENCY=8 ASYA_RUNTIME_WORKERS=2"
  BENCH_PIPELINE    settings of the three pipeline actors (default ASYA_CONCURRENCY=4)
  BENCH_PIPELINE10  settings of the ten actors of row (p) (default BENCH_PIPELINE)
  BENCH_PIPELINE10_MESSAGES   messages per run of row (p) (default N/4, at least 100)
  BENCH_SIZES       payload sizes of rows (s) in bytes (default 1024,65536,1048576)
  BENCH_FANOUT      results per input in row (o) (default 100)
  BENCH_FANOUT_MESSAGES       inputs per run of row (o) (default N/40, at least 20)
  BENCH_INSTR_MESSAGES        messages of row (i)'s big run (default 2000, at least 20)
  BENCH_PY_RUNTIME  path to a reference asya_runtime.py for row (g)
  BENCH_PYTHON      interpreter for it (default /usr/bin/python3)
  BENCH_REPEAT_BUDGET  seconds after which later rows get one run (default 95)
  BENCH_DRAIN_TIMEOUT  seconds a drain may take before its partial rate is shown (default 30)
  BENCH_GW_SLOW_DELAY  answer delay of row (h)'s slow gateway (default 1.0)
  BENCH_SWEEP       "settings;settings;...": a tuning aid, prints rates, no table
  ASYA_BUILD_DIR    build directory (default build); process logs end up in <build>/bench/logs
"""
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("ASYA_BUILD_DIR", os.path.join(ROOT, "build")))
BENCH = os.path.join(BUILD, "bench", "asya-bench")
SIDECAR = os.path.join(BUILD, "bin", "asya-sidecar")
RUNTIME = os.path.join(BUILD, "bin", "asya-runtime")
HANDLERS_SO = os.path.join(BUILD, "lib", "asya", "test_handlers.so")
HANDLER = HANDLERS_SO + ":echo_handler"
# Row (s): the payload's bytes back unparsed, so the sizes measure the actor, not a
# handler parsing 1 MiB with jansson.
BYTES_HANDLER = HANDLERS_SO + ":echo_bytes_handler"
BROKER_SH = os.path.join(ROOT, "tests", "lib", "broker.sh")

N = int(os.environ.get("BENCH_MESSAGES", "20000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
DEFAULT_ROWS = "a,b,c,d,e,g,h,s,p,o,i"
ROWS = set(os.environ.get("BENCH_ROWS", DEFAULT_ROWS).split(","))
GW_DELAY = float(os.environ.get("BENCH_GW_SLOW_DELAY", "1.0"))
AMQP_PORT = int(os.environ.get("BENCH_AMQP_PORT", "5699"))
MGMT_PORT = int(os.environ.get("BENCH_MGMT_PORT", "15699"))
URL = "amqp://guest:guest@127.0.0.1:%d/" % AMQP_PORT
TUNED = os.environ.get("BENCH_TUNED", "ASYA_CONCURRENCY=2")
PIPELINE = os.environ.get("BENCH_PIPELINE", "ASYA_CONCURRENCY=4")
PIPELINE10 = os.environ.get("BENCH_PIPELINE10", PIPELINE)
PY_RUNTIME = os.environ.get("BENCH_PY_RUNTIME", "")
# Rows (s): payload sizes in bytes; messages per size scale down from N so each
# run moves a few tens of MB at most (20000 -> 5000 / 1000 / 200).
SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "1024,65536,1048576").split(",") if x]
SIZE_DIV = {1024: 4, 65536: 20, 1048576: 100}
PIPE10_N = int(os.environ.get("BENCH_PIPELINE10_MESSAGES", str(max(100, N // 4))))
FANOUT = int(os.environ.get("BENCH_FANOUT", "100"))
FANOUT_N = int(os.environ.get("BENCH_FANOUT_MESSAGES", str(max(20, N // 40))))
INSTR_N = max(20, int(os.environ.get("BENCH_INSTR_MESSAGES", "2000")))
PYTHON = os.environ.get("BENCH_PYTHON", "/usr/bin/python3")
LAT_COUNT = 2000
REPEAT_BUDGET = float(os.environ.get("BENCH_REPEAT_BUDGET", "95"))
T_START = time.time()
DRAIN_TIMEOUT = int(os.environ.get("BENCH_DRAIN_TIMEOUT", "30"))

# Issue 7's reference figures (msg/s) and targets.
REF_DESIGN = 2600
CELERY = 2500

procs = []  # every process we started: (Popen, name)
workdir = tempfile.mkdtemp(prefix="asya-bench-")
os.chmod(workdir, 0o755)  # the broker runs as the rabbitmq user
broker_dir = os.path.join(workdir, "broker")
broker_started = False
notes = []


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def parse_settings(text):
    env = {}
    for item in text.split():
        k, _, v = item.partition("=")
        env[k] = v
    return env


def bench(*args, check=True):
    r = subprocess.run([BENCH] + [str(a) for a in args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("asya-bench %s failed: %s%s" % (args[0], r.stdout, r.stderr))
    return r


def count(queue):
    return int(bench("count", URL, queue).stdout.split()[0])


def start(cmd, name, env=None):
    out = open(os.path.join(workdir, name + ".log"), "ab")
    p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    procs.append((p, name))
    return p


def stop(p, timeout=15):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for i, (q, _) in enumerate(procs):
        if q is p:
            del procs[i]
            break


def tail(name, n=20):
    try:
        with open(os.path.join(workdir, name + ".log"), "rb") as f:
            return b"".join(f.readlines()[-n:]).decode(errors="replace")
    except OSError:
        return ""


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def hwm_kib(pid):
    """VmHWM: the process's peak resident set so far."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def size_n(size):
    """Messages per run for payload size `size`."""
    div = SIZE_DIV.get(size) or max(1, size * N // (20000 * 1024 * 4) or 1)
    return max(20, N // div)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


# ---- actors ------------------------------------------------------------------

class Actor:
    """One asya-runtime (C, or a reference Python one) + asya-sidecar pair."""
    seq = 0

    def __init__(self, name, settings, py_runtime=None, handler=HANDLER, wrap_runtime=(),
                 wrap_sidecar=()):
        Actor.seq += 1
        self.name = name
        self.settings = settings
        self.wrap_sidecar = list(wrap_sidecar)
        self.hwm = None  # the sidecar's largest VmHWM, read just before each stop
        self.tag = "%s-%d" % (name, Actor.seq)
        self.sock = os.path.join(workdir, self.tag + ".sock")
        ready = os.path.join(workdir, self.tag + ".ready")
        env = dict(os.environ, ASYA_SOCKET_PATH=self.sock, ASYA_LOG_LEVEL="WARNING")
        env.update({k: v for k, v in settings.items() if k == "ASYA_RUNTIME_WORKERS"})
        if py_runtime:
            env.update(ASYA_HANDLER="bench_py_handler.echo", ASYA_SOCKET_CHMOD="666",
                       PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
            self.runtime = start([PYTHON, py_runtime], self.tag + "-runtime", env)
            wait_for = self.sock
        else:
            env.update(ASYA_HANDLER=handler, ASYA_READY_FILE=ready)
            self.runtime = start(list(wrap_runtime) + [RUNTIME], self.tag + "-runtime", env)
            wait_for = ready
        deadline = time.time() + (120 if wrap_runtime else 20)
        while not os.path.exists(wait_for):
            if self.runtime.poll() is not None or time.time() > deadline:
                raise RuntimeError("runtime %s did not start:\n%s"
                                   % (self.tag, tail(self.tag + "-runtime")))
            time.sleep(0.02)
        self.sidecar = None

    def start_sidecar(self):
        env = dict(os.environ, ASYA_ACTOR_NAME=self.name, ASYA_RABBITMQ_URL=URL,
                   ASYA_SOCKET_PATH=self.sock, ASYA_METRICS_ENABLED="false",
                   ASYA_LOG_LEVEL="WARNING")
        env.update({k: v for k, v in self.settings.items() if k != "ASYA_RUNTIME_WORKERS"})
        self.sidecar = start(self.wrap_sidecar + [SIDECAR], self.tag + "-sidecar", env)

    def stop_sidecar(self):
        self.check_alive()
        if self.sidecar:
            h = hwm_kib(self.sidecar.pid)
            if h is not None and (self.hwm is None or h > self.hwm):
                self.hwm = h
            stop(self.sidecar, 120 if self.wrap_sidecar else 15)
            rc = self.sidecar.returncode
            self.sidecar = None
            if rc != 0:
                raise RuntimeError("sidecar %s exited %s:\n%s"
                                   % (self.tag, rc, tail(self.tag + "-sidecar")))

    def check_alive(self):
        for p, what in ((self.runtime, "runtime"), (self.sidecar, "sidecar")):
            if p is not None and p.poll() is not None:
                raise RuntimeError("%s %s exited with %s while the bench ran (a negative value is"
                                   " a signal: something outside the bench killed it?)\n%s"
                                   % (what, self.tag, p.returncode,
                                      tail(self.tag + "-" + what)))

    def rss(self):
        sup = rss_kib(self.runtime.pid)
        kids = children(self.runtime.pid)
        worker = rss_kib(kids[0]) if kids else None
        side = rss_kib(self.sidecar.pid) if self.sidecar else None
        return side, sup, worker

    def close(self):
        self.stop_sidecar()
        stop(self.runtime, 120 if self.wrap_sidecar else 15)


# ---- one timed drain ------------------------------------------------------------

def timed_drain(in_queue, sink, actors, start_consumers, stop_consumers, verify_order=None,
                n=None, size=200, copies=1, timeout=None):
    """Preload n (default N) envelopes of ~size bytes into in_queue, start the
    consumers, time until sink holds n * copies (copies: results per input).
    Returns input msg/s.  verify_order: None = no id check, False = ids only,
    True = ids and order."""
    n_in = N if n is None else n
    total = n_in * copies  # expected in the sink
    bench("declare", URL, in_queue, sink)
    bench("preload", URL, in_queue, n_in, actors, size)
    drain = subprocess.Popen([BENCH, "drain", URL, in_queue, sink, str(total),
                              str(timeout or DRAIN_TIMEOUT)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append((drain, "drain"))
    time.sleep(0.05)  # its first poll sees the full queue
    start_consumers()
    out, err = drain.communicate()
    procs.remove((drain, "drain"))
    if drain.returncode != 0:
        raise RuntimeError("drain %s -> %s: %s%s" % (in_queue, sink, out, err))
    fields = out.split()
    secs, got = float(fields[0]), int(fields[1])
    if len(fields) > 2:  # timed out: stop, then check that sink + input still hold total
        stop_consumers(force=True)
        left_after = count(in_queue)
        in_sink = count(sink)
        if in_sink + left_after * copies != total:
            raise RuntimeError("lost or duplicated after a timeout: sink %d + input %d != %d"
                               % (in_sink, left_after, total))
        notes.append("%s -> %s: only %d of %d in %.0f s (DRAIN_TIMEOUT); rate from those; "
                     "sink %d + input %d after stop = %d" % (in_queue, sink, got, total, secs,
                                                            in_sink, left_after, total))
        bench("declare", URL, in_queue, sink)  # purge for the next run
        return got / copies / secs
    left_running = count(in_queue)
    stop_consumers(force=False)
    left_after = count(in_queue)
    in_sink = count(sink)
    if got != total or left_running != 0 or left_after != 0 or in_sink != total:
        raise RuntimeError("lost or duplicated: sink %s (then %d) of %d; input %d while running,"
                           " %d after stop" % (got, in_sink, total, left_running, left_after))
    if verify_order is not None:
        r = bench("verify", URL, sink, n_in, 0, copies, check=False)
        if r.returncode != 0:
            raise RuntimeError("verify %s: %s%s" % (sink, r.stdout, r.stderr))
        if verify_order:
            ORDER.append((LABEL[0], "reordered=0" in r.stdout))
        checks.append("%-10s %s -> %s: %s%s%s" % (
            LABEL[0], in_queue, sink, r.stdout.strip(),
            " (order checked)" if verify_order else "",
            " (each id %d times)" % copies if copies > 1 else ""))
    return n_in / secs


checks = []
HWM_B = [None]  # the (b) sidecar's VmHWM (KiB), for the ~200 B line of (s)
ORDER = []  # (row, in order?) for rows with one in-flight slot
LABEL = ["?"]  # row being run, for the id checks


def repeat(fn):
    """Up to REPEATS runs; once the bench has used REPEAT_BUDGET seconds, later
    rows get fewer (at least one), so `make bench` stays under a few minutes.  The
    table shows each row's runs."""
    rates = []
    for i in range(REPEATS):
        last = i == REPEATS - 1 or time.time() - T_START > REPEAT_BUDGET
        rates.append(fn(i, last))
        if last:
            break
    return statistics.median(rates), rates


def row_relay(mode, n=None, size=200, ordered=True, timeout=None):
    n = N if n is None else n

    def once(i, last):
        p = []

        def go():
            p.append(start([BENCH, "relay", URL, "relay-in", "relay-out", str(n), mode, "100"],
                           "relay-" + mode))

        def done(force):
            if force:
                stop(p[0])
                return
            p[0].wait(30)
            procs.remove((p[0], "relay-" + mode))
            if p[0].returncode != 0:
                raise RuntimeError("relay failed:\n" + tail("relay-" + mode))
        return timed_drain("relay-in", "relay-out", "relay-in", go, done,
                           ordered if i == 0 else None, n=n, size=size, timeout=timeout)
    return repeat(once)


def row_actor(name, settings, keep=False, py_runtime=None, ordered=None, n=None, size=200,
              handler=HANDLER, copies=1, hwm=None, timeout=None):
    """hwm: a list that gets the sidecar's peak VmHWM over the runs (KiB)."""
    actor = Actor(name, settings, py_runtime, handler=handler)
    try:
        def once(i, last):
            return timed_drain(name, "happy-end", name, actor.start_sidecar,
                               lambda force: None if keep and last and not force
                               else actor.stop_sidecar(),
                               ordered if i == 0 else None, n=n, size=size, copies=copies,
                               timeout=timeout)
        med, rates = repeat(once)
    except BaseException:
        actor.close()
        raise
    if keep:
        return med, rates, actor
    actor.close()
    if hwm is not None:
        hwm.append(actor.hwm)
    return med, rates, None


def row_pipeline(settings, k=3, n=None):
    names = ["bench-p%d" % (j + 1) for j in range(k)]
    actors = []
    try:
        for name in names:
            actors.append(Actor(name, settings))
    except BaseException:
        for a in actors:
            a.close()
        raise
    try:
        bench("declare", URL, *names)

        def go():
            for a in actors:
                a.start_sidecar()

        def done(force):
            for a in actors:
                a.stop_sidecar()
        ordered = settings.get("ASYA_CONCURRENCY", "1") == "1"
        med, rates = repeat(lambda i, last: timed_drain(names[0], "happy-end", ",".join(names), go,
                                                        done, ordered if i == 0 else None, n=n))
        for n in names[1:]:
            if count(n) != 0:
                raise RuntimeError("pipeline queue %s not empty" % n)
        return med, rates
    finally:
        for a in actors:
            a.close()


# ---- rows (s), (o), (i) ------------------------------------------------------------

def fmt_size(size):
    if size % 1048576 == 0:
        return "%d MiB" % (size // 1048576)
    if size % 1024 == 0:
        return "%d KiB" % (size // 1024)
    return "%d B" % size


def rows_sizes():
    """(s) for each payload size: the bare relay with pipelined confirms, then the
    echo actor with defaults and its sidecar's peak RSS.  Returns
    {size: (n, relay (med, rates), actor (med, rates), hwm KiB)}."""
    out = {}
    for size in SIZES:
        n = size_n(size)
        log("row (s) %s x %d: relay pipe" % (fmt_size(size), n))
        LABEL[0] = "(s) %s" % fmt_size(size)
        # 1 MiB through one actor runs at ~15-20 msg/s on 2 cores: more time than
        # DRAIN_TIMEOUT under load.
        tmo = max(DRAIN_TIMEOUT, 90)
        relay = row_relay("pipe", n=n, size=size, ordered=False, timeout=tmo)
        log("row (s) %s x %d: echo actor, defaults" % (fmt_size(size), n))
        hwm = []
        med, rates, _ = row_actor("bench-echo", {}, ordered=False, n=n, size=size, hwm=hwm,
                                  timeout=tmo, handler=BYTES_HANDLER)
        out[size] = (n, relay, (med, rates), hwm[0])
    return out


def row_fanout():
    """(o) fanout_handler answering FANOUT results per input, defaults, into
    happy-end.  Returns (input msg/s median, rates)."""
    os.environ["BENCH_PAYLOAD_COUNT"] = str(FANOUT)  # read by asya-bench preload
    try:
        med, rates, _ = row_actor("bench-fanout", {}, ordered=False, n=FANOUT_N,
                                  handler=HANDLERS_SO + ":fanout_handler", copies=FANOUT)
    finally:
        del os.environ["BENCH_PAYLOAD_COUNT"]
    return med, rates


def callgrind_total(path):
    """A callgrind.out's total Ir (its "totals:" or "summary:" line)."""
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    return None


def instr_once(n, tag):
    """One callgrind run of n messages: total Ir of (sidecar, supervisor, workers),
    number of worker processes."""
    cg = os.path.join(workdir, "callgrind-" + tag)
    os.makedirs(cg, exist_ok=True)
    vg = ["valgrind", "--tool=callgrind", "--quiet"]
    actor = Actor("bench-echo", {},
                  wrap_runtime=vg + ["--trace-children=yes",
                                     "--callgrind-out-file=%s/runtime.%%p" % cg],
                  wrap_sidecar=vg + ["--callgrind-out-file=%s/sidecar.%%p" % cg])
    try:
        timed_drain("bench-echo", "happy-end", "bench-echo", actor.start_sidecar,
                    lambda force: actor.stop_sidecar(), False if tag == "main" else None,
                    n=n, timeout=600)
        sup_pid = actor.runtime.pid
    finally:
        actor.close()
    side = sup = work = workers = 0
    for f in os.listdir(cg):
        total = callgrind_total(os.path.join(cg, f))
        if total is None:
            raise RuntimeError("row (i): no totals in %s (did it exit cleanly?)" % f)
        if f.startswith("sidecar."):
            side += total
        elif f == "runtime.%d" % sup_pid:
            sup += total
        else:
            work += total
            workers += 1
    if not side or not sup or not workers:
        raise RuntimeError("row (i): callgrind outputs missing: %s" % sorted(os.listdir(cg)))
    keep = os.path.join(BUILD, "bench", "callgrind-" + tag)
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(cg, keep)
    return (side, sup, work), workers


def row_instr():
    """(i) callgrind, echo actor with defaults, ~200-byte messages: total
    instructions (Ir) of the sidecar, of the runtime supervisor and of its
    worker(s) (the supervisor re-executes itself with --worker, followed with
    --trace-children=yes; one callgrind.out per pid, kept in <build>/bench/).
    Two runs, INSTR_N/10 and INSTR_N messages: per message is the difference
    divided by the difference in messages, so start-up and shutdown cancel out;
    total / INSTR_N of the big run is shown too.  Returns
    {"marginal": (s, sup, w), "total": (s, sup, w), "workers": k, "secs": t}."""
    t0 = time.time()
    small = max(1, INSTR_N // 10)
    lo, _ = instr_once(small, "small")
    hi, workers = instr_once(INSTR_N, "main")
    return {"marginal": tuple((h - l_) / (INSTR_N - small) for h, l_ in zip(hi, lo)),
            "total": tuple(h / INSTR_N for h in hi), "workers": workers,
            "secs": time.time() - t0}


# ---- gateways for rows (h) ---------------------------------------------------------

def hanging_gateway():
    """A port that takes connections into its backlog and never answers: every
    report waits for the sidecar's 5 s timeout.  Costs no CPU."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s, "http://127.0.0.1:%d" % s.getsockname()[1]


def slow_gateway(delay):
    """An asyncio server in a thread of the bench answering every request with 200
    after `delay` s; keep-alive, as a real gateway.  A few hundred requests/s at
    most get through the sidecar's 64 in flight, so its CPU stays small."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box = {}

    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def run():
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0,
                                                              backlog=1024))
        box["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return loop, "http://127.0.0.1:%d" % box["port"]


def rows_gateway(rows):
    """(h) the echo actor, defaults, every message its own job: without a gateway,
    with one answering after GW_DELAY s, with one that never answers.  The message
    path must not notice (issue 15): reports beyond 64 in flight + 1024 queued
    per sidecar are dropped and counted."""
    os.environ["BENCH_JOB_IDS"] = "1"  # read by asya-bench preload
    hang, hang_url = hanging_gateway()
    loop, slow_url = slow_gateway(GW_DELAY)
    try:
        for key, extra in (("h0", {}), ("h1", {"ASYA_GATEWAY_URL": slow_url}),
                           ("h2", {"ASYA_GATEWAY_URL": hang_url})):
            log("row (%s) echo actor, job ids, %s" % (key, extra or "no gateway"))
            LABEL[0] = "(%s)" % key
            med, rates, _ = row_actor("bench-echo", extra, ordered=False)
            rows[key] = (med, rates)
    finally:
        del os.environ["BENCH_JOB_IDS"]
        hang.close()
        loop.call_soon_threadsafe(loop.stop)


def latency(in_queue, out_queue, actors):
    bench("declare", URL, in_queue, out_queue)
    p50, p99, mean = bench("latency", URL, in_queue, out_queue, LAT_COUNT, actors).stdout.split()
    return int(p50), int(p99), int(mean)


# ---- report -----------------------------------------------------------------------

def fmt_settings(s):
    return " ".join("%s=%s" % kv for kv in sorted(s.items())) or "defaults"


def report(rows, lat, rss, elapsed, extra):
    base = rows.get("a0")
    base_rate = base[0] if base else None
    w = 78
    print()
    print("=" * w)
    print("asya bench: %d x ~200-byte persistent JSON envelopes preloaded, then drained; "
          % N)
    print("median of up to %d runs per row (fewer once %.0f s are used; see 'runs');"
          " nproc=%d; load avg before start %.2f" % (REPEATS, REPEAT_BUDGET, os.cpu_count(), LOAD0))
    print("-" * w)
    print("%-52s %9s %7s" % ("row", "msg/s", "x (a0)"))
    labels = [
        ("a0", "(a) bare C relay, prefetch 100, no confirms"),
        ("a0b", "(a) same, acks batched per read burst"),
        ("a1", "(a) bare C relay, confirms awaited every 100"),
        ("a2", "(a) bare C relay, confirms pipelined"),
        ("b", "(b) echo actor, default settings"),
        ("c", "(c) echo actor, tuned"),
        ("d", "(d) pipeline echo->echo->echo, end to end"),
        ("p", "(p) pipeline of 10 echo actors, end to end"),
        ("g", "(g) echo actor, reference Python runtime"),
        ("h0", "(h) echo actor, every message a job, no gateway"),
        ("h1", "(h) same, gateway answering after %.1f s" % GW_DELAY),
        ("h2", "(h) same, gateway that never answers"),
    ]
    for key, label in labels:
        if key not in rows:
            if key == "g":
                print("%-52s %9s %7s  skipped: BENCH_PY_RUNTIME unset" % (label, "-", "-"))
            continue
        med, rates = rows[key]
        ratio = "%.2f" % (med / base_rate) if base_rate else "-"
        spread = "/".join("%.0f" % r for r in rates)
        print("%-52s %9.0f %7s  runs %s" % (label, med, ratio, spread))
    print("    (c) settings: %s" % fmt_settings(parse_settings(TUNED)))
    print("    (d) settings: %s (each actor)" % fmt_settings(parse_settings(PIPELINE)))
    if "p" in rows:
        print("    (p) settings: %s (each actor); %d messages per run"
              % (fmt_settings(parse_settings(PIPELINE10)), PIPE10_N))
    if "g" in rows:
        print("    (g) settings: defaults; runtime %s" % PY_RUNTIME)
    if lat:
        print("-" * w)
        hop, act = lat
        print("(e) latency, one message in flight       p50 us   p99 us  mean us")
        print("    one broker hop (publish -> consume)  %6d   %6d   %6d" % hop)
        print("    through one echo actor (defaults)    %6d   %6d   %6d" % act)
    if rss:
        print("-" * w)
        print("(f) VmRSS after the runs (KiB)           sidecar  runtime  worker")
        for label, (s, r, wk) in rss:
            print("    %-36s %7s  %7s  %6s" % (label, s, r, wk))
    sizes = extra.get("s")
    if sizes:
        print("-" * w)
        print("(s) payload sizes: bare relay, confirms pipelined (as a2) vs echo actor, defaults,")
        print("    echo_bytes_handler (payload bytes back, unparsed); fewer messages for bigger")
        print("    sizes; MB = 10^6 bytes of envelope; peak RSS = the sidecar's VmHWM just before")
        print("    it was stopped (KiB); ~200 B = rows a2, b (b: echo_handler)")
        print("    %-7s %6s %8s %7s %8s %7s %6s %8s" % ("size", "msgs", "relay/s", "MB/s",
                                                     "actor/s", "MB/s", "x rel", "HWM KiB"))
        lines = sorted(sizes.items())
        if "a2" in rows and "b" in rows:
            lines.insert(0, (200, (N, rows["a2"], rows["b"], HWM_B[0])))
        for size, (n, relay, actor, hwm) in lines:
            nbytes = size - 5  # asya-bench's envelope: size - 8 bytes up to the data, then "}}
            print("    %-7s %6d %8.0f %7.1f %8.0f %7.1f %6.2f %8s  runs %s | %s"
                  % ("~200 B" if size == 200 else fmt_size(size), n, relay[0], relay[0] * nbytes / 1e6, actor[0],
                     actor[0] * nbytes / 1e6, actor[0] / relay[0], hwm,
                     "/".join("%.0f" % r for r in relay[1]),
                     "/".join("%.0f" % r for r in actor[1])))
    fan = extra.get("o")
    if fan:
        print("-" * w)
        print("(o) fan-out: fanout_handler, %d results per input, defaults, into happy-end"
              % FANOUT)
        print("    %d inputs -> %d outputs per run: input %.1f msg/s, output %.0f msg/s  runs %s"
              % (FANOUT_N, FANOUT_N * FANOUT, fan[0], fan[0] * FANOUT,
                 "/".join("%.1f" % r for r in fan[1])))
    instr = extra.get("i")
    print("-" * w)
    if instr:
        print("(i) instructions per message, callgrind Ir, echo actor, defaults, ~200 B (%.0f s)"
              % instr["secs"])
        print("    %-40s %8s %10s %8s" % ("", "sidecar", "supervisor", "worker"))
        print("    %-40s %8.0f %10.0f %8.0f" % (
            "per message: (Ir(%d) - Ir(%d)) / %d" % (INSTR_N, max(1, INSTR_N // 10),
                                                     INSTR_N - max(1, INSTR_N // 10)),
            *instr["marginal"]))
        print("    %-40s %8.0f %10.0f %8.0f" % ("Ir(%d) / %d, start-up included"
                                              % (INSTR_N, INSTR_N), *instr["total"]))
        if instr["workers"] > 1:
            print("    (worker: %d worker processes summed)" % instr["workers"])
    elif "i" in ROWS:
        print("(i) instructions per message: skipped, valgrind not found")
    else:
        print("(i) instructions per message: not run (BENCH_ROWS without i)")
    print("-" * w)
    print("targets (issue 7; (h) issue 15; the last block issue 16)")

    def target(name, ok, detail):
        if ok is None:
            print("  %-44s %-5s %s" % (name, "n/a", detail))
        else:
            print("  %-44s %-5s %s" % (name, "PASS" if ok else "MISS", detail))
    c = rows.get("c", (None,))[0]
    b = rows.get("b", (None,))[0]
    if c and base_rate:
        target("(c) >= 0.7 x (a) no confirms", c >= 0.7 * base_rate,
               "%.0f vs %.0f" % (c, 0.7 * base_rate))
    if c:
        target("(c) >= 3 x reference design (2 600)", c >= 3 * REF_DESIGN,
               "%.0f vs %d" % (c, 3 * REF_DESIGN))
        target("(c) >= 3 x Celery (2 500)", c >= 3 * CELERY, "%.0f vs %d" % (c, 3 * CELERY))
    if b and base_rate:
        target("(b) >= 0.5 x (a) no confirms", b >= 0.5 * base_rate,
               "%.0f vs %.0f" % (b, 0.5 * base_rate))
    if lat:
        hop, act = lat
        target("(e) actor p50 <= 2 x one-hop p50", act[0] <= 2 * hop[0],
               "%d us vs %d us" % (act[0], 2 * hop[0]))
    h0, h1, h2 = (rows.get(k, (None,))[0] for k in ("h0", "h1", "h2"))
    if h0 and h1 and h2:
        worst = min(h1, h2)
        target("(h) slow/hung gateway >= 0.9 x (h0)", worst >= 0.9 * h0,
               "%.0f vs %.0f" % (worst, 0.9 * h0))
    for label, ok in ORDER:
        target("%s in order (one in-flight slot)" % label, ok, "see the id checks below")
    if rss:
        s, r, _ = rss[0][1]
        target("(f) sidecar RSS <= 8 MiB", s is not None and s <= 8192, "%s KiB" % s)
        target("(f) runtime supervisor RSS <= 4 MiB", r is not None and r <= 4096, "%s KiB" % r)
    # issue 16
    if instr:
        side, sup, _ = instr["marginal"]
        target("(i) sidecar <= 40 000 instructions/msg", side <= 40000, "%.0f" % side)
        target("(i) supervisor <= 5 000 instructions/msg", sup <= 5000, "%.0f" % sup)
    else:
        target("(i) sidecar / supervisor instructions/msg", None, "row (i) not run")
    a2 = rows.get("a2", (None,))[0]
    if b and a2:
        target("(b) >= 0.9 x (a2) relay, pipelined confirms", b >= 0.9 * a2,
               "%.0f vs %.0f" % (b, 0.9 * a2))
    d = rows.get("d", (None,))[0]
    if d and base_rate:
        target("(d) 3 actors >= 0.3 x (a0) no confirms", d >= 0.3 * base_rate,
               "%.0f vs %.0f" % (d, 0.3 * base_rate))
    if sizes and 1048576 in sizes:
        n, relay, actor, hwm = sizes[1048576]
        target("(s) 1 MiB: actor MB/s >= 0.8 x relay pipe", actor[0] >= 0.8 * relay[0],
               "%.1f vs %.1f MB/s" % (actor[0] * (1048576 - 5) / 1e6,
                                      0.8 * relay[0] * (1048576 - 5) / 1e6))
        target("(s) 1 MiB: sidecar peak RSS <= 64 MiB", hwm is not None and hwm <= 65536,
               "%s KiB" % hwm)
    print("-" * w)
    print("nothing lost: every run's sink held exactly its N (%d; (s), (p), (o): see above;" % N)
    print("(o): N x %d), its input queue was empty while the consumer ran and still empty"
          % FANOUT)
    print("after it stopped (0 unacked). id checks (first run of each row):")
    for c_ in checks:
        print("  " + c_)
    for n in notes:
        print("note: " + n)
    print("bench wall time %.0f s" % elapsed)
    print("=" * w)


def main():
    t_start = time.time()
    for f in (BENCH, SIDECAR, RUNTIME):
        if not os.path.exists(f):
            sys.exit("bench: %s missing (make all build/bench/asya-bench)" % f)
    log("private broker on 127.0.0.1:%d (mgmt %d) in %s" % (AMQP_PORT, MGMT_PORT, workdir))
    global broker_started
    broker_started = True
    subprocess.run([BROKER_SH, "start", broker_dir, str(AMQP_PORT), str(MGMT_PORT)], check=True)
    rows, rss, lat = {}, [], None
    if os.environ.get("BENCH_SWEEP"):  # tuning aid: "settings;settings;..." -> rates, no table
        for text in os.environ["BENCH_SWEEP"].split(";"):
            med, rates, _ = row_actor("bench-echo", parse_settings(text))
            print("sweep %-70s %6.0f  %s" % (text, med, rates), flush=True)
        return
    if "a" in ROWS:
        for key, mode in (("a0", "none"), ("a0b", "burst"), ("a1", "batch"), ("a2", "pipe")):
            log("row (a) relay %s" % mode)
            LABEL[0] = "(a) " + mode
            rows[key] = row_relay(mode)
    if "b" in ROWS or "e" in ROWS or "f" in ROWS:
        log("row (b) echo actor, defaults")
        LABEL[0] = "(b)"
        med, rates, actor = row_actor("bench-echo", {}, keep=True, ordered=True)
        rows["b"] = (med, rates)
        try:
            if not actor.sidecar:  # stopped after a timed-out run
                actor.start_sidecar()
            if "e" in ROWS:
                log("row (e) latency")
                hop = latency("bench-hop", "bench-hop", "bench-hop")
                actor.check_alive()
                act = latency("bench-echo", "happy-end", "bench-echo")
                actor.check_alive()
                lat = (hop, act)
            rss.append(("echo actor, defaults (b, e)", actor.rss()))
        finally:
            actor.close()
        HWM_B[0] = actor.hwm
    if "c" in ROWS:
        log("row (c) echo actor, tuned: %s" % TUNED)
        LABEL[0] = "(c)"
        med, rates, actor = row_actor("bench-echo", parse_settings(TUNED), keep=True,
                                      ordered=False)
        rows["c"] = (med, rates)
        rss.append(("echo actor, tuned (c)", actor.rss()))
        actor.close()
    if "d" in ROWS:
        log("row (d) pipeline: %s" % PIPELINE)
        LABEL[0] = "(d)"
        rows["d"] = row_pipeline(parse_settings(PIPELINE))
    if "g" in ROWS and PY_RUNTIME:
        log("row (g) reference Python runtime %s" % PY_RUNTIME)
        LABEL[0] = "(g)"
        med, rates, _ = row_actor("bench-echo", {}, py_runtime=PY_RUNTIME, ordered=True)
        rows["g"] = (med, rates)
    if "h" in ROWS:
        rows_gateway(rows)
    extra = {}
    if "s" in ROWS:
        extra["s"] = rows_sizes()
    if "p" in ROWS:
        log("row (p) pipeline of 10, %d messages: %s" % (PIPE10_N, PIPELINE10))
        LABEL[0] = "(p)"
        rows["p"] = row_pipeline(parse_settings(PIPELINE10), k=10, n=PIPE10_N)
    if "o" in ROWS:
        log("row (o) fan-out %d per message, %d inputs" % (FANOUT, FANOUT_N))
        LABEL[0] = "(o)"
        extra["o"] = row_fanout()
    if "i" in ROWS and shutil.which("valgrind"):
        log("row (i) callgrind, %d then %d messages" % (max(1, INSTR_N // 10), INSTR_N))
        LABEL[0] = "(i)"
        extra["i"] = row_instr()
    report(rows, lat, rss, time.time() - t_start, extra)


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
    if broker_started:
        subprocess.run([BROKER_SH, "stop", broker_dir], stdout=subprocess.DEVNULL)
    keep = os.path.join(BUILD, "bench", "logs")
    shutil.rmtree(keep, ignore_errors=True)
    os.makedirs(keep, exist_ok=True)
    for f in os.listdir(workdir):
        if f.endswith(".log"):
            shutil.copy(os.path.join(workdir, f), keep)
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
