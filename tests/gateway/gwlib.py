"""Helpers for the gateway tests: an SSE reader over `requests` streaming, and
the reports sidecars and end actors send (progress, heartbeat, final).

    s = SSE(gw.url + f"/jobs/{jid}/stream")
    ev = s.next_event(timeout=5)        # Event(event="status", data="Running", id=None)
    evs = s.read_until_eof(timeout=10)  # every item until the server closes the stream
    s.close()

The reader runs in a thread; items (events, comments, the end) arrive in a queue
with the time they were read, so tests can check keepalive intervals too.
"""

import datetime
import json
import queue
import re
import socket
import threading
import time
from typing import Any, Dict, List, Optional

import requests

RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]00:00)$")


def parse_time(s: str) -> datetime.datetime:
    """An RFC 3339 UTC time (as the gateway writes them) as an aware datetime."""
    assert isinstance(s, str) and RFC3339_RE.match(s), f"not an RFC 3339 UTC time: {s!r}"
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        frac, tz = rest[:-6], rest[-6:]
        s = f"{head}.{(frac + '000000')[:6]}{tz}"
    return datetime.datetime.fromisoformat(s)


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Event:
    def __init__(self, event: str, data: str, id: Optional[str], t: float):
        self.event = event
        self.data = data
        self.id = id
        self.t = t

    def json(self) -> Any:
        return json.loads(self.data)

    def __repr__(self):
        return f"Event({self.event!r}, {self.data[:300]!r}, id={self.id!r})"


class Comment:
    def __init__(self, text: str, t: float):
        self.text = text
        self.t = t

    def __repr__(self):
        return f"Comment({self.text!r})"


class EOF:
    def __init__(self, t: float, error: Optional[BaseException] = None):
        self.t = t
        self.error = error

    def __repr__(self):
        return f"EOF(error={self.error!r})"


