#!/usr/bin/python3
"""A stand-in for asya-runtime (ASYA_RUNTIME_BIN) that misbehaves on purpose,
so the tests can reach asya-invoke's "no usable answer" exit status, which the
real runtime never gives.  FAKE_MODE selects what it does with the request:
  close         read it and close the connection without answering
  die           read it and exit 9
  garbage       answer a frame that is not JSON
  unknown_code  answer an error with a code outside the protocol
  env           answer [{"payload": <its ASYA_* environment>, "route": ...}]
"""
import json
import os
import signal
import socket
import struct
import sys


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


def main():
    # asya-invoke sends SIGTERM once it has the answer: ignore it and leave
    # with os._exit below, before the interpreter's finalisation, so the exit
    # status is always 0.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    mode = os.environ.get("FAKE_MODE", "close")
    path = os.environ["ASYA_SOCKET_PATH"]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    open(os.environ["ASYA_READY_FILE"], "w").close()
    conn, _ = srv.accept()
    n = struct.unpack(">I", recv_exact(conn, 4))[0]
    request = json.loads(recv_exact(conn, n))
    if mode == "die":
        os._exit(9)
    if mode == "garbage":
        body = b"this is not json"
    elif mode == "unknown_code":
        body = json.dumps([{"error": "weird_error",
                            "details": {"message": "m", "type": "T", "traceback": ""}}]).encode()
    elif mode == "env":
        env = {k: v for k, v in os.environ.items() if k.startswith("ASYA_")}
        body = json.dumps([{"payload": env, "route": request["route"]}]).encode()
    else:
        body = None
    if body is not None:
        conn.sendall(struct.pack(">I", len(body)) + body)
    conn.close()
    srv.close()
    os.unlink(path)
    os.unlink(os.environ["ASYA_READY_FILE"])
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
