"""Sidecar <-> runtime seed scenarios (DESIGN.md "Seed scenarios", "Routing rules",
"Error-end envelope").

Every scenario queue has one asya-sidecar + asya-runtime pair running
test_handlers.so:<handler> (see ../scenarios.txt).  happy-end and error-end have no
consumer: the tests read what arrives there and check its content.  Each test uses
fresh envelope ids and only looks at messages carrying them.
"""

import json
import os
import subprocess
import time
import uuid

import pytest

from asya_testlib import unique_id
from conftest import SINK, dead_processes, family, read_pids

ECHO = "test-echo-queue"
ACTOR = "test-actor-queue"
ERROR = "test-error-queue"
OOM = "test-oom-queue"
CUDA_OOM = "test-cuda-oom-queue"
TIMEOUT = "test-timeout-queue"
FANOUT = "test-fanout-queue"
EMPTY = "test-empty-queue"
LARGE = "test-large-queue"
UNICODE = "test-unicode-queue"
NULL = "test-null-queue"
CONDITIONAL = "test-conditional-queue"
NESTED = "test-nested-queue"
DOUBLER = "test-doubler-queue"
INCREMENTER = "test-incrementer-queue"


# ---- assertions shared by the tests ----------------------------------------------

def assert_routed_to_end(msg, sent, payload=None):
    """A result that went through every actor of `sent`'s route: same id, same
    actors, current advanced past the last actor, payload as given."""
    assert msg["id"] == sent["id"]
    assert msg["route"]["actors"] == sent["route"]["actors"]
    assert msg["route"]["current"] == len(sent["route"]["actors"]), msg["route"]
    if payload is not None:
        assert msg["payload"] == payload


def assert_error_end(msg, sent, code, message=None, type_=None, actor=None,
                     original_payload=None):
    """DESIGN.md "Error-end envelope": top-level error code, payload.error,
    payload.details.{message,type}, payload.original_payload, id and route kept."""
    assert msg.get("error") == code, f"top-level error: {msg.get('error')!r} in {msg!r:.1500}"
    assert msg.get("id") == sent["id"]
    assert msg.get("route", {}).get("actors") == sent["route"]["actors"], msg.get("route")
    p = msg.get("payload")
    assert isinstance(p, dict), f"payload must be an object: {msg!r:.1500}"
    assert p.get("error") == code, p
    details = p.get("details")
    assert isinstance(details, dict), p
    assert isinstance(details.get("message"), str) and details["message"], details
    if message is not None:
        assert details["message"] == message, details
    if type_ is not None:
        assert details.get("type") == type_, details
    if actor is not None:
        assert details.get("actor") == actor, details
    assert "original_payload" in p, f"payload.original_payload missing: {p!r:.1500}"
    assert p["original_payload"] == (sent["payload"] if original_payload is None
                                     else original_payload)
    return details


# ---- happy path -----------------------------------------------------------------

def test_happy_path_echo_returns_payload(publish, ends):
    payload = {"data": "hello", "n": 42, "f": 1.5, "ok": True, "list": [1, "two", {"3": 3}]}
    sent = publish(payload, [ECHO])
    msg = ends.one(sent["id"])
    assert_routed_to_end(msg, sent, payload)


def test_happy_path_echo_message(publish, ends):
    sent = publish({"message": "hello world"}, [ECHO])
    msg = ends.one(sent["id"])
    assert_routed_to_end(msg, sent, {"echoed": "hello world"})


def test_happy_path_generic_actor(publish, ends):
    sent = publish({"k": "v"}, [ACTOR])
    assert_routed_to_end(ends.one(sent["id"]), sent, {"k": "v"})


def test_happy_path_non_object_payloads(publish, ends):
    """A payload is any JSON value."""
    sents = [publish(p, [ACTOR]) for p in ([1, 2, 3], "text", 7, None, {})]
    for sent in sents:
        assert_routed_to_end(ends.one(sent["id"]), sent, sent["payload"])


