#!/usr/bin/env python3
"""Per-message cost of the asya-runtime supervisor (docs/performance.md, item 4).

Starts asya-runtime with test_handlers.so:echo_handler and sends N echo
requests on one kept-open connection, then SIGTERMs it.

  supervisor_cost.py latency [N]      p50/p90 round trip of one request (us)
  supervisor_cost.py callgrind N1 N2  supervisor instructions per message:
        (Ir(N2) - Ir(N1)) / (N2 - N1), with valgrind --tool=callgrind
        --trace-children=no on the supervisor only (workers run natively),
        so start-up and shutdown cancel out.

Not part of the test suite: a light tool (one client, one worker).
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("ASYA_BUILD_DIR",
                       os.path.join(os.path.dirname(__file__), "..", "..", "..", "build"))
BIN = os.path.join(BUILD, "bin", "asya-runtime")
HANDLER = os.path.join(BUILD, "lib", "asya", "test_handlers.so") + ":echo_handler"
REQ = b'{"id":"m-1","route":{"actors":["a","b"],"current":0},"payload":{"n":1,"s":"hello"}}'
FRAME = struct.pack(">I", len(REQ)) + REQ


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def run(n, callgrind_out=None):
    d = tempfile.mkdtemp(prefix="asya-bench-")
    sock = os.path.join(d, "rt.sock")
    env = dict(os.environ, ASYA_HANDLER=HANDLER, ASYA_SOCKET_PATH=sock, ASYA_LOG_LEVEL="WARNING")
    cmd = [BIN]
    if callgrind_out:
        cmd = ["valgrind", "--tool=callgrind", "--trace-children=no",
               "--callgrind-out-file=" + callgrind_out] + cmd
    p = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not os.path.exists(sock):
        if time.time() > deadline or p.poll() is not None:
            raise SystemExit("runtime did not start")
        time.sleep(0.05)
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(FRAME)
        (ln,) = struct.unpack(">I", recv_exact(s, 4))
        recv_exact(s, ln)
        lat.append(time.perf_counter() - t0)
    s.close()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    return lat


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit("no totals in " + path)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "latency"
    if mode == "latency":
        n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
        lat = sorted(run(n)[100:])  # the first ones warm up
        print("n=%d p50=%.1fus p90=%.1fus" % (len(lat), lat[len(lat) // 2] * 1e6,
                                                lat[len(lat) * 9 // 10] * 1e6))
    else:
        n1, n2 = int(sys.argv[2]), int(sys.argv[3])
        irs = []
        for n in (n1, n2):
            out = tempfile.mktemp(prefix="asya-callgrind-")
            run(n, out)
            irs.append(total_ir(out))
            os.unlink(out)
        print("Ir(%d)=%d Ir(%d)=%d -> %.0f instructions per message"
              % (n1, irs[0], n2, irs[1], (irs[1] - irs[0]) / (n2 - n1)))


if __name__ == "__main__":
    main()
