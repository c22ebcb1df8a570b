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
Every request is appended as a JSON line to --log (when given).
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


def answer(envelope):
    payload = envelope.get("payload")
    route = envelope.get("route")
    op = payload.get("op", "echo") if isinstance(payload, dict) else "echo"
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


def serve(conn, log_path, lock):
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
        if op == "garbage":
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
    args = ap.parse_args()
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.socket)
    srv.listen(64)
    lock = threading.Lock()
    print("ready", flush=True)
    try:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn, args.log, lock), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            os.unlink(args.socket)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
