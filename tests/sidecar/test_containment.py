"""One bad message harms only itself: a destination the broker refuses or that is
not a valid queue name, a result over ASYA_MAX_MESSAGE_BYTES, a 16 MiB malformed
body, a broker memory alarm (connection.blocked), a SIGTERM whose grace period runs
out and a runtime whose accept backlog is full each affect the message concerned,
never its neighbours, the broker connection or the sidecar's responsiveness.

Every test runs a stream of envelopes with unique ids through a real sidecar and
the private broker of run.sh, and counts: each id exactly once where it belongs,
none missing, none twice.  The slow tests come last; the memory-alarm test always
restores the broker's watermark (the broker is shared by the whole suite).
"""
import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pika
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from asya_testlib import Broker, mgmt_auth, mgmt_url
from conftest import (broker_rabbitmqctl, declare_queue, fake_runtime_opts, free_port, http_get,
                      wait_for)

NS = "asya_actor"


# ---- helpers ------------------------------------------------------------------------------


def scrape(port: int, timeout: float = 5.0):
    status, text = http_get(port, "/metrics", timeout=timeout)
    assert status == 200, (status, text[:200])
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((f"{NS}_{name}", tuple(sorted(labels.items()))), 0.0)


def metrics_env(port: int, extra=None):
    env = {"ASYA_METRICS_ENABLED": "true", "ASYA_METRICS_ADDR": f"127.0.0.1:{port}"}
    env.update(extra or {})
    return env