def test_headers_and_unknown_fields_preserved(publish, ends):
    headers = {"trace_id": "trace-" + uuid.uuid4().hex, "priority": "high", "n": 3}
    sent = publish({"value": 1}, [ECHO, ACTOR], headers=headers,
                   custom_field={"keep": ["me", 1]}, x_extra="yes")
    msg = ends.one(sent["id"])
    assert_routed_to_end(msg, sent, {"value": 1})
    assert msg.get("headers") == headers
    assert msg.get("custom_field") == {"keep": ["me", 1]}
    assert msg.get("x_extra") == "yes"


def test_headers_preserved_on_error_end(publish, ends):
    headers = {"trace_id": "trace-" + uuid.uuid4().hex}
    sent = publish({"should_fail": True}, [ERROR], headers=headers)
    msg = ends.one(sent["id"], where="error")
    assert_error_end(msg, sent, "processing_error")
    assert msg.get("headers") == headers


def test_route_steps_alias_kept(broker, ends):
    """`steps` is accepted as an alias of `actors`, and the output keeps `steps`."""
    id_ = unique_id()
    env = {"id": id_, "payload": {"a": 1}, "route": {"steps": [ECHO, ACTOR], "current": 0}}
    broker.publish_envelope(env)
    msg = ends.one(id_)
    assert msg["payload"] == {"a": 1}
    assert msg["route"].get("steps") == [ECHO, ACTOR], msg["route"]
    assert "actors" not in msg["route"], msg["route"]
    assert msg["route"]["current"] == 2


def test_envelope_without_id(broker, ends):
    """Missing ids are allowed (older Asya)."""
    marker = uuid.uuid4().hex
    broker.publish_envelope({"payload": {"marker": marker}, "route": {"actors": [ACTOR], "current": 0}})
    got = ends.wait(lambda m: isinstance(m.get("payload"), dict)
                    and m["payload"].get("marker") == marker, happy=1)
    assert not got["error"], got["error"]
    assert len(got["happy"]) == 1, got
    assert got["happy"][0]["route"] == {"actors": [ACTOR], "current": 1}


def test_route_starting_mid_way(publish, ends):
    """current > 0: actors before it are already done; only the rest run."""
    sent = publish({"value": 10}, [DOUBLER, INCREMENTER], current=1)
    msg = ends.one(sent["id"])
    assert_routed_to_end(msg, sent, {"value": 15, "operation": "incremented"})


# ---- errors ---------------------------------------------------------------------

def test_error_handler(publish, ends):
    payload = {"should_fail": True, "data": "important"}
    sent = publish(payload, [ERROR])
    msg = ends.one(sent["id"], where="error")
    assert_error_end(msg, sent, "processing_error", message="Intentional test failure",
                     type_="ValueError", actor=ERROR)
    assert msg["route"]["current"] == 0, "error-end keeps the original route"


def test_error_handler_success_when_should_fail_false(publish, ends):
    sent = publish({"should_fail": False, "x": 1}, [ERROR])
    assert_routed_to_end(ends.one(sent["id"]), sent, {"should_fail": False, "x": 1})


def test_oom_handler(publish, ends):
    sent = publish({"size": "huge"}, [OOM])
    msg = ends.one(sent["id"], where="error")
    assert_error_end(msg, sent, "oom_error", message="Simulated out of memory condition")


def test_cuda_oom_handler(publish, ends):
    sent = publish({"model": "big"}, [CUDA_OOM])
    msg = ends.one(sent["id"], where="error")
    assert_error_end(msg, sent, "cuda_oom_error",
                     message="CUDA out of memory: Tried to allocate 4.0 GiB")