class SSE:
    """GET an SSE stream; parse it in a background thread (per the WHATWG rules:
    "field: value" lines, ":" comments, a blank line ends an event)."""

    def __init__(self, url: str, last_event_id: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None, connect_timeout: float = 5.0):
        h = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            h["Last-Event-ID"] = str(last_event_id)
        h.update(headers or {})
        self.t0 = time.monotonic()
        self.resp = requests.get(url, headers=h, stream=True, timeout=(connect_timeout, 120))
        self.status_code = self.resp.status_code
        self.headers = self.resp.headers
        self.items: "queue.Queue" = queue.Queue()
        self.seen: List[Any] = []  # everything taken from the queue so far
        self._closed = False
        self.ended = False
        if self.status_code == 200:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        else:
            self.body = self.resp.text
            self.ended = True

    def _sock(self) -> Optional[socket.socket]:
        try:
            return self.resp.raw._fp.fp.raw._sock  # urllib3 1.26 / http.client internals
        except AttributeError:
            return None

    def _run(self) -> None:
        chunked = "chunked" in self.resp.headers.get("Transfer-Encoding", "").lower()
        buf = b""
        event, data, last_id = "", [], None
        err = None
        try:
            for chunk in self.resp.iter_content(chunk_size=None if chunked else 1):
                if not chunk:
                    continue
                buf += chunk
                while True:
                    m = re.search(rb"\r\n|\n|\r", buf)
                    if not m:
                        break
                    if m.group() == b"\r" and m.end() == len(buf):
                        break  # maybe the \r of a \r\n not yet read
                    line = buf[:m.start()].decode("utf-8", "replace")
                    buf = buf[m.end():]
                    now = time.monotonic()
                    if line == "":
                        if data or event:
                            self.items.put(Event(event or "message", "\n".join(data), last_id, now))
                        event, data = "", []
                        continue
                    if line.startswith(":"):
                        text = line[1:]
                        self.items.put(Comment(text[1:] if text.startswith(" ") else text, now))
                        continue
                    field, _, value = line.partition(":")
                    if value.startswith(" "):
                        value = value[1:]
                    if field == "event":
                        event = value
                    elif field == "data":
                        data.append(value)
                    elif field == "id":
                        last_id = value
        except Exception as exc:  # noqa: BLE001 - reported as the end of the stream
            if not self._closed:
                err = exc
        self.items.put(EOF(time.monotonic(), err))

    def next(self, timeout: float = 10.0):
        """The next item (Event, Comment or EOF); AssertionError after timeout."""
        if self.ended and self.items.empty():
            return EOF(time.monotonic())
        try:
            it = self.items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"SSE: nothing within {timeout}s; so far {self.seen}") from None
        self.seen.append(it)
        if isinstance(it, EOF):
            self.ended = True
        return it

    def next_event(self, timeout: float = 10.0) -> Event:
        """The next event, skipping comments; AssertionError at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            it = self.next(max(0.01, deadline - time.monotonic()))
            if isinstance(it, Event):
                return it
            if isinstance(it, EOF):
                raise AssertionError(f"SSE ended ({it.error!r}) while waiting for an event; "
                                     f"so far {self.seen}")

    def events_until(self, pred, timeout: float = 10.0) -> List[Event]:
        """Events up to and including the first for which pred(event) is true."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_event(max(0.01, deadline - time.monotonic()))
            out.append(ev)
            if pred(ev):
                return out

    def read_until_eof(self, timeout: float = 10.0) -> List[Any]:
        """Every item up to the end of the stream (EOF included)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            it = self.next(max(0.01, deadline - time.monotonic()))
            out.append(it)
            if isinstance(it, EOF):
                return out

    def expect_eof(self, timeout: float = 5.0) -> List[Any]:
        """Items until EOF (comments allowed, events collected)."""
        return self.read_until_eof(timeout)

    def close(self) -> None:
        self._closed = True
        s = self._sock()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.resp.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def updates(items) -> List[Dict[str, Any]]:
    """The JSON of the `update` events among items."""
    return [it.json() for it in items if isinstance(it, Event) and it.event == "update"]


# ---- reports --------------------------------------------------------------------------


def post_progress(gw, job_id: str, step: str, step_index: int, total_steps: int, status: str,
                  actor_name: Optional[str] = None, message: Optional[str] = None, **extra):
    body = {"step": step, "step_index": step_index, "total_steps": total_steps,
            "status": status, "actor_name": actor_name or step}
    if message is not None:
        body["message"] = message
    body.update(extra)
    return gw.post(f"/jobs/{job_id}/progress", body)


def post_heartbeat(gw, job_id: str, actor_name: str, status: str, message: str = ""):
    return gw.post(f"/jobs/{job_id}/heartbeat",
                   {"actor_name": actor_name, "status": status, "message": message})


def post_final(gw, job_id: str, status: str, result: Any = None, error: Optional[str] = None,
               **extra):
    body: Dict[str, Any] = {"job_id": job_id, "status": status}
    if result is not None:
        body["result"] = result
    if error is not None:
        body["error"] = error
    body.update(extra)
    return gw.post(f"/jobs/{job_id}/final", body)


def percent(step_index: int, total: int, status: str) -> float:
    """GATEWAY.md's arithmetic: (index*100 + w) / total, w = 10/50/100, clamped."""
    if total <= 0:
        return 0.0
    w = {"received": 10, "processing": 50, "completed": 100}[status]
    return max(0.0, min(100.0, (step_index * 100 + w) / total))


def close_to(a: float, b: float, tol: float = 0.011) -> bool:
    """Percent equality up to the 2-decimal rounding of numeric(5,2)."""
    return abs(float(a) - float(b)) <= tol


def metric_value(text: str, name: str, labels: Optional[Dict[str, str]] = None) -> Optional[float]:
    """The value of one Prometheus series (labels must match exactly), or None."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if got == (labels or {}):
            return float(m.group(4))
    return None