def exactly_once(got_ids, want_ids, where):
    """Assert that got_ids holds every id of want_ids exactly once and nothing else."""
    counts = Counter(got_ids)
    want = set(want_ids)
    dups = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(want - set(counts))
    extra = sorted(set(counts) - want)
    assert not (dups or missing or extra), (
        f"{where}: {len(dups)} duplicated (e.g. {dups[:3]}), {len(missing)} missing "
        f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")


def assert_no_trouble(m, q, reconnects=True):
    """The connection stayed up and nothing was redelivered or burnt as poison."""
    if reconnects:
        assert value(m, "broker_reconnects_total", queue=q) == 0, \
            "a bad message cost a broker reconnect"
    assert value(m, "messages_requeued_total", queue=q, reason="redelivered") == 0, \
        "messages came back redelivered (the connection or channel was lost)"
    assert value(m, "messages_failed_total", queue=q, reason="poison_message") == 0


def assert_routing_error(msg, sent, actor):
    """The error-end format of DESIGN.md for a result the broker would not take."""
    assert msg["error"] == "routing_error", msg["error"]
    assert msg["id"] == sent["id"]
    assert msg["route"] == sent["route"], "error-end keeps the original route"
    p = msg["payload"]
    assert p["error"] == "routing_error"
    assert p["original_payload"] == sent["payload"]
    assert p["details"]["actor"] == actor
    assert isinstance(p["details"]["message"], str) and p["details"]["message"]
    return p["details"]["message"]


def runtime_ids(rt):
    """Ids of the envelopes the runtime received (the sidecar's own stats requests
    carry none)."""
    return [r["id"] for r in rt.requests() if isinstance(r, dict) and "id" in r]


def broker_alarm() -> bool:
    """True while the broker has a resource alarm in effect (a live check, not the
    management API's periodic node statistics)."""
    r = requests.get(mgmt_url() + "/api/health/checks/alarms", auth=mgmt_auth(), timeout=5)
    if r.status_code == 200:
        return False
    assert r.status_code == 503, (r.status_code, r.text[:200])
    return True


# ---- a result over the size limit -----------------------------------------------------------


def test_result_over_max_message_bytes_is_a_routing_error_of_its_own(ctx):
    """A runtime answer that fits ASYA_MAX_MESSAGE_BYTES (64 KiB here) but whose result
    envelope, once the sidecar adds the envelope's other fields (a 40 KB unknown
    top-level field kept on every hop), exceeds it: that message alone goes to
    error-end as routing_error naming ASYA_MAX_MESSAGE_BYTES; a 30 KB result and the
    small neighbours at concurrency 4 reach happy-end exactly once; no reconnect."""
    port = free_port()
    rt = ctx.fake_runtime()
    sc = ctx.sidecar(metrics_env(port, {"ASYA_MAX_MESSAGE_BYTES": "65536",
                                        "ASYA_CONCURRENCY": "4"}))
    n = 30
    sent = []
    for i in range(n):
        if i == 10:  # request ~40 KB, answer ~40 KB, result envelope ~80 KB
            e = ctx.envelope({"op": "big", "bytes": 40000, "i": i}, id=f"{ctx.tag}-{i:03d}",
                             blob="B" * 40000)
        elif i == 20:  # request ~15 KB, answer ~15 KB, result ~30 KB: fits
            e = ctx.envelope({"op": "big", "bytes": 15000, "i": i}, id=f"{ctx.tag}-{i:03d}",
                             blob="b" * 15000)
        else:
            e = ctx.envelope({"op": "echo", "i": i}, id=f"{ctx.tag}-{i:03d}")
        sent.append(e)
        ctx.publish(e)
    over, fits = sent[10], sent[20]
    got = ctx.wait_ends(happy=n - 1, error=1, timeout=30, settle=1.0)

    assert [m.get("id") for m in got["error"]] == [over["id"]], \
        [(m.get("id"), m.get("error")) for m in got["error"]]
    text = assert_routing_error(got["error"][0], over, ctx.queue)
    assert "ASYA_MAX_MESSAGE_BYTES" in text, text
    assert len(json.dumps(got["error"][0])) < 65536, "the error envelope itself fits"

    exactly_once([m["id"] for m in got["happy"]], [e["id"] for e in sent if e is not over],
                 "happy-end")
    by_id = {m["id"]: m for m in got["happy"]}
    ok = by_id[fits["id"]]
    assert ok["payload"]["data"] == "X" * 15000 and ok["blob"] == "b" * 15000
    for e in sent:
        if e is not over and e is not fits:
            assert by_id[e["id"]]["payload"] == e["payload"]
            assert by_id[e["id"]]["route"]["current"] == 1
    exactly_once(runtime_ids(rt), [e["id"] for e in sent], "requests to the runtime")

    m = scrape(port)
    q = ctx.queue
    assert_no_trouble(m, q)
    assert (value(m, "messages_failed_total", queue=q, reason="routing_error")
            + value(m, "messages_failed_total", queue=q, reason="message_too_large")) == 1
    assert value(m, "messages_sent_total", destination_queue=ctx.happy,
                 message_type="happy_end") == n - 1
    assert value(m, "messages_sent_total", destination_queue=ctx.error,
                 message_type="error_end") == 1
    assert ctx.depth() == 0 and sc.alive()


# ---- a 16 MiB malformed body --------------------------------------------------------------


def test_huge_malformed_body_keeps_a_bounded_prefix(ctx):
    """A non-JSON body of 16 MiB + 1 byte (under the default 64 MiB limit): error-end
    gets msg_parsing_error whose payload.original_message is a prefix of the body of
    at most 65536 bytes, original_message_bytes is the body's full size and
    original_message_truncated is true, so the error envelope stays small.  A small
    malformed body keeps its whole text and has no original_message_truncated field
    (existing behaviour).  Messages before and after are processed normally."""
    rt = ctx.fake_runtime()
    sc = ctx.sidecar()
    size = 16 * 1024 * 1024 + 1
    body = (b"not json: " + b"".join(b"%09d\n" % i for i in range(size // 10 + 1)))[:size]
    assert len(body) == size
    small = f"small {{ not json {ctx.tag}".encode()
    before = ctx.envelope({"op": "echo", "n": "before"})
    after = ctx.envelope({"op": "echo", "n": "after"})
    ctx.publish(before)
    ctx.publish_raw(body)
    ctx.publish_raw(small)
    ctx.publish(after)
    got = ctx.wait_ends(happy=2, error=2, timeout=45, settle=1.0)

    exactly_once([m["id"] for m in got["happy"]], [before["id"], after["id"]], "happy-end")
    for m in got["happy"]:
        assert m["payload"] in (before["payload"], after["payload"])
    assert len(got["error"]) == 2, [str(m)[:200] for m in got["error"]]
    for m in got["error"]:
        assert m["error"] == "msg_parsing_error" and m["payload"]["error"] == "msg_parsing_error"
        assert "original_payload" not in m["payload"]
        assert m["payload"]["details"]["message"], "a reason is given"
    [small_err] = [m for m in got["error"]
                   if m["payload"].get("original_message") == small.decode()]
    assert "original_message_truncated" not in small_err["payload"], \
        "a small body is kept whole and not marked truncated"
    [big_err] = [m for m in got["error"] if m is not small_err]
    p = big_err["payload"]
    whole = len(json.dumps(big_err).encode())
    assert whole < 1024 * 1024, \
        f"the error envelope of a 16 MiB body is {whole} bytes: the body was not bounded"
    prefix = p["original_message"].encode()
    assert 0 < len(prefix) <= 65536, len(prefix)
    assert body.startswith(prefix), "original_message is a prefix of the body"
    assert p["original_message_bytes"] == size
    assert p["original_message_truncated"] is True
    assert sorted(runtime_ids(rt)) == sorted([before["id"], after["id"]]), \
        "a malformed body never reaches the runtime"
    assert ctx.depth() == 0 and sc.alive()


# ---- refused destinations in a stream -------------------------------------------------------


def test_refused_destinations_mid_stream_touch_no_other_message(ctx):
    """1200 envelopes at concurrency 4, with five whose next actor cannot be published
    to: a reserved `amq.` name, a 300-byte and a 256-byte name (AMQP names are at
    most 255 bytes) and two names the sidecar's broker user may not configure
    (ACCESS_REFUSED).  Exactly those five end at error-end as routing_error with the
    reason (reserved amq. prefix / too long / ACCESS_REFUSED); a 255-byte name is
    valid and gets its message; every other id reaches happy-end exactly once; no
    broker reconnect, nothing redelivered, no poison."""
    n = 1200
    user, password = f"sct-c-{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
    api = mgmt_url() + "/api"
    name255 = (ctx.queue + "-")[:255].ljust(255, "z")
    assert len(name255) == 255
    ctx.queues.append(name255)
    declare_queue(ctx.b.channel, name255)  # so that reading it never closes our channel
    bad = {
        150: ("reserved", f"amq.{ctx.tag}-x"),
        400: ("too_long", "n" * 300),
        650: ("refused", f"denied-{ctx.tag}"),
        900: ("too_long", "q" * 256),
        1100: ("refused", f"denied-{ctx.tag}-again"),
    }
    valid_long = 1000
    r = requests.put(f"{api}/users/{user}", auth=mgmt_auth(),
                     json={"password": password, "tags": ""}, timeout=10)
    assert r.status_code in (201, 204), r.text
    try:
        # May configure the exchange, its own queues and amq.* (so the reserved
        # name is refused for being reserved, not for the permission); not denied-*.
        configure = rf"^(asya|{re.escape(ctx.queue)}.*|amq\..*)$"
        r = requests.put(f"{api}/permissions/%2F/{user}", auth=mgmt_auth(),
                         json={"configure": configure, "write": ".*", "read": ".*"},
                         timeout=10)
        assert r.status_code in (201, 204), r.text
        amqp_port = pika.URLParameters(ctx.b.url).port
        port = free_port()
        rt = ctx.fake_runtime()
        sc = ctx.sidecar(metrics_env(port, {
            "ASYA_RABBITMQ_URL": f"amqp://{user}:{password}@127.0.0.1:{amqp_port}/",
            "ASYA_CONCURRENCY": "4", "ASYA_LOG_LEVEL": "INFO"}))
        sent = []
        for i in range(n):
            if i in bad:
                actors = [ctx.queue, bad[i][1]]
            elif i == valid_long:
                actors = [ctx.queue, name255]
            else:
                actors = [ctx.queue]
            e = ctx.envelope({"op": "echo", "i": i}, id=f"{ctx.tag}-{i:05d}", actors=actors)
            sent.append(e)
            ctx.publish(e)
        got = ctx.wait_ends(happy=n - len(bad) - 1, error=len(bad), extra={name255: 1},
                            timeout=50, settle=1.0)

        errors = {m["id"]: m for m in got["error"]}
        exactly_once([m["id"] for m in got["error"]], [sent[i]["id"] for i in bad],
                     "error-end")
        for i, (kind, dest) in bad.items():
            text = assert_routing_error(errors[sent[i]["id"]], sent[i], ctx.queue)
            if kind == "reserved":
                assert "amq." in text and "reserved" in text.lower(), text
            elif kind == "too_long":
                assert "too long" in text.lower() or "255" in text, text
            else:
                assert "ACCESS_REFUSED" in text, text
        [long_ok] = got[name255]
        assert long_ok["id"] == sent[valid_long]["id"]
        assert long_ok["route"] == {"actors": [ctx.queue, name255], "current": 1}

        good = [e for i, e in enumerate(sent) if i not in bad and i != valid_long]
        exactly_once([m["id"] for m in got["happy"]], [e["id"] for e in good], "happy-end")
        by_id = {e["id"]: e for e in good}
        for m in got["happy"]:
            assert m["payload"] == by_id[m["id"]]["payload"]
            assert m["route"] == {"actors": [ctx.queue], "current": 1}
        exactly_once(runtime_ids(rt), [e["id"] for e in sent], "requests to the runtime")

        m = scrape(port)
        q = ctx.queue
        assert_no_trouble(m, q)
        assert value(m, "messages_failed_total", queue=q, reason="routing_error") == len(bad)
        assert value(m, "messages_sent_total", destination_queue=ctx.happy,
                     message_type="happy_end") == len(good)
        assert value(m, "messages_sent_total", destination_queue=ctx.error,
                     message_type="error_end") == len(bad)
        assert ctx.depth() == 0 and sc.alive()
        assert "connection lost" not in sc.log_text()
    finally:
        for p in ctx.procs:  # before the user goes: deleting it closes its connections
            p.stop()
        requests.delete(f"{api}/users/{user}", auth=mgmt_auth(), timeout=10)


# ---- a full runtime accept backlog ---------------------------------------------------------


@pytest.mark.parametrize("backlog", [0, 1])
def test_full_runtime_accept_backlog_is_back_pressure_not_an_outage(ctx, backlog):
    """The runtime listens with backlog 0 or 1 and accepts nothing for ~2 s, then serves:
    with ASYA_CONCURRENCY=8 most of the sidecar's connects find the backlog full
    (EAGAIN).  That is back-pressure: runtime_unavailable_pauses_total stays 0,
    nothing is requeued as runtime_unavailable, nothing goes to error-end, and every
    message reaches happy-end exactly once."""
    port = free_port()
    gate = ctx.sock + ".accept"
    rt = fake_runtime_opts(ctx, "--backlog", str(backlog), "--accept-gate", gate, wait=False)
    sc = ctx.sidecar(metrics_env(port, {"ASYA_CONCURRENCY": "8"}), wait_consuming=False)
    n = 40
    sent = [ctx.envelope({"op": "echo", "i": i}, id=f"{ctx.tag}-{i:03d}") for i in range(n)]
    for e in sent:
        ctx.publish(e)
    time.sleep(2.0)
    ctx.check_procs()
    assert runtime_ids(rt) == [] and "accepting" not in rt.log_text(), \
        "test set-up: the runtime accepted before the gate opened"
    open(gate, "w").close()
    assert wait_for(lambda: "accepting" in rt.log_text(), 5)
    got = ctx.wait_ends(happy=n, timeout=40, settle=1.0)
    assert got["error"] == [], [(m.get("id"), m.get("error")) for m in got["error"]]
    exactly_once([m["id"] for m in got["happy"]], [e["id"] for e in sent], "happy-end")
    for m in got["happy"]:
        assert m["payload"] == {"op": "echo", "i": int(m["id"].rsplit("-", 1)[1])}
    m = scrape(port)
    q = ctx.queue
    assert value(m, "runtime_unavailable_pauses_total", queue=q) == 0, \
        "a full accept backlog was taken for an unreachable runtime"
    assert value(m, "messages_requeued_total", queue=q, reason="runtime_unavailable") == 0, \
        "messages were bounced back to the queue instead of waiting for the runtime"
    assert_no_trouble(m, q)
    assert ctx.depth() == 0 and sc.alive()


# ---- SIGTERM grace expiry -------------------------------------------------------------------


def peek_queue(queue: str):
    """Every message now ready in queue, read without acking (a connection of its
    own, closed afterwards, so the broker keeps them all)."""
    b = Broker()
    out = []
    try:
        while True:
            method, _props, body = b.channel.basic_get(queue=queue, auto_ack=False)
            if method is None:
                return out
            out.append(json.loads(body))
    finally:
        b.close()


def test_sigterm_grace_expiry_leaves_exactly_one_live_copy(ctx):
    """ASYA_SHUTDOWN_TIMEOUT=1s, ASYA_CONCURRENCY=2, a runtime that answers only after
    10 s and 10 messages held by the sidecar: after SIGTERM and exit 0, every id is
    exactly once either ready in the sidecar's queue or at happy-end, never twice
    and never lost; a fresh sidecar with a fast runtime then delivers each remaining
    id to happy-end exactly once."""
    rt = ctx.fake_runtime()
    sc = ctx.sidecar({"ASYA_SHUTDOWN_TIMEOUT": "1s", "ASYA_CONCURRENCY": "2"})
    n = 10
    sent = [ctx.envelope({"op": "sleep", "seconds": 10, "i": i}, id=f"{ctx.tag}-{i:02d}")
            for i in range(n)]
    for e in sent:
        ctx.publish(e)
    ids = [e["id"] for e in sent]
    assert wait_for(lambda: len(runtime_ids(rt)) >= 2, 10), "nothing reached the runtime"
    assert wait_for(lambda: ctx.depth() <= n - 2, 5)
    time.sleep(0.5)  # the prefetched rest settles in the sidecar
    assert len(runtime_ids(rt)) == 2, "concurrency 2"
    t0 = time.monotonic()
    sc.send_signal(signal.SIGTERM)
    rc = sc.wait(10)
    assert rc == 0, f"exit status {rc}:\n{sc.log_tail()}"
    assert time.monotonic() - t0 < 5, "the grace period bounds the shutdown"
    # The broker hands back whatever the closed connection still held: wait until
    # the queue's count stops moving.
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 1.0 and time.monotonic() - t0 < 15:
        d = ctx.depth()
        if d != last:
            last, stable_since = d, time.monotonic()
        time.sleep(0.1)
    queued = peek_queue(ctx.queue)
    happy = ctx.drain(ctx.happy)
    assert ctx.drain(ctx.error) == []
    where = Counter([m["id"] for m in queued] + [m["id"] for m in happy])
    twice = sorted(i for i, c in where.items() if c > 1)
    assert not twice, (f"{len(twice)} ids live twice after the shutdown (queue: "
                       f"{len(queued)}, happy-end: {len(happy)}), e.g. {twice[:3]}")
    exactly_once(list(where.elements()), ids, "queue + happy-end after SIGTERM")
    for m in queued:
        assert m == sent[ids.index(m["id"])], "requeued unchanged"

    rt.stop()
    fake_runtime_opts(ctx, "--echo-only", name="fast-runtime")
    sc2 = ctx.sidecar({"ASYA_CONCURRENCY": "2"}, name="sidecar2")
    got = ctx.wait_ends(happy=len(queued), timeout=30, settle=1.0)
    assert got["error"] == [], [(m.get("id"), m.get("error")) for m in got["error"]]
    exactly_once([m["id"] for m in got["happy"]], [m["id"] for m in queued],
                 "happy-end after the restart")
    exactly_once([m["id"] for m in got["happy"] + happy], ids, "happy-end overall")
    for m in got["happy"]:
        assert m["payload"] == sent[ids.index(m["id"])]["payload"]
    assert ctx.depth() == 0 and sc2.alive()


# ---- a broker memory alarm ------------------------------------------------------------------


def test_memory_alarm_blocks_publishing_but_not_the_sidecar(ctx):
    """The broker raises a memory alarm (set_vm_memory_high_watermark absolute 1) and
    blocks the sidecar's publishing connection (connection.blocked) while 2 MiB
    results of a stream are waiting to be published.  Eight answers at once are
    more than the ~4 MiB the socket buffers hold once the broker stops reading,
    and the broker stops reading before its connection.blocked is read: a sidecar
    that writes whatever it has would block inside the loop.  While blocked: /healthz
    answers (at most one of ten requests over 100 ms, none over 1 s), /readyz
    answers 503 with a reason mentioning "blocked", and a runtime that never answers
    still times out on time (ASYA_RUNTIME_TIMEOUT=1s: messages_failed_total
    {reason="timeout"} is 1 within 1.5 s of the request reaching the runtime).
    After the watermark is restored every message of the stream reaches happy-end
    exactly once and the hung one error-end as timeout_error; no reconnect."""
    port = free_port()
    rt = ctx.fake_runtime()
    n = 24
    size = 2 << 20
    stream = [ctx.envelope({"op": "big", "bytes": size, "i": i}, id=f"{ctx.tag}-{i:02d}")
              for i in range(n)]
    hung = ctx.envelope({"op": "hang"}, id=f"{ctx.tag}-hung")
    # Published before the alarm: a publishing connection would be blocked too.
    for e in stream[:1] + [hung] + stream[1:]:
        ctx.publish(e)
    problems = []
    alarm_set = False
    try:
        broker_rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1")
        alarm_set = True
        assert wait_for(broker_alarm, 15, step=0.2), \
            "test set-up: the broker raised no memory alarm"
        # The sidecar connects, declares and consumes under the alarm (none of it
        # publishes); its first result publish gets the connection blocked while the
        # rest of the prefetched stream and the hung request are in its hands.
        sc = ctx.sidecar(metrics_env(port, {"ASYA_CONCURRENCY": "8",
                                            "ASYA_RABBITMQ_PREFETCH": "16",
                                            "ASYA_RUNTIME_TIMEOUT": "1s"}))
        assert wait_for(lambda: hung["id"] in runtime_ids(rt), 10, 0.01), \
            "the hung request never reached the runtime"
        t_hung = time.monotonic()

        def timed_out():
            try:
                return value(scrape(port, timeout=0.5), "messages_failed_total",
                             queue=ctx.queue, reason="timeout") >= 1
            except Exception:  # noqa: BLE001 - an endpoint that does not answer
                return False

        fired = wait_for(timed_out, 1.5, step=0.05)
        if not fired:
            problems.append("the runtime timeout did not fire within 1.5 s while blocked")

        lat = []
        for _ in range(10):
            t = time.monotonic()
            try:
                status, body = http_get(port, "/healthz", timeout=1.0)
            except Exception as exc:  # noqa: BLE001
                status, body = None, repr(exc)
            lat.append(time.monotonic() - t)
            if status != 200:
                problems.append(f"/healthz while blocked: {status} {body.strip()[:80]}")
                break
            time.sleep(0.05)
        lat.sort()
        if len(lat) == 10 and (lat[8] > 0.1 or lat[9] > 1.0):
            problems.append(f"/healthz slow while blocked: {['%.3f' % x for x in lat]} s")

        last = [None]

        def readyz_blocked():
            try:
                last[0] = http_get(port, "/readyz", timeout=0.5)
            except Exception as exc:  # noqa: BLE001
                last[0] = (None, repr(exc))
                return False
            return last[0][0] == 503 and "blocked" in last[0][1].lower()

        if not wait_for(readyz_blocked, 3, step=0.1):
            problems.append(f"/readyz while blocked answered {last[0]}, expected 503 'blocked'")

        assert ctx.drain(ctx.happy) == [], \
            "test set-up: results were accepted by the broker during the alarm"
        assert broker_alarm(), "test set-up: the alarm went away by itself"
        if time.monotonic() - t_hung < 1.0:
            time.sleep(1.0 - (time.monotonic() - t_hung))
    finally:
        if alarm_set or broker_alarm():
            broker_rabbitmqctl("set_vm_memory_high_watermark", "0.4")
        wait_for(lambda: not broker_alarm(), 15, step=0.2)
    assert not broker_alarm(), "the broker's memory alarm did not clear"

    # Delivery after the alarm, collected with the blocked-phase findings so that a
    # failure shows all of them.
    got = ctx.wait_ends(happy=n, error=1, timeout=30, settle=1.0)
    for check in (
        lambda: exactly_once([m.get("id") for m in got["happy"]], [e["id"] for e in stream],
                             "happy-end"),
        lambda: exactly_once([m.get("id") for m in got["error"]], [hung["id"]], "error-end"),
    ):
        try:
            check()
        except AssertionError as exc:
            problems.append(str(exc).splitlines()[0])
    late = [(m.get("id"), m.get("error"),
             m.get("payload", {}).get("details", {}).get("message", "")[:80])
            for m in got["error"] if m.get("id") != hung["id"]]
    if late:
        problems.append(f"stream messages at error-end: {late[:4]}")
    assert not problems, "memory alarm:\n  " + "\n  ".join(problems)
    for m in got["happy"]:
        assert m["payload"]["data"] == "X" * size and m["route"]["current"] == 1
    assert got["error"][0]["error"] == "timeout_error"
    assert wait_for(lambda: http_get(port, "/readyz", timeout=1.0)[0] == 200, 10), \
        "/readyz did not come back after the alarm cleared"
    m = scrape(port)
    q = ctx.queue
    assert_no_trouble(m, q)
    assert value(m, "messages_failed_total", queue=q, reason="timeout") == 1
    assert ctx.depth() == 0 and sc.alive()
