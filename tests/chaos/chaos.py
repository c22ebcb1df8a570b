#!/usr/bin/env python3
"""Chaos test: thousands of envelopes through a two-actor pipeline while things die.

Started by tests/chaos/run.sh, which provides a private RabbitMQ node and exports:
  ASYA_CHAOS_AMQP_URL, ASYA_CHAOS_MGMT_URL   the broker
  ASYA_CHAOS_RUN_DIR                         logs, pids, results, summary
  ASYA_CHAOS_SOCK_DIR                        a short dir for the unix sockets
  ASYA_CHAOS_BROKER_DIR, ASYA_CHAOS_BROKER_SH   for stop_app / start_app
  ASYA_BUILD_DIR                             bin/asya-sidecar, bin/asya-runtime, lib/asya/

The pipeline: chaos-doubler (pipeline_doubler) -> chaos-sleeper (timeout_handler:
sleeps payload.sleep_seconds, 20 ms, and returns the payload, so its workers are
busy about half the time and a killed worker is often mid-request) ->
chaos-incrementer (pipeline_incrementer) -> happy-end; every actor is one
asya-runtime (several workers) and one asya-sidecar (ASYA_CONCURRENCY > 1).  A
publisher thread streams `--count` envelopes with unique ids and payload
{"value": v, "seq": i, "sleep_seconds": 0.02} at a steady rate over `--publish-seconds`, with publisher confirms (an unconfirmed publish is
retried, which may duplicate that id).  Meanwhile the main thread runs a seeded
random schedule of faults:

  sidecar   SIGKILL one actor's sidecar, restart it after a short pause
  worker    SIGKILL one runtime worker (a child of the supervisor); the runtime
            answers oom_error for the message it was running and replaces it
  runtime   SIGKILL one runtime supervisor and its workers, restart it
  broker    rabbitmqctl stop_app, pause, start_app

Then it waits until the pipeline is quiet (actor queues empty, no unacked
message, sidecars holding nothing, end queues no longer growing), reads every
message at happy-end and error-end, and accounts for every id:

  lost        ids found at neither end queue              -> must be 0
  duplicates  extra copies (at-least-once allows them)    -> printed
  error-end   by code, with ids; poison_message and oom_error are the expected
              consequences of the faults; any other code fails the test
  payloads    happy-end value must be input*2+5, operation "incremented", seq and
              sleep_seconds kept, route unchanged

It also fails on ids nobody published, on a process that exited without being
killed by the test, and on a pipeline that does not get quiet (a hang).
Exit status 0 when everything is accounted for, 1 otherwise.
"""

import argparse
import collections
import datetime
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import pika
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("ASYA_BUILD_DIR", os.path.join(ROOT, "build"))
SIDECAR_BIN = os.path.join(BUILD, "bin", "asya-sidecar")
RUNTIME_BIN = os.path.join(BUILD, "bin", "asya-runtime")
HANDLERS_SO = os.path.join(BUILD, "lib", "asya", "test_handlers.so")

AMQP_URL = os.environ.get("ASYA_CHAOS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5697/")
MGMT_URL = os.environ.get("ASYA_CHAOS_MGMT_URL", "http://127.0.0.1:15697").rstrip("/")
RUN_DIR = os.environ.get("ASYA_CHAOS_RUN_DIR") or os.path.join(BUILD, "test-runs", "chaos-manual")
SOCK_DIR = os.environ.get("ASYA_CHAOS_SOCK_DIR", "/tmp")
BROKER_DIR = os.environ.get("ASYA_CHAOS_BROKER_DIR", "")
BROKER_SH = os.environ.get("ASYA_CHAOS_BROKER_SH", os.path.join(ROOT, "tests", "lib", "broker.sh"))
EXCHANGE = "asya"
# The actors run through symlinks named chaos-sidecar / chaos-runtime in the run's
# socket dir: on a shared machine a stray `pkill asya-sidecar` from another job
# (seen while writing this test) must not hit this test's processes.  Any exit
# the test did not cause still fails the run.
SIDECAR_LINK = os.path.join(SOCK_DIR, "chaos-sidecar")
RUNTIME_LINK = os.path.join(SOCK_DIR, "chaos-runtime")
HAPPY, ERROR = "happy-end", "error-end"
ACCEPTED_ERRORS = {"poison_message", "oom_error"}

