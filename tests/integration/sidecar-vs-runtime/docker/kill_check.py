#!/usr/bin/env python3
"""Kill-a-runtime-container check of the compose seed suite (run-compose.sh).

run-compose.sh drives it from the tester container around a `docker kill` of one
runtime container:

    kill_check.py publish QUEUE N RUN    purge the end queues, publish N slow envelopes
                                         (echo_handler waits 0.5 s when the payload has
                                         "message") with ids kc-RUN-<i>
    kill_check.py paused QUEUE           the runtime is dead: within 20 s the queue has
                                         no consumer (the sidecar paused) and still holds
                                         messages (nothing burnt)
    kill_check.py collect QUEUE N RUN    after the runtime came back: every envelope
                                         reaches happy-end with the handler's answer,
                                         none reaches error-end
    kill_check.py pipeline RUN           after a RabbitMQ restart: an envelope routed
                                         doubler -> actor -> incrementer arrives at
                                         happy-end as {"value": 7, ...}

Exit status 0 when the step's expectation holds, 1 otherwise (with the reason).
"""

import json
import sys
import time

from asya_testlib import Broker, envelope


def publish(b: Broker, queue: str, n: int, run: str) -> int:
    b.purge("happy-end", "error-end")
    for i in range(n):
        b.publish_envelope(envelope({"message": f"kill-check {i}"}, [queue], id=f"kc-{run}-{i}"))
    print(f"kill_check: published {n} envelopes kc-{run}-0..{n - 1} to {queue}")
    return 0


def paused(b: Broker, queue: str) -> int:
    deadline = time.monotonic() + 20
    consumers = depth = None
    while time.monotonic() < deadline:
        consumers, depth = b.consumers_now(queue), b.queue_depth(queue)
        if consumers == 0:
            break
        time.sleep(0.2)
    if consumers != 0:
        print(f"kill_check: {queue} still has {consumers} consumer(s) 20 s after its runtime died")
        return 1
    if depth == 0:
        print(f"kill_check: {queue} is empty while its runtime is dead: messages were burnt")
        return 1
    errors = b.queue_depth("error-end")
    if errors:
        print(f"kill_check: {errors} message(s) reached error-end while the runtime was dead")
        return 1
    print(f"kill_check: sidecar of {queue} paused (no consumer), {depth} message(s) waiting")
    return 0


def collect(b: Broker, queue: str, n: int, run: str) -> int:
    want = {f"kc-{run}-{i}": f"kill-check {i}" for i in range(n)}
    seen = {}
    dups = 0
    errors = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(seen) < n:
        idle = True
        for q in ("happy-end", "error-end"):
            body = b.get_raw(q)
            if body is None:
                continue
            idle = False
            msg = json.loads(body)
            mid = msg.get("id")
            if mid not in want:
                continue
            if q == "error-end":
                errors.append(msg)
            elif mid in seen:
                dups += 1
            else:
                seen[mid] = msg
        if idle:
            time.sleep(0.05)
    # Anything late at error-end?
    time.sleep(1)
    while True:
        body = b.get_raw("error-end")
        if body is None:
            break
        msg = json.loads(body)
        if msg.get("id") in want:
            errors.append(msg)
    rc = 0
    if errors:
        rc = 1
        for m in errors[:5]:
            print(f"kill_check: at error-end: {json.dumps(m)[:600]}")
        print(f"kill_check: {len(errors)} envelope(s) reached error-end because of the kill")
    missing = sorted(set(want) - set(seen))
    if missing:
        rc = 1
        print(f"kill_check: {len(missing)} envelope(s) never reached happy-end: {missing[:10]}")
    wrong = [m for mid, m in seen.items() if m.get("payload") != {"echoed": want[mid]}]
    if wrong:
        rc = 1
        print(f"kill_check: unexpected payloads: {json.dumps(wrong[:3])[:600]}")
    if rc == 0:
        print(f"kill_check: all {n} envelopes reached happy-end with the handler's answer, "
              f"none at error-end ({dups} redelivered duplicate(s))")
    return rc


def pipeline(b: Broker, run: str) -> int:
    mid = f"rs-{run}"
    b.purge("happy-end", "error-end")
    b.publish_envelope(envelope({"value": 1},
                                ["test-doubler-queue", "test-actor-queue", "test-incrementer-queue"],
                                id=mid))
    got = b.collect_ids("happy-end", [mid], timeout=60)
    if len(got) != 1 or got[0].get("payload") != {"value": 7, "operation": "incremented"}:
        errors = b.collect_ids("error-end", [mid], timeout=1)
        print(f"kill_check: pipeline after the broker restart: happy-end {got!r:.600}, "
              f"error-end {errors!r:.600}")
        return 1
    print("kill_check: pipeline doubler -> actor -> incrementer works after the broker restart")
    return 0


def main(argv) -> int:
    step, queue = argv[1], argv[2]
    with Broker() as b:
        if step == "pipeline":
            return pipeline(b, queue)
        if step == "publish":
            return publish(b, queue, int(argv[3]), argv[4])
        if step == "paused":
            return paused(b, queue)
        if step == "collect":
            return collect(b, queue, int(argv[3]), argv[4])
    print(f"kill_check: unknown step {step}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
