"""The rest of issue 8's bad-input matrix through a real sidecar: wrong types for
every envelope field, an empty route, 10 000-level nesting go to error-end as
msg_parsing_error with the raw body kept; a 10 000-actor route is valid and
routed.  None of them reaches the runtime, and the sidecar keeps working."""
import json

import pytest

BAD = {
    "json_number": b"42",
    "json_null": b"null",
    "route_not_object": b'{"id": "MID", "payload": 1, "route": ["QUEUE"]}',
    "actors_not_array": b'{"id": "MID", "payload": 1, "route": {"actors": "QUEUE", "current": 0}}',
    "actor_not_string": b'{"id": "MID", "payload": 1, "route": {"actors": [7], "current": 0}}',
    "actors_empty": b'{"id": "MID", "payload": 1, "route": {"actors": [], "current": 0}}',
    "steps_empty": b'{"id": "MID", "payload": 1, "route": {"steps": [], "current": 0}}',
    "current_real": b'{"id": "MID", "payload": 1, "route": {"actors": ["QUEUE"], "current": 0.0}}',
    "current_missing": b'{"id": "MID", "payload": 1, "route": {"actors": ["QUEUE"]}}',
    "id_number": b'{"id": 12, "payload": 1, "route": {"actors": ["QUEUE"], "current": 0}}',
    "parent_id_object": (b'{"id": "MID", "parent_id": {}, "payload": 1, '
                         b'"route": {"actors": ["QUEUE"], "current": 0}}'),
    "headers_string": (b'{"id": "MID", "headers": "x", "payload": 1, '
                       b'"route": {"actors": ["QUEUE"], "current": 0}}'),
    "deep_nesting_10000": (b'{"id": "MID", "route": {"actors": ["QUEUE"], "current": 0}, "payload": '
                           + b"[" * 10000 + b"]" * 10000 + b"}"),
    "truncated": b'{"id": "MID", "payload": {"a": ',
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_envelope_goes_to_error_end(ctx, case):
    rt = ctx.fake_runtime()
    sc = ctx.sidecar()
    mid = f"{ctx.tag}-bad"
    body = BAD[case].replace(b"MID", mid.encode()).replace(b"QUEUE", ctx.queue.encode())
    ctx.publish_raw(body)
    got = ctx.wait_ends(error=1)
    assert got["happy"] == []
    [msg] = got["error"]
    assert msg["error"] == "msg_parsing_error", msg
    p = msg["payload"]
    assert p["error"] == "msg_parsing_error"
    assert p["original_message"] == body.decode("utf-8", "replace")
    assert p["details"]["message"] and p["details"]["actor"] == ctx.queue
    assert rt.requests() == [], "a bad envelope must never reach the runtime"
    good = ctx.envelope({"op": "echo", "after": case})
    ctx.publish(good)
    assert [m["id"] for m in ctx.wait_ends(happy=1)["happy"]] == [good["id"]]
    assert sc.alive()


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
    got = ctx.wait_ends(extra={ctx.next: 1}, timeout=15)
    assert [m["id"] for m in got[ctx.next]] == [again["id"]], "destination declared again"
    assert got["error"] == []
