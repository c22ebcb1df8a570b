#!/usr/bin/env python3
"""Publish the demo's envelopes and print where each one ended up."""
import json
import sys
import time
import uuid

import pika

URL = sys.argv[1]
RUN = uuid.uuid4().hex[:6]
PIPELINE = ["greeter", "doubler", "incrementer"]

cases = [
    ("pipeline", {"name": "Ada", "value": 1}, PIPELINE),
    ("pipeline", {"name": "Grace", "value": 20}, PIPELINE),
    ("short route", {"value": 7}, ["doubler"]),
    ("handler error", {"value": "not a number"}, ["doubler", "incrementer"]),
]


def main():
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    ch.exchange_declare("asya", "topic", durable=True)
    # Where each message ends up: a queue of our own bound to each end queue's
    # routing key gets a copy of everything the sidecars send there, whether or
    # not end actors (compose/: happy-end and error-end reporting to the gateway)
    # consume the end queues themselves.
    taps = {}
    for q in ("happy-end", "error-end"):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, "asya", q)
        taps[q] = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        ch.queue_bind(taps[q], "asya", q)
    expected = {}
    for n, (label, payload, route) in enumerate(cases, 1):
        mid = f"demo-{RUN}-{n}"
        env = {"id": mid, "route": {"actors": route, "current": 0}, "payload": payload}
        ch.basic_publish("asya", route[0], json.dumps(env),
                         pika.BasicProperties(content_type="application/json", delivery_mode=2))
        expected[mid] = (label, payload, route)
        print(f"   sent {mid}: {label:14} route={'->'.join(route):32} payload={json.dumps(payload)}")
    bad = "this is not JSON {"
    ch.basic_publish("asya", "doubler", bad)
    print(f"   sent a malformed body to doubler: {bad!r}")

    seen, malformed = {}, None
    deadline = time.time() + 30
    while time.time() < deadline and (len(seen) < len(expected) or malformed is None):
        for q in ("happy-end", "error-end"):
            method, _, body = ch.basic_get(taps[q], auto_ack=True)
            if method is None:
                continue
            msg = json.loads(body)
            if msg.get("id") in expected:
                seen[msg["id"]] = (q, msg)
            elif "original_message" in (msg.get("payload") or {}):
                malformed = (q, msg)
        time.sleep(0.05)

    print("\n== what happened to each message")
    ok = True
    for mid, (label, payload, route) in expected.items():
        if mid not in seen:
            print(f"   {mid}: LOST (nothing arrived within 30 s)")
            ok = False
            continue
        q, msg = seen[mid]
        if q == "happy-end":
            print(f"   {mid}: {q:9} after {msg['route']['current']} actor(s) -> payload {json.dumps(msg['payload'])}")
        else:
            d = msg["payload"]["details"]
            print(f"   {mid}: {q:9} {msg['error']} at {d.get('actor')}: {d.get('type')}: {d.get('message')}")
    if malformed:
        q, msg = malformed
        print(f"   malformed: {q:9} {msg['error']}: {msg['payload']['details']['message']}")
    else:
        print("   malformed: LOST")
        ok = False
    conn.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
