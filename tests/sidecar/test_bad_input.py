"""More of issue 8's bad-input matrix through a real sidecar (the malformed
bodies are in test_sidecar.py's MALFORMED): a 10 000-actor route is valid and
routed; an unroutable publish ends as routing_error."""
import json

import requests

from asya_testlib import Broker
from conftest import wait_for


def test_ten_thousand_actors_is_a_valid_route(ctx):
    ctx.fake_runtime()
    ctx.sidecar()
    actors = [ctx.queue, ctx.next] + [f"a{i}" for i in range(9998)]
    env = ctx.envelope({"op": "echo", "n": 1}, actors=actors)
    ctx.publish(env)
    got = ctx.wait_ends(extra={ctx.next: 1}, timeout=20)
    [out] = got[ctx.next]
    assert out["id"] == env["id"]
    assert out["route"]["current"] == 1 and out["route"]["actors"] == actors
    assert got["error"] == [] and got["happy"] == []
    assert json.dumps(out["payload"]) == json.dumps(env["payload"])


def test_unroutable_publish_goes_to_error_end_as_routing_error(ctx):
    """mandatory publishes: a destination deleted after the sidecar declared it
    makes the broker return the result; the message goes to error-end as
    routing_error, and the next message re-declares the destination."""
    ctx.fake_runtime()
    ctx.sidecar()
    first = ctx.envelope({"op": "echo", "n": 1}, actors=[ctx.queue, ctx.next])
    ctx.publish(first)
    got = ctx.wait_ends(extra={ctx.next: 1})
    assert [m["id"] for m in got[ctx.next]] == [first["id"]]

    ctx.b.channel.queue_delete(queue=ctx.next)  # the sidecar still believes it exists
    lost = ctx.envelope({"op": "echo", "n": 2}, actors=[ctx.queue, ctx.next])
    ctx.publish(lost)
    got = ctx.wait_ends(error=1, timeout=15)
    [err] = got["error"]
    assert err["id"] == lost["id"] and err["error"] == "routing_error"
    assert err["payload"]["details"]["type"] == "UnroutableMessage"
    assert err["payload"]["original_payload"] == lost["payload"]

    again = ctx.envelope({"op": "echo", "n": 3}, actors=[ctx.queue, ctx.next])
    ctx.publish(again)

    def redeclared():
        try:
            Broker.queue_info(ctx.next)  # management API: no channel to lose on a 404
            return True
        except requests.HTTPError:
            return False

    # Reading a queue that does not exist (yet) would close the test's channel.
    assert wait_for(redeclared, timeout=15), "the sidecar did not declare the destination again"
    got = ctx.wait_ends(extra={ctx.next: 1}, timeout=15)
    assert [m["id"] for m in got[ctx.next]] == [again["id"]], "destination declared again"
    assert got["error"] == []
