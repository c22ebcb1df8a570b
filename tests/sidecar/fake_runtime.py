#!/usr/bin/env python3
"""A stand-in for Asya's reference Python runtime, for sidecar tests.

It speaks the protocol exactly as DESIGN.md describes and as the reference
runtime does: one request frame per connection (4-byte big-endian length +
UTF-8 JSON), one answer frame, then it CLOSES the connection; results carry
`route` with `current` unchanged.

The payload steers it, so one process serves every test:
  {"op": "echo"}                  -> [{"payload": payload, "route": route}]
  {"op": "fanout", "count": n}    -> n results {"index": i}
  {"op": "empty"}                 -> []
  {"op": "null"}                  -> null
  {"op": "error"}                 -> processing_error ValueError
  {"op": "sleep", "seconds": s}   -> sleeps, then echo
  {"op": "advance"}               -> echo with route.current already advanced
  {"op": "big", "bytes": n}       -> echo with payload.data = "X" * n (oversized answers)
  {"op": "garbage"}               -> a frame holding "not json"
  {"op": "huge_len"}              -> a header announcing 4 GiB - 1, then hangs
  {"op": "half"}                  -> half a frame, then hangs
  {"op": "close"}                 -> closes without answering
  {"op": "die"}                   -> the whole process exits (runtime crash)
  {"op": "hang"}                  -> never answers (holds the connection open)
Every request is appended as a JSON line to --log (when given).

Options (all optional; the defaults are the behaviour above):
  --echo-only          ignore "op": answer every request with an echo (a fast runtime)
  --backlog N          listen(N) instead of listen(64)
  --accept-delay S     listen at once but accept nothing for S seconds
  --accept-gate PATH   listen at once but accept nothing until PATH exists
"""
import argparse
import json
import os
import socket
import struct
import sys
import threading
import time


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def send_frame(conn, obj_or_bytes):
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)


def wait_path(path, limit):
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def answer(envelope, echo_only=False):
    payload = envelope.get("payload")
    route = envelope.get("route")
    op = payload.get("op", "echo") if isinstance(payload, dict) else "echo"
    if echo_only:
        return [{"payload": payload, "route": route}]
    if op == "fanout":
        return [{"payload": {"index": i}, "route": route} for i in range(int(payload.get("count", 3)))]
    if op == "empty":
        return []
    if op == "null":
        return None
    if op == "error":
        return [{"error": "processing_error",
                 "details": {"message": "fake failure", "type": "ValueError",
                             "traceback": "Traceback (most recent call last): ..."}}]
    if op == "sleep":
        time.sleep(float(payload.get("seconds", 1)))
    if op == "big":
        payload = dict(payload, data="X" * int(payload.get("bytes", 1 << 20)))
    if op == "advance":
        route = dict(route)
        route["current"] = route["current"] + 1
    return [{"payload": payload, "route": route}]


def serve(conn, log_path, lock, echo_only=False):
    with conn:
        header = recv_exact(conn, 4)
        if header is None:
            return
        (length,) = struct.unpack(">I", header)
        body = recv_exact(conn, length)
        if body is None:
            return
        try:
            envelope = json.loads(body)
        except ValueError as exc:
            send_frame(conn, [{"error": "msg_parsing_error",
                               "details": {"message": str(exc), "type": "JSONDecodeError"}}])
            return
        if log_path:
            with lock, open(log_path, "a") as f:
                f.write(json.dumps(envelope) + "\n")
        payload = envelope.get("payload")
        op = payload.get("op") if isinstance(payload, dict) else None
        if echo_only:
            send_frame(conn, answer(envelope, echo_only=True))
        elif op == "hang":
            time.sleep(3600)
        elif op == "garbage":
            send_frame(conn, b"not json")
        elif op == "huge_len":
            conn.sendall(struct.pack(">I", 0xFFFFFFFF))
            time.sleep(3600)
        elif op == "half":
            conn.sendall(struct.pack(">I", 100) + b'[{"payload"')
            time.sleep(3600)
        elif op == "close":
            return
        elif op == "die":
            os._exit(7)
        else:
            send_frame(conn, answer(envelope))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--log")
    ap.add_argument("--echo-only", action="store_true")
    ap.add_argument("--backlog", type=int, default=64)
    ap.add_argument("--accept-delay", type=float, default=0.0)
    ap.add_argument("--accept-gate")
    args = ap.parse_args()
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.socket)
    srv.listen(args.backlog)
    lock = threading.Lock()
    print("ready", flush=True)
    try:
        if args.accept_delay > 0:
            time.sleep(args.accept_delay)
        if args.accept_gate:
            wait_path(args.accept_gate, limit=3600)
        if args.accept_delay > 0 or args.accept_gate:
            print("accepting", flush=True)
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn, args.log, lock, args.echo_only),
                             daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            os.unlink(args.socket)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
