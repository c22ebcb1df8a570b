"""Helpers shared by the pytest suites that talk to a private RabbitMQ.

Configuration comes from the environment (run.sh sets it):

  ASYA_TEST_AMQP_URL   amqp://guest:guest@127.0.0.1:5673/   (or ASYA_RABBITMQ_URL)
  ASYA_TEST_MGMT_URL   http://127.0.0.1:15673               (management API base)
  ASYA_TEST_EXCHANGE   asya
  ASYA_TEST_MGMT_USER / ASYA_TEST_MGMT_PASSWORD   guest / guest

Typical use:

    from asya_testlib import Broker, envelope
    b = Broker()
    b.publish_envelope(envelope({"x": 1}, ["test-echo-queue"], id="t-1"))
    [msg] = b.collect("happy-end", 1, timeout=10, match=lambda m: m.get("id") == "t-1")
"""

import json
import logging
import os
import time
import uuid
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import quote

import pika
import requests

log = logging.getLogger("asya_testlib")


def amqp_url() -> str:
    return os.environ.get(
        "ASYA_TEST_AMQP_URL",
        os.environ.get("ASYA_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5673/"),
    )


def mgmt_url() -> str:
    return os.environ.get("ASYA_TEST_MGMT_URL", "http://127.0.0.1:15673").rstrip("/")


def exchange_name() -> str:
    return os.environ.get("ASYA_TEST_EXCHANGE", os.environ.get("ASYA_RABBITMQ_EXCHANGE", "asya"))


def mgmt_auth():
    return (
        os.environ.get("ASYA_TEST_MGMT_USER", "guest"),
        os.environ.get("ASYA_TEST_MGMT_PASSWORD", "guest"),
    )