T0 = time.monotonic()


def utc() -> str:
    """Wall-clock time in the format of the asya logs, to correlate events."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


_print_lock = threading.Lock()
_events_file = None


def say(msg: str) -> None:
    line = f"{utc()} +{time.monotonic() - T0:7.2f}s {msg}"
    with _print_lock:
        try:
            print(line, flush=True)
        except (BrokenPipeError, OSError):  # the terminal's tee died with a Ctrl-C
            pass
        if _events_file:
            _events_file.write(line + "\n")
            _events_file.flush()


def record_pid(pid: int, name: str) -> None:
    with open(os.path.join(RUN_DIR, "pids"), "a") as f:
        f.write(f"{pid} {name}\n")


def children_of(pid: int) -> List[int]:
    """Pids whose parent is `pid` (scans /proc/*/stat)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces: fields after the last ')' are "state ppid ..."
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == pid:
            out.append(int(d))
    return out


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


def wait_gone(pids: List[int], timeout: float = 10.0) -> List[int]:
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if alive(p)]
        if left:
            time.sleep(0.02)
    return left


class TestFailure(Exception):
    pass


# ---- actors --------------------------------------------------------------------


class Proc:
    def __init__(self, name: str, argv: List[str], env: Dict[str, str], log_path: str):
        self.name = name
        self.logf = open(log_path, "ab")
        self.logf.write(f"==== chaos: {utc()} starting {name}\n".encode())
        self.logf.flush()
        self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.logf,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid
        self.expected_exit = False
        record_pid(self.pid, name)

    def kill(self, sig=signal.SIGKILL) -> None:
        self.expected_exit = True
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = 10.0) -> Optional[int]:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        self.logf.close()


class Actor:
    """One asya-runtime + asya-sidecar pair."""

    def __init__(self, name: str, handler: str, metrics_port: int, args):
        self.name = name
        self.handler = handler
        self.metrics_port = metrics_port
        self.args = args
        self.sock = os.path.join(SOCK_DIR, f"{name}.sock")
        self.ready_file = os.path.join(SOCK_DIR, f"{name}.ready")
        self.runtime: Optional[Proc] = None
        self.sidecar: Optional[Proc] = None
        self.runtime_starts = 0
        self.sidecar_starts = 0

    def base_env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYA_")}
        env["ASYA_SOCKET_PATH"] = self.sock
        env["ASYA_LOG_LEVEL"] = self.args.log_level
        return env

    def start_runtime(self) -> None:
        try:
            os.unlink(self.ready_file)
        except FileNotFoundError:
            pass
        env = self.base_env()
        env.update({
            "ASYA_HANDLER": f"{HANDLERS_SO}:{self.handler}",
            "ASYA_RUNTIME_WORKERS": str(self.args.workers),
            "ASYA_READY_FILE": self.ready_file,
        })
        self.runtime_starts += 1
        self.runtime = Proc(f"{self.name}-runtime", [RUNTIME_LINK], env,
                            os.path.join(RUN_DIR, f"{self.name}-runtime.log"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with open(self.ready_file) as f:
                    if f.read().strip() == str(self.runtime.pid):
                        return
            except FileNotFoundError:
                pass
            if self.runtime.popen.poll() is not None:
                break
            time.sleep(0.02)
        raise TestFailure(f"{self.name}: asya-runtime (pid {self.runtime.pid}) not ready within 20 s "
                          f"(exit status {self.runtime.popen.poll()})")

    def start_sidecar(self) -> None:
        env = self.base_env()
        env.update({
            "ASYA_ACTOR_NAME": self.name,
            "ASYA_RABBITMQ_URL": AMQP_URL,
            "ASYA_CONCURRENCY": str(self.args.concurrency),
            "ASYA_RUNTIME_TIMEOUT": "30s",
            "ASYA_QUEUE_RETRY_BACKOFF": "1s",
            "ASYA_QUEUE_RETRY_MAX_ATTEMPTS": "100",
            "ASYA_METRICS_ENABLED": "true",
            "ASYA_METRICS_ADDR": f"127.0.0.1:{self.metrics_port}",
        })
        self.sidecar_starts += 1
        self.sidecar = Proc(f"{self.name}-sidecar", [SIDECAR_LINK], env,
                            os.path.join(RUN_DIR, f"{self.name}-sidecar.log"))

    def workers(self) -> List[int]:
        return children_of(self.runtime.pid) if self.runtime else []

    def metrics(self) -> Dict[str, float]:
        r = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=3)
        r.raise_for_status()
        out = {}
        for line in r.text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            key, _, val = line.rpartition(" ")
            try:
                out[key] = float(val)
            except ValueError:
                pass
        return out

    def active_messages(self) -> Optional[float]:
        try:
            m = self.metrics()
        except Exception:  # noqa: BLE001 - sidecar restarting
            return None
        for k, v in m.items():
            if k.startswith("asya_actor_active_messages"):
                return v
        return None

    def stop(self) -> None:
        """Final teardown: SIGTERM, then SIGKILL whatever is left (and the workers)."""
        for p in (self.sidecar, self.runtime):
            if p is None:
                continue
            workers = children_of(p.pid) if p is self.runtime else []
            p.kill(signal.SIGTERM)
            if p.wait(5) is None:
                p.kill(signal.SIGKILL)
                p.wait(5)
            for w in wait_gone(workers, 3):
                try:
                    os.kill(w, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.close()


# ---- publisher -------------------------------------------------------------------


class Publisher(threading.Thread):
    """Streams the envelopes at a steady rate, with publisher confirms."""

    def __init__(self, ids: List[str], values: List[int], route: List[str], seconds: float,
                 sleep: float):
        super().__init__(name="publisher", daemon=True)
        self.ids, self.values, self.route, self.seconds = ids, values, route, seconds
        self.sleep = sleep
        self.sent = 0
        self.retried_ids: List[str] = []  # republished after an unconfirmed publish
        self.error: Optional[BaseException] = None
        self.stop_flag = threading.Event()
        self.finished_at: Optional[float] = None

    def _channel(self):
        params = pika.URLParameters(AMQP_URL)
        params.heartbeat = 0
        params.blocked_connection_timeout = 30
        params.socket_timeout = 5
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        ch.confirm_delivery()
        return conn, ch

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def _run(self) -> None:
        conn = ch = None
        start = time.monotonic()
        interval = self.seconds / max(1, len(self.ids))
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        outage_since = None
        for i, (mid, value) in enumerate(zip(self.ids, self.values)):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = json.dumps({"id": mid, "payload": {"value": value, "seq": i,
                                                      "sleep_seconds": self.sleep},
                               "route": {"actors": self.route, "current": 0}})
            tries = 0
            while True:
                if self.stop_flag.is_set():
                    return
                try:
                    if ch is None:
                        conn, ch = self._channel()
                        if outage_since is not None:
                            say(f"publisher: reconnected after {time.monotonic() - outage_since:.1f} s")
                            outage_since = None
                    ch.basic_publish(exchange=EXCHANGE, routing_key=self.route[0], body=body,
                                     properties=props, mandatory=True)
                    break
                except Exception as e:  # noqa: BLE001 - broker restarting: retry
                    if tries == 0:
                        # The broker may have stored it before the failure: a retry
                        # can duplicate this id.
                        self.retried_ids.append(mid)
                    tries += 1
                    if outage_since is None:
                        outage_since = time.monotonic()
                        say(f"publisher: publish of {mid} failed ({type(e).__name__}: {e}); retrying")
                    try:
                        if conn is not None and conn.is_open:
                            conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = ch = None
                    if time.monotonic() - outage_since > 120:
                        raise RuntimeError(f"publisher: broker unreachable for 120 s ({e})")
                    time.sleep(0.3)
            self.sent = i + 1
        self.finished_at = time.monotonic()
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass


# ---- broker helpers ----------------------------------------------------------------


class Amqp:
    """A blocking connection for passive declares and reading the end queues."""

    def __init__(self):
        self.conn = None
        self.ch = None

    def channel(self):
        if self.conn is None or self.conn.is_closed or self.ch is None or self.ch.is_closed:
            self.close()
            params = pika.URLParameters(AMQP_URL)
            params.heartbeat = 0
            params.socket_timeout = 5
            self.conn = pika.BlockingConnection(params)
            self.ch = self.conn.channel()
        return self.ch

    def close(self):
        try:
            if self.conn is not None and self.conn.is_open:
                self.conn.close()
        except Exception:  # noqa: BLE001
            pass
        self.conn = self.ch = None

    def declare(self, queue: str) -> None:
        ch = self.channel()
        ch.exchange_declare(exchange=EXCHANGE, exchange_type="topic", durable=True)
        ch.queue_declare(queue=queue, durable=True)
        ch.queue_bind(queue=queue, exchange=EXCHANGE, routing_key=queue)

    def counts(self, queue: str):
        ok = self.channel().queue_declare(queue=queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count

    def drain(self, queue: str, path: str) -> List[dict]:
        out = []
        ch = self.channel()
        with open(path, "w") as f:
            while True:
                method, _props, body = ch.basic_get(queue=queue, auto_ack=True)
                if method is None:
                    if self.counts(queue)[0] == 0:
                        break
                    continue
                text = body.decode("utf-8", "replace")
                f.write(text + "\n")
                try:
                    out.append(json.loads(text))
                except ValueError:
                    out.append({"__raw__": text})
        return out


def mgmt_queue(queue: str) -> dict:
    r = requests.get(f"{MGMT_URL}/api/queues/%2F/{queue}", auth=("guest", "guest"), timeout=5)
    r.raise_for_status()
    return r.json()


def broker_cmd(verb: str) -> None:
    t = time.monotonic()
    with open(os.path.join(RUN_DIR, "broker-ctl.log"), "ab") as log:
        rc = subprocess.call([BROKER_SH, verb, BROKER_DIR], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
    if rc != 0:
        raise TestFailure(f"broker.sh {verb} failed with status {rc}")
    say(f"broker: {verb} done in {time.monotonic() - t:.1f} s")


# ---- the test ----------------------------------------------------------------------


class Chaos:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.actors = [
            Actor("chaos-doubler", "pipeline_doubler", args.metrics_base, args),
            Actor("chaos-sleeper", "timeout_handler", args.metrics_base + 1, args),
            Actor("chaos-incrementer", "pipeline_incrementer", args.metrics_base + 2, args),
        ]
        self.route = [a.name for a in self.actors]
        self.anomalies: List[str] = []
        self.done_events = collections.Counter()
        self.killed_workers = 0

    # ---- supervision ----

    def check_processes(self) -> None:
        """A process that exits without being killed by the test is an anomaly:
        record it, with its log tail, and restart it so the run can finish."""
        for a in self.actors:
            for kind in ("runtime", "sidecar"):
                p = getattr(a, kind)
                if p is None or p.expected_exit:
                    continue
                rc = p.popen.poll()
                if rc is None:
                    continue
                msg = f"{a.name}: asya-{kind} (pid {p.pid}) exited by itself with status {rc}"
                say("ANOMALY " + msg)
                self.anomalies.append(msg)
                p.close()
                if kind == "runtime":
                    for w in a.workers():
                        os.kill(w, signal.SIGKILL)
                    a.start_runtime()
                else:
                    a.start_sidecar()

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.check_processes()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))

    # ---- faults ----

    def fault_sidecar(self, a: Actor) -> None:
        p = a.sidecar
        p.kill()
        p.wait()
        p.close()
        pause = self.rng.uniform(0.2, 2.0)
        say(f"FAULT sidecar: SIGKILL {a.name} sidecar pid {p.pid}; restart in {pause:.1f} s")
        self.sleep(pause)
        a.start_sidecar()
        say(f"      {a.name} sidecar restarted, pid {a.sidecar.pid}")

    def fault_worker(self, a: Actor) -> None:
        workers = sorted(a.workers())
        if not workers:
            say(f"FAULT worker: {a.name} runtime has no worker right now; skipped")
            return False
        w = self.rng.choice(workers)
        try:
            os.kill(w, signal.SIGKILL)
        except ProcessLookupError:
            say(f"FAULT worker: {a.name} worker {w} already gone; skipped")
            return False
        self.killed_workers += 1
        say(f"FAULT worker: SIGKILL {a.name} runtime worker pid {w} (supervisor {a.runtime.pid})")
        return True

    def fault_runtime(self, a: Actor) -> None:
        p = a.runtime
        workers = a.workers()
        p.kill()
        for w in workers:
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
        p.close()
        left = wait_gone(workers)
        pause = self.rng.uniform(0.5, 3.0)
        say(f"FAULT runtime: SIGKILL {a.name} runtime pid {p.pid} and workers {workers}"
            f"{' (still there: %s)' % left if left else ''}; restart in {pause:.1f} s")
        self.sleep(pause)
        a.start_runtime()
        say(f"      {a.name} runtime restarted, pid {a.runtime.pid}, workers {sorted(a.workers())}")

    def fault_broker(self) -> None:
        pause = self.rng.uniform(1.0, 3.0)
        say(f"FAULT broker: stop_app, start_app after {pause:.1f} s")
        broker_cmd("stop_app")
        self.sleep(pause)
        broker_cmd("start_app")

    def schedule(self, start: float, end: float):
        a = self.args
        n = len(self.actors)
        plan = []
        for _ in range(a.sidecar_kills):
            plan.append((self.rng.uniform(start, end), "sidecar", self.rng.randrange(n)))
        for _ in range(a.worker_kills):
            # The sleeper's workers are the ones most often busy: aim there half the time.
            idx = 1 if self.rng.random() < 0.5 else self.rng.randrange(n)
            plan.append((self.rng.uniform(start, end), "worker", idx))
        for _ in range(a.runtime_kills):
            plan.append((self.rng.uniform(start, end), "runtime", self.rng.randrange(n)))
        for _ in range(a.broker_restarts):
            plan.append((self.rng.uniform(start, end), "broker", 0))
        plan.sort()
        return plan

    # ---- quiet ----

    def quiet_state(self, amqp: Amqp, last_ends) -> (bool, str, tuple):
        parts = []
        ok = True
        for a in self.actors:
            ready, consumers = amqp.counts(a.name)
            info = mgmt_queue(a.name)
            unacked = info.get("messages_unacknowledged", -1)
            active = a.active_messages()
            parts.append(f"{a.name}: ready={ready} consumers={consumers} unacked={unacked} "
                         f"held={active}")
            if ready or consumers < 1 or unacked != 0 or active != 0:
                ok = False
        ends = (amqp.counts(HAPPY)[0], amqp.counts(ERROR)[0])
        parts.append(f"happy-end={ends[0]} error-end={ends[1]}")
        if ends != last_ends:
            ok = False
        return ok, "; ".join(parts), ends

    def wait_quiet(self, timeout: float) -> None:
        amqp = Amqp()
        deadline = time.monotonic() + timeout
        streak = 0
        last_ends = None
        last_report = 0.0
        state = ""
        while time.monotonic() < deadline:
            self.check_processes()
            try:
                ok, state, last_ends = self.quiet_state(amqp, last_ends)
            except Exception as e:  # noqa: BLE001 - broker still coming back
                ok, state = False, f"state unavailable: {type(e).__name__}: {e}"
                amqp.close()
            streak = streak + 1 if ok else 0
            if time.monotonic() - last_report > 5:
                say(f"draining: {state}")
                last_report = time.monotonic()
            if streak >= 4:
                say(f"pipeline quiet: {state}")
                amqp.close()
                return
            time.sleep(1.0)
        amqp.close()
        raise TestFailure(f"HANG: the pipeline did not get quiet within {timeout:.0f} s; last state: {state}")

    # ---- run ----

    def run(self) -> int:
        args = self.args
        try:
            head = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - not a git checkout
            head = "?"
        say(f"binaries: {SIDECAR_BIN}, {RUNTIME_BIN} (tree {head or '?'})")
        say(f"seed {args.seed}; {args.count} envelopes over {args.publish_seconds:.0f} s; "
            f"concurrency {args.concurrency}, {args.workers} workers per runtime; faults: "
            f"{args.sidecar_kills} sidecar kills, {args.worker_kills} worker kills, "
            f"{args.runtime_kills} runtime kills, {args.broker_restarts} broker restarts")
        for link, target in ((SIDECAR_LINK, SIDECAR_BIN), (RUNTIME_LINK, RUNTIME_BIN)):
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(target, link)
        amqp = Amqp()
        for q in self.route + [HAPPY, ERROR]:
            amqp.declare(q)
            if amqp.counts(q)[0]:
                raise TestFailure(f"queue {q} is not empty at start")
        amqp.close()
        for a in self.actors:
            a.start_runtime()
            a.start_sidecar()
        amqp = Amqp()
        deadline = time.monotonic() + 20
        while any(amqp.counts(q)[1] < 1 for q in self.route):
            if time.monotonic() > deadline:
                raise TestFailure("sidecars did not start consuming within 20 s")
            self.check_processes()
            time.sleep(0.1)
        amqp.close()
        say("pipeline up: " + ", ".join(f"{a.name} runtime {a.runtime.pid} workers "
                                         f"{sorted(a.workers())} sidecar {a.sidecar.pid}"
                                         for a in self.actors))

        tag = f"chaos-{args.seed}"
        ids = [f"{tag}-{i:05d}" for i in range(args.count)]
        values = [self.rng.randint(-1_000_000, 1_000_000) for _ in ids]
        expected = dict(zip(ids, values))
        with open(os.path.join(RUN_DIR, "published.json"), "w") as f:
            json.dump(expected, f)

        pub = Publisher(ids, values, self.route, args.publish_seconds, args.handler_sleep)
        t_start = time.monotonic()
        pub.start()
        plan = self.schedule(2.0, args.publish_seconds + 3.0)
        for at, kind, idx in plan:
            self.sleep(t_start + at - time.monotonic())
            if pub.error:
                break
            a = self.actors[idx]
            if kind == "sidecar":
                self.fault_sidecar(a)
            elif kind == "worker":
                if not self.fault_worker(a):
                    continue
            elif kind == "runtime":
                self.fault_runtime(a)
            else:
                self.fault_broker()
            self.done_events[kind] += 1
        while pub.is_alive():
            self.sleep(0.2)
            if time.monotonic() - t_start > args.publish_seconds + 150:
                pub.stop_flag.set()
                raise TestFailure(f"publisher stuck after {pub.sent}/{args.count} envelopes")
        if pub.error:
            raise TestFailure(f"publisher failed after {pub.sent}/{args.count} envelopes: {pub.error}")
        say(f"published {pub.sent} envelopes in {pub.finished_at - t_start:.1f} s "
            f"({len(pub.retried_ids)} re-published after an unconfirmed publish); "
            f"faults done: {dict(self.done_events)}")

        self.wait_quiet(args.quiet_timeout)
        t_quiet = time.monotonic()

        amqp = Amqp()
        happy = amqp.drain(HAPPY, os.path.join(RUN_DIR, "happy-end.jsonl"))
        errors = amqp.drain(ERROR, os.path.join(RUN_DIR, "error-end.jsonl"))
        amqp.close()
        return self.account(expected, happy, errors, pub, t_start, t_quiet)

    # ---- accounting ----

    def account(self, expected, happy, errors, pub, t_start, t_quiet) -> int:
        failures: List[str] = []
        seen = collections.Counter()
        happy_ids = collections.Counter()
        error_ids = collections.Counter()
        unknown = []
        wrong = []
        by_code: Dict[str, List[str]] = collections.defaultdict(list)
        for m in happy:
            mid = m.get("id") if isinstance(m, dict) else None
            if mid not in expected:
                unknown.append(("happy-end", m))
                continue
            happy_ids[mid] += 1
            seen[mid] += 1
            p = m.get("payload")
            want = expected[mid] * 2 + 5
            seq = int(mid.rsplit("-", 1)[1])
            if (not isinstance(p, dict) or p.get("value") != want or p.get("operation") != "incremented"
                    or p.get("seq") != seq or p.get("sleep_seconds") != self.args.handler_sleep
                    or (m.get("route") or {}).get("actors") != self.route):
                wrong.append((mid, expected[mid], m))
        for m in errors:
            mid = m.get("id") if isinstance(m, dict) else None
            if mid not in expected:
                unknown.append(("error-end", m))
                continue
            error_ids[mid] += 1
            seen[mid] += 1
            code = m.get("error") or (m.get("payload") or {}).get("error") or "?"
            actor = ((m.get("payload") or {}).get("details") or {}).get("actor", "?")
            by_code[code].append(f"{mid}@{actor}")

        lost = sorted(set(expected) - set(seen))
        dup_copies = sum(n - 1 for n in seen.values() if n > 1)
        dup_ids = sorted(i for i, n in seen.items() if n > 1)
        both = sorted(set(happy_ids) & set(error_ids))
        retried_dups = [i for i in dup_ids if i in set(pub.retried_ids)]

        say("==== accounting")
        say(f"published {len(expected)} ids; happy-end {len(happy)} messages ({len(happy_ids)} ids), "
            f"error-end {len(errors)} messages ({len(error_ids)} ids)")
        say(f"lost: {len(lost)}")
        say(f"duplicates: {dup_copies} extra copies of {len(dup_ids)} ids "
            f"({len(retried_dups)} of them re-published by the test's publisher; "
            f"{len(both)} ids at both happy-end and error-end)")
        for code in sorted(by_code):
            tag = "accepted" if code in ACCEPTED_ERRORS else "UNEXPECTED"
            say(f"error-end {code}: {len(by_code[code])} ({tag}): {' '.join(sorted(by_code[code]))}")
        if not by_code:
            say("error-end: none")
        say(f"faults: {dict(self.done_events)} ({self.killed_workers} workers killed); "
            f"sidecar starts {[a.sidecar_starts for a in self.actors]}, "
            f"runtime starts {[a.runtime_starts for a in self.actors]}")
        say(f"durations: stream+faults {t_quiet - t_start:.1f} s until quiet")

        if lost:
            failures.append(f"{len(lost)} ids lost: {' '.join(lost[:50])}{' ...' if len(lost) > 50 else ''}")
            self.forensics(lost)
        if wrong:
            failures.append(f"{len(wrong)} happy-end messages with a wrong payload")
            for mid, v, m in wrong[:20]:
                say(f"  wrong payload for {mid} (input value {v}, want {v * 2 + 5}): {json.dumps(m)[:400]}")
        for code in by_code:
            if code not in ACCEPTED_ERRORS:
                failures.append(f"{len(by_code[code])} error-end messages with unexpected code {code}")
        if unknown:
            failures.append(f"{len(unknown)} messages with ids nobody published")
            for where, m in unknown[:10]:
                say(f"  unknown at {where}: {json.dumps(m)[:400]}")
        for a in self.anomalies:
            failures.append(a)

        summary = {
            "seed": self.args.seed, "published": len(expected), "lost": len(lost),
            "lost_ids": lost, "duplicate_copies": dup_copies, "duplicate_ids": len(dup_ids),
            "publisher_retried_ids": pub.retried_ids, "happy_end_messages": len(happy),
            "error_end_messages": len(errors),
            "error_end_by_code": {k: sorted(v) for k, v in by_code.items()},
            "wrong_payloads": len(wrong), "unknown": len(unknown), "anomalies": self.anomalies,
            "faults": dict(self.done_events), "workers_killed": self.killed_workers,
            "seconds_until_quiet": round(t_quiet - t_start, 1), "failures": failures,
        }
        with open(os.path.join(RUN_DIR, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        if failures:
            for fl in failures:
                say("FAIL: " + fl)
            return 1
        say("PASS: every id accounted for")
        return 0

    def forensics(self, lost: List[str]) -> None:
        """Print what the logs say about the first lost ids."""
        logs = [os.path.join(RUN_DIR, f) for f in sorted(os.listdir(RUN_DIR)) if f.endswith(".log")]
        for mid in lost[:5]:
            say(f"---- log lines for lost id {mid}")
            pat = re.compile(r"\b" + re.escape(mid) + r"\b")
            for path in logs:
                try:
                    with open(path, errors="replace") as f:
                        for line in f:
                            if pat.search(line):
                                say(f"  {os.path.basename(path)}: {line.rstrip()[:300]}")
                except OSError:
                    pass

    def teardown(self) -> None:
        for a in self.actors:
            try:
                a.stop()
            except Exception as e:  # noqa: BLE001 - best effort
                say(f"teardown of {a.name}: {e}")


def main() -> int:
    global _events_file
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="fault schedule seed (default: random)")
    ap.add_argument("--count", type=int, default=4000, help="envelopes to publish")
    ap.add_argument("--publish-seconds", type=float, default=60.0, help="length of the stream")
    ap.add_argument("--concurrency", type=int, default=4, help="ASYA_CONCURRENCY of the sidecars")
    ap.add_argument("--workers", type=int, default=3, help="ASYA_RUNTIME_WORKERS")
    ap.add_argument("--sidecar-kills", type=int, default=6)
    ap.add_argument("--worker-kills", type=int, default=12)
    ap.add_argument("--runtime-kills", type=int, default=4)
    ap.add_argument("--broker-restarts", type=int, default=3)
    ap.add_argument("--handler-sleep", type=float, default=0.02,
                    help="seconds the middle actor (timeout_handler) sleeps per message, so "
                    "killed workers are often busy")
    ap.add_argument("--quiet-timeout", type=float, default=120.0,
                    help="seconds to wait for the pipeline to drain after the stream")
    ap.add_argument("--metrics-base", type=int, default=19697, help="sidecar metrics ports base")
    ap.add_argument("--log-level", default="DEBUG", help="ASYA_LOG_LEVEL of the actors")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    os.makedirs(RUN_DIR, exist_ok=True)
    _events_file = open(os.path.join(RUN_DIR, "events.log"), "a")

    chaos = Chaos(args)
    stop = {"sig": None}

    def on_signal(signum, _frame):
        stop["sig"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    rc = 1
    try:
        rc = chaos.run()
    except TestFailure as e:
        say(f"FAIL: {e}")
        rc = 1
    except KeyboardInterrupt:
        say(f"interrupted ({'signal %d' % stop['sig'] if stop['sig'] else 'SIGINT'}); tearing down")
        rc = 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        chaos.teardown()
        say(f"total {time.monotonic() - T0:.1f} s; seed {args.seed}; "
            f"re-run this schedule with: make test-chaos CHAOS_ARGS='--seed {args.seed}'")
    return rc


if __name__ == "__main__":
    sys.exit(main())
