"""Connections: 2000 idle TCP connections while normal requests still answer,
a slow client sending its headers byte by byte blocks nobody, idle
connections are closed after ASYA_GATEWAY_IDLE_TIMEOUT while SSE streams stay
open (keepalives), a connection cap that does not wedge the server, no
descriptor leaks.  Memory store only (this is the HTTP layer)."""

import os
import resource
import socket
import threading
import time

import pytest
import requests

from gwlib import SSE, post_final, updates


@pytest.fixture(scope="module", params=["mem"])
def store(request):
    return ""


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(hard, need)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")


def timed(fn, limit: float, what: str):
    t = time.monotonic()
    r = fn()
    dt = time.monotonic() - t
    assert dt < limit, f"{what} took {dt:.2f}s"
    return r


def http_on(sock: socket.socket, path: str = "/health", timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = sock.recv(4096)
        if not chunk:
            break
        out += chunk
    return out


def test_2000_idle_connections(gw, mq, q):
    raise_nofile(2000 + 512)
    base_fds = fd_count(gw.pid)
    socks = []
    try:
        for _ in range(2000):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
            socks.append(s)
        # The gateway holds them (accepted, not only queued in the backlog).
        assert wait_for_fds(gw.pid, base_fds + 1900, 10), \
            f"gateway has {fd_count(gw.pid)} fds, expected >= {base_fds + 1900}"
        for _ in range(10):
            timed(lambda: gw.get("/health"), 1.0, "GET /health")
            jid = timed(lambda: gw.call_ok("echo", {"message": "busy"}), 1.0, "tools/call")
            assert timed(lambda: gw.job(jid), 1.0, "GET /jobs")["status"] == "Running"
            assert mq.get_job(q.echo, jid, timeout=5) is not None
        # Idle connections are still usable.
        for s in socks[::200]:
            assert http_on(s).startswith(b"HTTP/1.1 200"), "an idle connection was dropped"
    finally:
        for s in socks:
            s.close()
    assert wait_for_fds(gw.pid, None, 10, below=base_fds + 20), \
        f"descriptors not released: {fd_count(gw.pid)} (was {base_fds})"
    assert gw.get("/health").status_code == 200


def wait_for_fds(pid, atleast, timeout, below=None):
    deadline = time.monotonic() + timeout
    while True:
        n = fd_count(pid)
        if (atleast is not None and n >= atleast) or (below is not None and n < below):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def test_slow_client_does_not_block_others(gw):
    req = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    result = {}

    def slow():
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        try:
            for b in req:
                s.sendall(bytes([b]))
                time.sleep(0.04)
            result["answer"] = s.recv(4096)
        finally:
            s.close()

    t = threading.Thread(target=slow)
    t.start()
    n = 0
    while t.is_alive():
        timed(lambda: gw.get("/health"), 0.5, "GET /health beside a slow client")
        timed(lambda: gw.call_ok("quiet", {}), 0.5, "tools/call beside a slow client")
        n += 1
        time.sleep(0.05)
    t.join()
    assert n >= 10
    assert result.get("answer", b"").startswith(b"HTTP/1.1 200"), result


def test_many_half_sent_requests(gw):
    socks = []
    try:
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
            s.sendall(b"POST /tools/call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
                      if i % 2 else b"GET /jobs/")
            socks.append(s)
        for _ in range(10):
            timed(lambda: gw.call_ok("quiet", {}), 1.0, "tools/call beside 200 stalled requests")
    finally:
        for s in socks:
            s.close()


def test_connection_churn_leaks_nothing(gw):
    base = fd_count(gw.pid)
    for _ in range(300):
        r = requests.get(gw.url + "/health", headers={"Connection": "close"}, timeout=5)
        assert r.status_code == 200
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.close()  # connect and hang up at once
    assert wait_for_fds(gw.pid, None, 5, below=base + 10), (fd_count(gw.pid), base)


def test_pipelined_requests(gw):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nHost: a\r\n"
                  b"Connection: close\r\n\r\n")
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    assert out.count(b"HTTP/1.1 200") == 2, out


# ---- idle timeout, connection cap (gateways of their own) -----------------------------------


def test_idle_connection_closed_sse_kept(gateways):
    g = gateways.start("gateway-idle", env={"ASYA_GATEWAY_IDLE_TIMEOUT": "2s"})
    s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    t = time.monotonic()
    assert s.recv(1) == b"", "the server closes a silent connection"
    dt = time.monotonic() - t
    s.close()
    assert 1.5 <= dt <= 5.0, f"closed after {dt:.1f}s (idle timeout 2 s)"
    # A keep-alive connection that went quiet after a request is closed too.
    s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    assert http_on(s).startswith(b"HTTP/1.1 200")
    t = time.monotonic()
    rest = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    dt = time.monotonic() - t
    s.close()
    assert 1.0 <= dt <= 5.0, f"closed after {dt:.1f}s"
    # An SSE stream outlives the idle timeout: keepalives are traffic.
    jid = g.call_ok("quiet", {})
    with SSE(f"{g.url}/jobs/{jid}/stream") as sse:
        assert sse.next_event(5).event == "status"
        time.sleep(4.5)
        assert post_final(g, jid, "succeeded", result="kept").status_code == 200
        ups = updates(sse.read_until_eof(5))
    assert ups and ups[-1]["status"] == "Succeeded" and ups[-1]["result"] == "kept", ups


def test_connection_cap_does_not_wedge(gateways):
    g = gateways.start("gateway-cap", env={"ASYA_GATEWAY_MAX_CONNECTIONS": "50"})
    base = fd_count(g.pid)
    socks = []
    try:
        for _ in range(80):
            try:
                socks.append(socket.create_connection(("127.0.0.1", g.port), timeout=2))
            except OSError:
                break
        time.sleep(0.5)
        held = fd_count(g.pid) - base
        assert held <= 50, f"cap 50, the gateway holds {held} more descriptors"
    finally:
        for s in socks:
            s.close()
    r = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            r = requests.get(g.url + "/health", timeout=2)
            break
        except requests.RequestException:
            time.sleep(0.1)
    assert r is not None and r.status_code == 200, "the gateway answers again under the cap"
    assert g.call_ok("quiet", {})