def test_timeout_handler(publish, ends):
    """The handler sleeps 10 s; the sidecar gives up after 3 s with timeout_error,
    keeps running, and the runtime replaces the stuck worker."""
    t0 = time.monotonic()
    sent = publish({"sleep_seconds": 10, "tag": "slow"}, [TIMEOUT])
    msg = ends.one(sent["id"], where="error", timeout=12)
    elapsed = time.monotonic() - t0
    assert_error_end(msg, sent, "timeout_error")
    assert 2.5 <= elapsed < 9, f"timeout_error after {elapsed:.1f}s (sidecar timeout is 3s)"

    # The same actor still works for a message within the timeout.
    ok = publish({"sleep": 0.2, "tag": "fast"}, [TIMEOUT])
    assert_routed_to_end(ends.one(ok["id"], timeout=15), ok, {"sleep": 0.2, "tag": "fast"})


def test_timeout_handler_default_sleep(publish, ends):
    """No sleep field: the default 5 s is over the 3 s timeout."""
    sent = publish({}, [TIMEOUT])
    assert_error_end(ends.one(sent["id"], where="error", timeout=12), sent, "timeout_error")


def test_error_stops_the_route(publish, ends):
    """An error mid-route goes to error-end; later actors never run."""
    sent = publish({"value": 10}, [DOUBLER, ERROR, INCREMENTER])
    msg = ends.one(sent["id"], where="error")
    assert_error_end(msg, sent, "processing_error", message="Intentional test failure",
                     type_="ValueError",
                     original_payload={"value": 20, "operation": "doubled"})
    assert msg["route"]["current"] == 1, msg["route"]


# ---- fan-out and empty results ----------------------------------------------------

def check_fanout(msgs, id_, count, sent_route):
    ids = sorted(m["id"] for m in msgs)
    want = sorted([id_] + [f"{id_}-{i}" for i in range(1, count)])
    assert ids == want, f"fan-out ids {ids} != {want}"
    for m in msgs:
        if m["id"] != id_:
            assert m.get("parent_id") == id_, m
        assert m["route"]["actors"] == sent_route["actors"]
        assert m["route"]["current"] == len(sent_route["actors"])


@pytest.mark.parametrize("count", [None, 5])
def test_fanout_handler(publish, ends, count):
    payload = {"batch": "b1"} if count is None else {"batch": "b1", "count": count}
    n = 3 if count is None else count
    sent = publish(payload, [FANOUT])
    got = ends.wait(family(sent["id"]), happy=n, settle=1.0)
    assert not got["error"], got["error"]
    check_fanout(got["happy"], sent["id"], n, sent["route"])
    by_index = sorted((m["payload"] for m in got["happy"]), key=lambda p: p["index"])
    assert [p["index"] for p in by_index] == list(range(n))
    for p in by_index:
        assert p["message"] == f"Fan-out message {p['index']}"
        assert p["batch"] == "b1"
    # Result i carries index i: result 0 keeps the id, result i gets <id>-<i>.
    for m in got["happy"]:
        i = m["payload"]["index"]
        assert m["id"] == (sent["id"] if i == 0 else f"{sent['id']}-{i}"), m


def test_fanout_then_pipeline(publish, ends):
    """Each fan-out child continues along the route independently."""
    sent = publish({"value": 3, "count": 3}, [FANOUT, DOUBLER])
    got = ends.wait(family(sent["id"]), happy=3, settle=1.0)
    assert not got["error"], got["error"]
    check_fanout(got["happy"], sent["id"], 3, sent["route"])
    for m in got["happy"]:
        assert m["payload"]["value"] == 6
        assert m["payload"]["operation"] == "doubled"


def test_empty_response_handler(broker, publish, ends):
    """No result: the original envelope, unchanged, goes to happy-end, and the next
    actor of the route (an unconsumed queue) never receives anything."""
    sent = publish({"data": "x", "n": [1, 2]}, [EMPTY, SINK], headers={"h": "1"})
    msg = ends.one(sent["id"], settle=1.0)
    assert msg["payload"] == sent["payload"]
    assert msg["route"] == sent["route"], "original envelope must be unchanged"
    assert msg.get("headers") == {"h": "1"}
    time.sleep(0.5)
    assert broker.queue_depth(SINK) == 0, "the route's next actor must not be reached"


