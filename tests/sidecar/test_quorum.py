"""ASYA_QUEUE_TYPE=quorum, poison messages counted through the broker's
x-delivery-count, and the start-up warning about the broker's consumer timeout."""
import signal
import time

from asya_testlib import Broker
from conftest import wait_for


def test_quorum_queue_declared_and_used(ctx):
    # A fresh queue name the sidecar declares itself (the fixture's is classic).
    q = f"{ctx.queue}-qq"
    ctx.queues.append(q)
    ctx.fake_runtime()
    ctx.sidecar({"ASYA_QUEUE_TYPE": "quorum", "ASYA_ACTOR_NAME": q}, queue=q)
    info = Broker.queue_info(q)
    assert info["type"] == "quorum", info
    assert info["durable"] is True
    env = ctx.envelope({"op": "echo", "x": 1}, actors=[q])
    ctx.publish(env, queue=q)
    # happy-end already exists as a classic queue: the sidecar uses it as it is.
    got = ctx.wait_ends(happy=1, timeout=20)
    [out] = got["happy"]
    assert out["id"] == env["id"] and out["payload"] == {"op": "echo", "x": 1}
    assert out["route"]["current"] == 1


def test_quorum_poison_counted_by_delivery_count(ctx):
    """A message that kills its sidecar every time, on a quorum queue: the broker's
    x-delivery-count bounds it; it ends at error-end as poison_message."""
    q = f"{ctx.queue}-qq"
    ctx.queues.append(q)
    rt = ctx.fake_runtime()
    env_vars = {"ASYA_QUEUE_TYPE": "quorum", "ASYA_ACTOR_NAME": q,
                "ASYA_MAX_DELIVERY_ATTEMPTS": "3"}
    sc = ctx.sidecar(env_vars, queue=q)
    sent = ctx.envelope({"op": "sleep", "seconds": 30}, actors=[q])
    ctx.publish(sent, queue=q)
    kills = 0
    errors = []
    deadline = time.monotonic() + 60

    def runs():
        return sum(1 for r in rt.requests() if r.get("id") == sent["id"])

    while not errors and time.monotonic() < deadline:
        # Once the runtime is working on it, kill the sidecar mid-handler.
        if sc.alive() and wait_for(lambda: runs() > kills, timeout=5):
            sc.kill_group(signal.SIGKILL)
            sc.wait(5)
            kills += 1
            assert kills <= 6, "endless loop: the message keeps coming back"
            sc = ctx.sidecar(env_vars, queue=q, name=f"sidecar{kills}")
        errors += ctx.drain(ctx.error)
        time.sleep(0.2)
    assert len(errors) == 1, f"nothing at error-end after {kills} sidecar kills"
    err = errors[0]
    assert err["error"] == "poison_message" and err["id"] == sent["id"]
    assert err["payload"]["original_payload"] == sent["payload"]
    assert 2 <= kills <= 4, kills
    assert ctx.drain(ctx.happy) == []


def test_warns_when_runtime_timeout_reaches_consumer_timeout(ctx):
    ctx.fake_runtime()
    sc = ctx.sidecar({"ASYA_RUNTIME_TIMEOUT": "45m"})
    text = sc.log_text()
    assert "ASYA_RUNTIME_TIMEOUT=45m0s is not below the broker's consumer_timeout (30m0s" in text
    sc2 = ctx.sidecar({"ASYA_RUNTIME_TIMEOUT": "2h", "ASYA_BROKER_CONSUMER_TIMEOUT": "3h"},
                      name="sidecar-long")
    assert "consumer_timeout" not in sc2.log_text()
