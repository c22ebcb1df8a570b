"""ASYA_MAX_INFLIGHT_BYTES: a sidecar never holds more message bytes than that at
once (one message is always taken, whatever its size), however deep the prefetch;
what it sends back for its bytes costs no delivery attempt and loses nothing."""
import threading
import time

from conftest import free_port
from test_gateway_reports import metric, scrape

NS = "asya_actor"
KIB = 1024


def test_inflight_bytes_bound_a_deep_prefetch(ctx):
    """40 messages of 256 KiB, prefetch 64, budget 1 MiB, a handler of 30 ms: the
    held bytes (sampled from /metrics) never pass 1 MiB, every message arrives once,
    none is counted as redelivered or poison, and the prefetch came down."""
    budget = 1024 * KIB
    ctx.fake_runtime()
    port = free_port()
    p = ctx.sidecar({"ASYA_RABBITMQ_PREFETCH": "64", "ASYA_MAX_INFLIGHT_BYTES": str(budget),
                     "ASYA_METRICS_ENABLED": "true", "ASYA_METRICS_ADDR": f"127.0.0.1:{port}",
                     "ASYA_LOG_LEVEL": "INFO"})
    blob = "x" * (256 * KIB)
    ids = []
    for i in range(40):
        env = ctx.envelope({"op": "sleep", "seconds": 0.03, "i": i, "blob": blob})
        ids.append(env["id"])
        ctx.publish(env)
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                v = metric(port, "inflight_bytes", ctx.queue)
            except Exception:  # noqa: BLE001 - the sidecar may be between answers
                v = 0.0
            peak[0] = max(peak[0], v)
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        got = ctx.wait_ends(happy=40, timeout=60)
    finally:
        stop.set()
        t.join(5)
    assert sorted(e["id"] for e in got["happy"]) == sorted(ids) and got["error"] == []
    assert 0 < peak[0] <= budget, peak[0]
    m = scrape(port)

    def requeued(reason):
        return m.get((f"{NS}_messages_requeued_total",
                      (("queue", ctx.queue), ("reason", reason))), 0)
    assert requeued("inflight_bytes") > 0, "the first burst was over the budget"
    assert requeued("redelivered") == 0, "a send-back for bytes is not a failed attempt"
    assert "prefetch 64 -> " in p.log_tail(200), p.log_tail(50)


def test_fast_handler_over_the_budget_does_not_loop(ctx):
    """60 messages alternating 1 MiB and 16 KiB, prefetch 32, budget 4 MiB, an instant
    handler.  What is sent back for its bytes must not come straight back in a loop:
    RabbitMQ applies a lowered prefetch only to a new consumer, whose window the held
    messages do not fill, and a sidecar reading one redelivery after another never
    got back to its runtime answers.  Every message arrives once, /metrics answers, and
    the send-backs stay few instead of thousands a second."""
    ctx.fake_runtime()
    port = free_port()
    ctx.sidecar({"ASYA_MAX_INFLIGHT_BYTES": str(4096 * KIB), "ASYA_RABBITMQ_PREFETCH": "32",
                 "ASYA_METRICS_ENABLED": "true", "ASYA_METRICS_ADDR": f"127.0.0.1:{port}"})
    ids = []
    for i in range(60):
        env = ctx.envelope({"op": "echo", "i": i, "blob": "z" * ((1024 if i % 2 else 16) * KIB)})
        ids.append(env["id"])
        ctx.publish(env)
    got = ctx.wait_ends(happy=60, timeout=90)
    assert sorted(e["id"] for e in got["happy"]) == sorted(ids) and got["error"] == []
    m = scrape(port)  # answers: the loop is not starved
    sent_back = m.get((f"{NS}_messages_requeued_total",
                       (("queue", ctx.queue), ("reason", "inflight_bytes"))), 0)
    assert sent_back < 5 * 60, sent_back


def test_one_message_over_the_budget_is_still_taken(ctx):
    """A single body larger than the whole budget runs (one is always held)."""
    ctx.fake_runtime()
    ctx.sidecar({"ASYA_MAX_INFLIGHT_BYTES": str(64 * KIB)})
    env = ctx.envelope({"op": "echo", "blob": "y" * (200 * KIB)})
    ctx.publish(env)
    got = ctx.wait_ends(happy=1, timeout=20)
    assert [e["id"] for e in got["happy"]] == [env["id"]]
    assert len(got["happy"][0]["payload"]["blob"]) == 200 * KIB


def test_bad_inflight_bytes_value_exits_2(ctx):
    p = ctx.sidecar({"ASYA_MAX_INFLIGHT_BYTES": "lots"}, wait_consuming=False)
    assert p.wait(10) == 2
    assert "ASYA_MAX_INFLIGHT_BYTES" in p.log_tail(5)