# ---- payload shapes --------------------------------------------------------------

@pytest.mark.parametrize("size_kb", [100, 1024])
def test_large_payload_handler(publish, ends, size_kb):
    sent = publish({"size_kb": size_kb, "tag": "big"}, [LARGE])
    msg = ends.one(sent["id"], timeout=30)
    p = msg["payload"]
    assert p["data_size_kb"] == size_kb
    assert p["handler"] == "large_payload"
    assert p["tag"] == "big"
    assert len(p["data"]) == size_kb * 1024
    assert set(p["data"]) == {"X"}


def test_large_payload_default_size(publish, ends):
    sent = publish({}, [LARGE])
    p = ends.one(sent["id"], timeout=30)["payload"]
    assert p["data_size_kb"] == 100 and len(p["data"]) == 100 * 1024


@pytest.mark.parametrize("size", [100 * 1024, 1024 * 1024])
def test_large_payload_round_trip(publish, ends, size):
    """A large input payload survives the whole trip unchanged."""
    blob = (uuid.uuid4().hex * (size // 32 + 1))[:size]
    sent = publish({"blob": blob}, [ACTOR, ECHO])
    msg = ends.one(sent["id"], timeout=30)
    assert msg["payload"]["blob"] == blob


def test_unicode_handler(publish, ends):
    text = "Grüße, 世界! Привет 👋 مرحبا \u00e9\u0301 \U0001F600"
    sent = publish({"text": text, "ключ": "значение"}, [UNICODE])
    p = ends.one(sent["id"])["payload"]
    assert p["text"] == text
    assert p["ключ"] == "значение"
    assert p["message"] == "处理成功 ✓"
    assert p["emoji"] == "🚀🎉🌍"
    assert set(p["languages"]) == {"chinese", "japanese", "arabic", "russian"}
    assert p["languages"]["chinese"] == "你好世界"
    assert p["languages"]["russian"] == "Привет мир"


def test_unicode_round_trip_through_echo(broker, ends):
    """Non-ASCII text, raw (not \\u-escaped) UTF-8 on the wire, comes back identical."""
    id_ = unique_id()
    text = "日本語 ✓ 🚀 عربى ñ"
    body = json.dumps({"id": id_, "payload": {"text": text},
                       "route": {"actors": [ECHO], "current": 0}}, ensure_ascii=False)
    broker.publish_raw(ECHO, body.encode("utf-8"))
    assert ends.one(id_)["payload"] == {"text": text}


def test_null_values_handler(publish, ends):
    sent = publish({"input_null": None, "list": [None, 1]}, [NULL])
    p = ends.one(sent["id"])["payload"]
    assert "input_null" in p and p["input_null"] is None
    assert p["list"] == [None, 1]
    assert "null_field" in p and p["null_field"] is None
    assert p["list_with_nulls"] == [1, None, 3, None, 5]
    assert p["nested"] == {"value_null": None, "value_int": 123}


def test_nested_data_handler(publish, ends):
    deep = {"leaf": True}
    for i in range(40):
        deep = {"d": i, "inner": deep}
    sent = publish({"input": deep}, [NESTED])
    p = ends.one(sent["id"])["payload"]
    assert p["input"] == deep
    assert p["nested_depth"] == 20
    node, depth = p["structure"], 0
    while isinstance(node, dict):
        depth += 1
        assert node["level"] == depth and "data" in node, node
        node = node.get("next")
    assert depth == 20


# ---- conditional handler -----------------------------------------------------------

def test_conditional_success(publish, ends):
    sent = publish({"action": "process", "data": 5}, [CONDITIONAL])
    assert_routed_to_end(ends.one(sent["id"]), sent,
                         {"action": "process", "data": 5, "status": "success"})


def test_conditional_error(publish, ends):
    sent = publish({"action": "error", "error_msg": "custom failure"}, [CONDITIONAL])
    msg = ends.one(sent["id"], where="error")
    assert_error_end(msg, sent, "processing_error", message="Conditional error: custom failure",
                     type_="ValueError", actor=CONDITIONAL)


def test_conditional_error_default_message(publish, ends):
    sent = publish({"action": "error"}, [CONDITIONAL])
    assert_error_end(ends.one(sent["id"], where="error"), sent, "processing_error",
                     message="Conditional error: test")


def test_conditional_oom(publish, ends):
    sent = publish({"action": "oom"}, [CONDITIONAL])
    assert_error_end(ends.one(sent["id"], where="error"), sent, "oom_error")


def test_conditional_slow(publish, ends):
    t0 = time.monotonic()
    sent = publish({"action": "slow", "sleep": 1}, [CONDITIONAL])
    msg = ends.one(sent["id"])
    assert time.monotonic() - t0 >= 1.0
    assert_routed_to_end(msg, sent, {"action": "slow", "sleep": 1,
                                     "status": "slow_processing_complete"})


def test_conditional_fanout(publish, ends):
    sent = publish({"action": "fanout", "count": 4}, [CONDITIONAL])
    got = ends.wait(family(sent["id"]), happy=4, settle=1.0)
    assert not got["error"], got["error"]
    check_fanout(got["happy"], sent["id"], 4, sent["route"])
    assert sorted(m["payload"]["index"] for m in got["happy"]) == [0, 1, 2, 3]
    for m in got["happy"]:
        assert m["payload"] == {"index": m["payload"]["index"], "action": "fanout"}


def test_conditional_empty(broker, publish, ends):
    sent = publish({"action": "empty"}, [CONDITIONAL, SINK])
    msg = ends.one(sent["id"], settle=1.0)
    assert msg["payload"] == sent["payload"]
    assert msg["route"] == sent["route"]
    assert broker.queue_depth(SINK) == 0


# ---- multi-actor routing ------------------------------------------------------------

def test_multi_actor_echo_then_actor(publish, ends):
    sent = publish({"step": "multi", "v": [1, 2]}, [ECHO, ACTOR])
    assert_routed_to_end(ends.one(sent["id"]), sent, {"step": "multi", "v": [1, 2]})


@pytest.mark.parametrize("route,start,final", [
    ([DOUBLER, INCREMENTER], 10, (25, "incremented")),
    ([INCREMENTER, DOUBLER], 10, (30, "doubled")),
    ([DOUBLER, DOUBLER, INCREMENTER, ECHO], 7, (33, "incremented")),
    ([ACTOR, DOUBLER, NULL, INCREMENTER], 1, (7, "incremented")),
])
def test_multi_actor_pipeline(publish, ends, route, start, final):
    sent = publish({"value": start}, route)
    msg = ends.one(sent["id"])
    assert_routed_to_end(msg, sent)
    assert (msg["payload"]["value"], msg["payload"]["operation"]) == final
    if NULL in route:
        assert msg["payload"]["list_with_nulls"] == [1, None, 3, None, 5]


# ---- malformed envelopes -------------------------------------------------------------

def malformed_bodies(marker):
    """(description, raw body) pairs that are not valid envelopes."""
    return [
        ("not JSON", f"this is not json {marker} {{"),
        ("JSON array", json.dumps(["array", marker])),
        ("JSON string", json.dumps("just a string " + marker)),
        ("missing route", json.dumps({"id": marker, "payload": {"m": marker}})),
        ("missing payload", json.dumps({"id": marker, "route": {"actors": [ACTOR], "current": 0}})),
        ("current out of range", json.dumps(
            {"id": marker, "payload": {"m": marker}, "route": {"actors": [ACTOR], "current": 5}})),
        ("negative current", json.dumps(
            {"id": marker, "payload": {"m": marker}, "route": {"actors": [ACTOR], "current": -1}})),
        ("route not an object", json.dumps(
            {"id": marker, "payload": {"m": marker}, "route": "test-actor-queue"})),
        ("actors not a list", json.dumps(
            {"id": marker, "payload": {"m": marker}, "route": {"actors": "x", "current": 0}})),
    ]


def test_malformed_envelopes_go_to_error_end(broker, ends):
    """Bad bodies published to several scenario queues reach error-end as
    msg_parsing_error with the raw body in payload.original_message; every sidecar
    keeps running and still handles a normal message afterwards."""
    queues = [ECHO, ACTOR, DOUBLER, ERROR]
    sent = {}  # marker -> (queue, description, body)
    for q in queues:
        for desc, body in malformed_bodies("@@"):
            marker = uuid.uuid4().hex
            body = body.replace("@@", marker)
            sent[marker] = (q, desc, body)
            broker.publish_raw(q, body)

    def marker_of(m):
        p = m.get("payload")
        raw = p.get("original_message") if isinstance(p, dict) else None
        if not isinstance(raw, str):
            raw = json.dumps(m)
        return next((k for k in sent if k in raw), None)

    got = ends.wait(lambda m: marker_of(m) is not None, error=len(sent), timeout=20, settle=1.0)
    problems = []
    for m in got["happy"]:
        q, desc, _ = sent[marker_of(m)]
        problems.append(f"{desc} via {q}: went to happy-end: {m!r:.300}")
    seen = {}
    for m in got["error"]:
        k = marker_of(m)
        q, desc, body = sent[k]
        seen[k] = seen.get(k, 0) + 1
        p = m.get("payload")
        if m.get("error") != "msg_parsing_error":
            problems.append(f"{desc} via {q}: top-level error {m.get('error')!r}")
        if not isinstance(p, dict) or p.get("error") != "msg_parsing_error":
            problems.append(f"{desc} via {q}: payload.error wrong: {p!r:.300}")
            continue
        if p.get("original_message") != body:
            problems.append(f"{desc} via {q}: payload.original_message {p.get('original_message')!r:.200}"
                            f" != raw body {body!r:.200}")
        d = p.get("details")
        if not isinstance(d, dict) or not isinstance(d.get("message"), str) or not d["message"]:
            problems.append(f"{desc} via {q}: payload.details.message missing: {p!r:.300}")
    for k, (q, desc, _) in sent.items():
        n = seen.get(k, 0)
        if n != 1:
            problems.append(f"{desc} via {q}: {n} messages at error-end (want 1)")
    assert not problems, "\n".join(problems)

    assert not dead_processes(), f"processes died: {dead_processes()}"
    ok = {}
    for q in queues:
        env_id = unique_id("after-bad")
        payload = {"value": 1, "should_fail": False}
        broker.publish_envelope({"id": env_id, "payload": payload,
                                 "route": {"actors": [q], "current": 0}})
        ok[env_id] = q
    got = ends.wait(lambda m: m.get("id") in ok, happy=len(ok))
    assert not got["error"], got["error"]
    assert sorted(m["id"] for m in got["happy"]) == sorted(ok), got["happy"]


def test_route_naming_another_actor_is_processed(publish, ends, broker):
    """actors[current] names a different actor than the queue it was published to:
    processed anyway (a warning in the reference)."""
    id_ = unique_id()
    env = {"id": id_, "payload": {"value": 2}, "route": {"actors": [INCREMENTER], "current": 0}}
    broker.publish_envelope(env, routing_key=DOUBLER)
    msg = ends.one(id_)
    assert msg["payload"] == {"value": 4, "operation": "doubled"}
    assert msg["route"] == {"actors": [INCREMENTER], "current": 1}


# ---- concurrency --------------------------------------------------------------------

def test_concurrent_200_envelopes(broker, ends):
    """200 envelopes published at once over several actors and routes all arrive
    exactly where they should: matched by id, no duplicates, nothing missing."""
    run = uuid.uuid4().hex[:8]
    kinds = [
        ([ACTOR], "happy", lambda v: {"value": v}),
        ([DOUBLER], "happy", lambda v: {"value": v * 2, "operation": "doubled"}),
        ([INCREMENTER], "happy", lambda v: {"value": v + 5, "operation": "incremented"}),
        ([DOUBLER, INCREMENTER], "happy", lambda v: {"value": v * 2 + 5, "operation": "incremented"}),
        ([ECHO, ACTOR], "happy", lambda v: {"value": v}),
        ([ERROR], "error", None),
        ([INCREMENTER, ERROR], "error", None),
        ([NULL], "happy", lambda v: {"value": v, "null_field": None,
                                     "list_with_nulls": [1, None, 3, None, 5],
                                     "nested": {"value_null": None, "value_int": 123}}),
    ]
    expected = {}
    bodies = []
    for i in range(200):
        route, where, fn = kinds[i % len(kinds)]
        id_ = f"conc-{run}-{i:03d}"
        expected[id_] = (route, where, fn, i)
        bodies.append((route[0], json.dumps(
            {"id": id_, "payload": {"value": i}, "route": {"actors": route, "current": 0}})))
    for q, body in bodies:
        broker.publish_raw(q, body)

    n_happy = sum(1 for v in expected.values() if v[1] == "happy")
    got = ends.wait(lambda m: m.get("id") in expected, happy=n_happy,
                    error=len(expected) - n_happy, timeout=60, settle=1.0)
    problems = []
    counts = {}
    for where in ("happy", "error"):
        for m in got[where]:
            id_ = m["id"]
            counts[id_] = counts.get(id_, 0) + 1
            route, want_where, fn, i = expected[id_]
            if where != want_where:
                problems.append(f"{id_} {route}: at {where}-end, want {want_where}-end")
            elif where == "happy":
                if m["payload"] != fn(i):
                    problems.append(f"{id_} {route}: payload {m['payload']} != {fn(i)}")
                if m["route"] != {"actors": route, "current": len(route)}:
                    problems.append(f"{id_}: route {m['route']}")
            elif m.get("error") != "processing_error":
                problems.append(f"{id_}: error {m.get('error')!r}")
    missing = sorted(k for k in expected if k not in counts)
    dups = sorted(k for k, n in counts.items() if n > 1)
    if missing:
        problems.append(f"{len(missing)} missing: {missing[:20]}")
    if dups:
        problems.append(f"{len(dups)} duplicated: {dups[:20]}")
    assert not problems, "\n".join(problems[:50])


# ---- broker restart ----------------------------------------------------------------------

def test_broker_restart_sidecars_reconnect(broker, ends):
    """The RabbitMQ application stops and starts again (stop_app/start_app): every
    sidecar reconnects, consumes again, and a pipeline across several actors works."""
    broker_dir = os.environ.get("ASYA_TEST_BROKER_DIR")
    broker_sh = os.environ.get("ASYA_TEST_BROKER_SH")
    if not broker_dir or not broker_sh:
        pytest.skip("needs run.sh's private broker (ASYA_TEST_BROKER_DIR)")
    broker.close()
    subprocess.run(["bash", broker_sh, "stop_app", broker_dir], check=True, timeout=60)
    time.sleep(2)
    subprocess.run(["bash", broker_sh, "start_app", broker_dir], check=True, timeout=90)

    queues = [q for q, role, _ in read_pids() if role == "sidecar"]
    missing = broker.wait_consumers(queues, timeout=60)
    assert not missing, f"no consumer again after the broker restart on: {missing}"
    id_ = unique_id("restart")
    broker.publish_envelope({"id": id_, "payload": {"value": 1},
                             "route": {"actors": [DOUBLER, ACTOR, INCREMENTER], "current": 0}})
    msg = ends.one(id_, timeout=30)
    assert msg["payload"] == {"value": 7, "operation": "incremented"}


# ---- last: nothing crashed -------------------------------------------------------------

def test_zz_every_runtime_and_sidecar_still_running():
    """After the whole suite (errors, OOMs, timeouts, malformed input), every
    runtime and sidecar process is still alive."""
    assert not dead_processes(), f"processes died: {dead_processes()}"
