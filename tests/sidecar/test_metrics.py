"""The sidecar's HTTP endpoint: /metrics values against what was sent, the whole
exposition parsed by Prometheus' own parser, /readyz following the runtime, and
malformed HTTP that must not disturb message routing."""
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, http_get, wait_for


def scrape(port: int):
    """Parse the whole exposition: a formatting error raises here."""
    status, text = http_get(port, "/metrics")
    assert status == 200
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def metrics_sidecar(ctx, port, extra=None):
    env = {"ASYA_METRICS_ENABLED": "true", "ASYA_METRICS_ADDR": f"127.0.0.1:{port}"}
    env.update(extra or {})
    return ctx.sidecar(env)


def test_counters_match_what_was_sent(ctx):
    port = free_port()
    ctx.real_runtime("conditional_handler", workers=2)
    metrics_sidecar(ctx, port, {"ASYA_RUNTIME_TIMEOUT": "1s", "ASYA_CONCURRENCY": "2"})
    for i in range(5):
        ctx.publish(ctx.envelope({"action": "ok", "i": i}))
    for _ in range(2):
        ctx.publish(ctx.envelope({"action": "error", "error_msg": "boom"}))
    ctx.publish(ctx.envelope({"action": "slow", "sleep": 3}))
    ctx.publish(ctx.envelope({"action": "empty"}))
    ctx.publish_raw(b"this is not json")
    ends = ctx.wait_ends(happy=6, error=4, timeout=30)
    assert len(ends["happy"]) == 6 and len(ends["error"]) == 4

    q = ctx.queue
    m = scrape(port)
    assert value(m, "asya_actor_messages_received_total", queue=q, transport="rabbitmq") == 10
    assert value(m, "asya_actor_messages_processed_total", queue=q, status="success") == 5
    assert value(m, "asya_actor_messages_processed_total", queue=q, status="empty_response") == 1
    assert value(m, "asya_actor_messages_failed_total", queue=q, reason="runtime_error") == 2
    assert value(m, "asya_actor_messages_failed_total", queue=q, reason="timeout") == 1
    assert value(m, "asya_actor_messages_failed_total", queue=q, reason="parse_error") == 1
    assert value(m, "asya_actor_runtime_errors_total", queue=q,
                 error_type="processing_error") == 2
    assert value(m, "asya_actor_runtime_errors_total", queue=q, error_type="timeout_error") == 1
    assert value(m, "asya_actor_messages_sent_total", destination_queue=ctx.happy,
                 message_type="happy_end") == 6
    assert value(m, "asya_actor_messages_sent_total", destination_queue=ctx.error,
                 message_type="error_end") == 4
    # Every message was acked: one processing observation each.
    assert value(m, "asya_actor_processing_duration_seconds_count", queue=q) == 10
    assert value(m, "asya_actor_runtime_execution_duration_seconds_count", queue=q) == 8
    assert value(m, "asya_actor_envelope_size_bytes_count", queue=q, direction="received") == 10
    assert value(m, "asya_actor_envelope_size_bytes_count", queue=q, direction="sent") == 10
    assert value(m, "asya_actor_active_messages", queue=q) == 0
    assert value(m, "asya_actor_ready", queue=q) == 1
    # The timed-out worker was killed by the runtime: reported within a stats period.
    assert wait_for(lambda: value(scrape(port), "asya_actor_runtime_worker_restarts_total",
                                  queue=q, cause="timeout_kill") == 1, timeout=12), \
        "runtime_worker_restarts_total{cause=timeout_kill} did not reach 1"
    m = scrape(port)
    assert value(m, "asya_actor_runtime_workers", queue=q, state="total") == 2
    assert value(m, "asya_actor_runtime_worker_restarts_total", queue=q, cause="crash") == 0


def test_readyz_follows_the_runtime(ctx):
    port = free_port()
    rt = ctx.real_runtime("echo_handler")
    metrics_sidecar(ctx, port)
    assert wait_for(lambda: http_get(port, "/readyz")[0] == 200, timeout=10)
    assert http_get(port, "/healthz") == (200, "ok\n")

    rt.kill_group(signal.SIGKILL)
    rt.wait(5)
    try:
        os.unlink(ctx.sock)  # a SIGKILLed runtime leaves its socket file
    except OSError:
        pass
    assert wait_for(lambda: http_get(port, "/readyz")[0] == 503, timeout=10), \
        "readyz did not flip to 503 after the runtime died"
    status, body = http_get(port, "/readyz")
    assert body.startswith("not ready: ") and "runtime" in body
    assert http_get(port, "/healthz")[0] == 200

    ctx.real_runtime("echo_handler", name="runtime2")
    assert wait_for(lambda: http_get(port, "/readyz")[0] == 200, timeout=15), \
        "readyz did not come back after the runtime returned"
    ctx.publish(ctx.envelope({"n": 1}))
    assert len(ctx.wait_ends(happy=1, timeout=15)["happy"]) == 1


def test_malformed_http_does_not_disturb_routing(ctx):
    port = free_port()
    ctx.real_runtime("echo_handler")
    sc = metrics_sidecar(ctx, port)

    def raw(data: bytes, read: bool = True) -> bytes:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(data)
            if not read:
                return b""
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    # Garbage, a bad request line, a huge header, a non-GET method, an unknown path.
    raw(b"\x00\x01\x02garbage\r\n\r\n")
    raw(b"GET\r\n\r\n")
    big = raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    assert not big.startswith(b"HTTP/1.1 200"), "a 200 KB header was accepted"
    assert raw(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc") \
        .startswith(b"HTTP/1.1 405")
    assert raw(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") \
        .startswith(b"HTTP/1.1 404")
    # Slowloris: many connections holding half a request open.
    held = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        held.append(s)
    try:
        # Messages keep flowing and the endpoint still answers.
        for i in range(20):
            ctx.publish(ctx.envelope({"i": i}))
        ends = ctx.wait_ends(happy=20, timeout=20)
        assert sorted(e["payload"]["i"] for e in ends["happy"]) == list(range(20))
        assert http_get(port, "/healthz")[0] == 200
        assert value(scrape(port), "asya_actor_messages_processed_total", queue=ctx.queue,
                     status="success") == 20
    finally:
        for s in held:
            s.close()
    assert sc.alive()


def test_metrics_disabled_and_port_in_use(ctx):
    port = free_port()
    ctx.real_runtime("echo_handler")
    ctx.sidecar({"ASYA_METRICS_ENABLED": "false", "ASYA_METRICS_ADDR": f"127.0.0.1:{port}"})
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen(1)
    try:
        p = ctx.sidecar({"ASYA_METRICS_ENABLED": "true",
                         "ASYA_METRICS_ADDR": f"127.0.0.1:{port}"},
                        wait_consuming=False, name="sidecar-busy-port")
        p.expected_exit = True
        rc = p.wait(10)
        assert rc not in (0, None)
        assert "ASYA_METRICS_ADDR" in p.log_text()
    finally:
        blocker.close()