def unique_id(prefix: str = "t") -> str:
    """A fresh envelope id, so concurrent tests can filter their own messages."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def envelope(payload: Any, actors: List[str], current: int = 0, id: Optional[str] = None,
             **extra) -> Dict[str, Any]:
    """Build an envelope dict; extra keyword arguments become top-level fields."""
    env: Dict[str, Any] = {"payload": payload, "route": {"actors": list(actors), "current": current}}
    if id is not None:
        env["id"] = id
    env.update(extra)
    return env


class Broker:
    """One blocking pika connection plus management-API helpers.

    Not thread-safe: use one Broker per thread.
    """

    def __init__(self, url: Optional[str] = None, exchange: Optional[str] = None):
        self.url = url or amqp_url()
        self.exchange = exchange if exchange is not None else exchange_name()
        self._conn: Optional[pika.BlockingConnection] = None
        self._ch = None

    # ---- connection ---------------------------------------------------------

    @property
    def channel(self):
        if self._conn is None or self._conn.is_closed or self._ch is None or self._ch.is_closed:
            self.close()
            params = pika.URLParameters(self.url)
            params.heartbeat = 0
            params.blocked_connection_timeout = 30
            self._conn = pika.BlockingConnection(params)
            self._ch = self._conn.channel()
            self._ch.confirm_delivery()
        return self._ch

    def close(self) -> None:
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except Exception:  # noqa: BLE001 - closing best effort
            pass
        self._conn = None
        self._ch = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- publish ------------------------------------------------------------

    def publish_raw(self, routing_key: str, body, headers: Optional[dict] = None,
                    exchange: Optional[str] = None) -> None:
        """Publish bytes/str as-is (persistent, confirmed by the broker)."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                     headers=headers)
        self.channel.basic_publish(
            exchange=self.exchange if exchange is None else exchange,
            routing_key=routing_key, body=body, properties=props, mandatory=True)

    def publish_envelope(self, env: Dict[str, Any], routing_key: Optional[str] = None) -> None:
        """Publish an envelope to the queue of its current actor (or routing_key)."""
        if routing_key is None:
            route = env["route"]
            actors = route.get("actors", route.get("steps"))
            routing_key = actors[route.get("current", 0)]
        log.debug("publish to %s: %s", routing_key, str(env)[:300])
        self.publish_raw(routing_key, json.dumps(env))

    def publish(self, payload: Any, actors: List[str], current: int = 0,
                id: Optional[str] = None, **extra) -> Dict[str, Any]:
        """Build an envelope, publish it to actors[current], and return it."""
        env = envelope(payload, actors, current, id=id if id is not None else unique_id(), **extra)
        self.publish_envelope(env)
        return env

    # ---- consume ------------------------------------------------------------

    def get_raw(self, queue: str) -> Optional[bytes]:
        """basic_get one message (auto-ack); None if the queue is empty."""
        method, _props, body = self.channel.basic_get(queue=queue, auto_ack=True)
        return None if method is None else body

    def collect(self, queue: str, count: int, timeout: float = 10.0,
                match: Optional[Callable[[Dict[str, Any]], bool]] = None,
                settle: float = 0.0) -> List[Dict[str, Any]]:
        """Read messages from queue until `count` matching ones arrived or timeout.

        Messages that don't satisfy `match` are consumed and dropped (tests filter by
        id; leftovers of earlier tests must not confuse later ones).  After `count`
        messages arrived, keep reading for `settle` seconds more so that extra
        (unexpected) matching messages show up in the result too.  Non-JSON bodies
        are returned as {"__raw__": body}.
        """
        got: List[Dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while True:
            now = time.monotonic()
            if len(got) >= count and settle_until is None:
                settle_until = now + settle
            if settle_until is not None and now >= settle_until:
                break
            if now >= deadline:
                break
            body = self.get_raw(queue)
            if body is None:
                time.sleep(0.05)
                continue
            try:
                msg = json.loads(body)
            except ValueError:
                msg = {"__raw__": body}
            if match is None or (isinstance(msg, dict) and match(msg)):
                got.append(msg)
            else:
                log.debug("collect(%s): skipping %s", queue, str(msg)[:200])
        log.debug("collect(%s): %d/%d messages", queue, len(got), count)
        return got

    def collect_ids(self, queue: str, ids, timeout: float = 10.0,
                    settle: float = 0.0) -> List[Dict[str, Any]]:
        """Collect the messages whose `id` is in `ids` (one expected per id)."""
        ids = set(ids)
        return self.collect(queue, len(ids), timeout=timeout,
                            match=lambda m: m.get("id") in ids, settle=settle)

    def purge(self, *queues: str) -> None:
        for q in queues:
            self.channel.queue_purge(queue=q)

    # ---- management API -----------------------------------------------------

    @staticmethod
    def mgmt_get(path: str, timeout: float = 5.0):
        r = requests.get(mgmt_url() + "/api/" + path.lstrip("/"), auth=mgmt_auth(),
                         timeout=timeout)
        r.raise_for_status()
        return r.json()

    @classmethod
    def queue_info(cls, queue: str, vhost: str = "/") -> Dict[str, Any]:
        return cls.mgmt_get(f"queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")

    def queue_depth(self, queue: str) -> int:
        """Ready + unacked messages, exactly (passive declare, not the stats cache)."""
        ok = self.channel.queue_declare(queue=queue, passive=True)
        return ok.method.message_count

    @classmethod
    def consumers(cls, queue: str) -> int:
        """Consumer count from the management API (refreshed every few seconds)."""
        return int(cls.queue_info(queue).get("consumers", 0))

    def consumers_now(self, queue: str) -> int:
        """Consumer count from a passive declare (immediate)."""
        ok = self.channel.queue_declare(queue=queue, passive=True)
        return ok.method.consumer_count

    def wait_consumers(self, queues, timeout: float = 30.0) -> List[str]:
        """Wait until every queue has a consumer; return those still without one."""
        deadline = time.monotonic() + timeout
        missing = list(queues)
        while missing and time.monotonic() < deadline:
            missing = [q for q in missing if self.consumers_now(q) < 1]
            if missing:
                time.sleep(0.2)
        return missing
