"""Bad input: malformed JSON, wrong content types, bodies over
ASYA_GATEWAY_MAX_BODY_BYTES (4096 here: 413), very long and non-UUID ids (404
at once, the database untouched).  Both stores; after each test the gateway
still answers."""

import socket
import time
import urllib.parse
import uuid

import pytest

from gwlib import post_final, post_progress

GATEWAY_ENV = {"ASYA_GATEWAY_MAX_BODY_BYTES": "4096"}
LIMIT = 4096
TOO_LARGE = f"request body too large (limit {LIMIT} bytes)"


@pytest.fixture(autouse=True)
def still_healthy(request):
    yield
    if "gw" in request.fixturenames:
        g = request.getfixturevalue("gw")
        r = g.get("/health", timeout=5)
        assert r.status_code == 200, "the gateway stopped answering after bad input"


def raw_request(gw, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes on a fresh connection; everything the server answers until it
    closes (or timeout)."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if complete(out):
                break
        return out
    finally:
        s.close()


def complete(raw: bytes) -> bool:
    """A whole response with a Content-Length has arrived."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return False
    return False


def status_of(raw: bytes) -> int:
    line = raw.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1."), f"no HTTP answer: {raw[:200]!r}"
    return int(line.split()[1])


# ---- malformed JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"name": "echo", "arguments": {"message": "x"',       # truncated
    b'{"name": "echo" "arguments": {}}',                    # missing comma
    b"{'name': 'echo'}",                                     # single quotes
    b'{"name": "\xff\xfe", "arguments": {}}',               # not UTF-8
    b'{"name": "echo", "arguments": {"message": "x"}} trailing',
    b"\x00\x01\x02",
    b'{"name": "echo", "name": ',
])
def test_malformed_json_tools_call(gw, body):
    r = gw.post("/tools/call", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, f"{body!r}: {r.status_code} {r.text!r}"


@pytest.mark.parametrize("path", ["progress", "heartbeat", "final"])
def test_malformed_json_reports(gw, path):
    jid = gw.call_ok("quiet", {})
    for body in (b'{"status": ', b"\xff", b"nul"):
        r = gw.post(f"/jobs/{jid}/{path}", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, f"{path} {body!r}: {r.status_code}"
    j = gw.job(jid)
    assert j["status"] == "Running" and j["progress_percent"] == 0


def test_wrong_types_in_progress(gw, q):
    jid = gw.call_ok("pipeline", {"value": 1})
    for body in ({"step": q.alpha, "step_index": "zero", "total_steps": 3, "status": "received"},
                 {"step": q.alpha, "step_index": 0, "total_steps": "3", "status": "received"},
                 {"step": q.alpha, "step_index": 0, "total_steps": 3, "status": 7}):
        r = gw.post(f"/jobs/{jid}/progress", body)
        assert 400 <= r.status_code < 500, f"{body}: {r.status_code} {r.text!r}"
    assert gw.job(jid)["progress_percent"] == 0


def test_deeply_nested_arguments(gw):
    body = b'{"name": "quiet", "arguments": {"message": "x", "deep": ' + b"[" * 1900 + \
        b"]" * 1900 + b"}}"
    assert len(body) < LIMIT
    r = gw.post("/tools/call", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.status_code
    if r.status_code == 200:
        assert "content" in r.json()


# ---- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=xyz", None])
def test_wrong_content_type(gw, mq, q, ctype):
    """The JSON is valid but declared as something else: refused (400/415).
    Without a Content-Type either answer is fine; never a hang or a crash."""
    body = b'{"name": "quiet", "arguments": {"message": "ct"}}'
    headers = {"Content-Type": ctype} if ctype else {}
    r = gw.post("/tools/call", data=body, headers=headers, timeout=5)
    if ctype is not None:
        assert r.status_code in (400, 415), f"{ctype}: {r.status_code} {r.text!r}"
    assert r.status_code in (200, 400, 415), f"{ctype}: {r.status_code} {r.text!r}"
    if r.status_code == 200:
        res = r.json()
        assert not res.get("isError") and res["content"][0]["text"].startswith(
            "Job created successfully with ID: "), res


def test_form_body_is_not_json(gw):
    r = gw.post("/tools/call", data=b"name=quiet&arguments=x",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code in (400, 415), r.status_code


# ---- body size -----------------------------------------------------------------------------------


def test_body_at_the_limit_is_accepted(gw, mq, q):
    head = b'{"name": "quiet", "arguments": {"message": "'
    tail = b'"}}'
    body = head + b"x" * (LIMIT - len(head) - len(tail)) + tail
    assert len(body) == LIMIT
    r = gw.post("/tools/call", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and not r.json().get("isError"), r.text


@pytest.mark.parametrize("path", ["/tools/call", "/jobs/{id}/progress", "/jobs/{id}/final",
                                  "/jobs/{id}/heartbeat"])
def test_body_over_the_limit_413(gw, path):
    jid = gw.call_ok("quiet", {})
    body = b'{"name": "quiet", "arguments": {"message": "' + b"y" * LIMIT + b'"}}'
    r = gw.post(path.format(id=jid), data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, f"{path}: {r.status_code} {r.text[:200]!r}"
    assert r.text.strip() == TOO_LARGE, r.text[:300]
    assert gw.job(jid)["status"] == "Running"


def test_chunked_body_over_the_limit_413(gw):
    def gen():
        yield b'{"name": "quiet", "arguments": {"message": "'
        for _ in range(10):
            yield b"z" * 1000
        yield b'"}}'

    r = gw.post("/tools/call", data=gen(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.status_code
    assert r.text.strip() == TOO_LARGE


def test_huge_content_length_answered_at_once(gw):
    t = time.monotonic()
    raw = raw_request(gw, b"POST /tools/call HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n"
                          b'{"name":', timeout=5)
    assert status_of(raw) == 413, raw[:300]
    assert time.monotonic() - t < 2.0, "refused before the body arrives"


# ---- ids -------------------------------------------------------------------------------------------


LONG_ID = "a" * 10240


@pytest.mark.parametrize("jid", [
    LONG_ID, "not-a-uuid", "12345", str(uuid.uuid4()) + "x", str(uuid.uuid4())[:-1],
    "'; DROP TABLE jobs; --", "../../../etc/passwd", "%00", "\u00e9t\u00e9", "a b",
])
def test_bad_ids_404_quickly(gw, jid):
    quoted = urllib.parse.quote(jid, safe="")
    for method, path, body in [("GET", "/jobs/{}", None), ("GET", "/jobs/{}/stream", None),
                               ("POST", "/jobs/{}/progress", {"step": "s", "step_index": 0,
                                                              "total_steps": 1,
                                                              "status": "received"}),
                               ("POST", "/jobs/{}/heartbeat", {"actor_name": "s",
                                                               "status": "processing"}),
                               ("POST", "/jobs/{}/final", {"status": "succeeded"})]:
        t = time.monotonic()
        r = gw.request(method, path.format(quoted), json=body, timeout=5)
        assert r.status_code == 404, f"{method} {path} {jid[:40]!r}: {r.status_code} {r.text[:200]!r}"
        assert time.monotonic() - t < 1.0, f"{method} {path}: slow answer"


def test_jobs_table_survives_injection_attempts(gw):
    jid = gw.call_ok("quiet", {})
    for evil in ["x' OR '1'='1", "'; DELETE FROM jobs; --", f"{jid}' --"]:
        q = urllib.parse.quote(evil, safe="")
        assert gw.get(f"/jobs/{q}").status_code == 404
        assert post_final(gw, q, "succeeded", result=1).status_code == 404
        assert post_progress(gw, q, "s", 0, 1, "received").status_code == 404
    assert gw.job(jid)["status"] == "Running"


def test_header_flood_is_refused(gw):
    """32 KiB of headers: a clean 4xx (431/413/400) or a closed connection; the
    gateway goes on answering (checked after each test)."""
    hdrs = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(32))
    raw = raw_request(gw, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + hdrs + b"\r\n", 5)
    if raw:
        assert 400 <= status_of(raw) < 500 or status_of(raw) == 200, raw[:200]


def test_garbage_request_line(gw):
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
                 b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"):
        raw = raw_request(gw, junk, 1)  # a TLS hello has no line end: MHD waits for more
        if raw:
            assert raw.startswith(b"HTTP/1."), raw[:100]
            assert status_of(raw) >= 400, raw[:100]


def test_nul_escapes_refused_everywhere(gw):
    """\\u0000 can live in neither a jsonb nor a text column: both stores
    refuse it the same way, as bad JSON, and the job is unchanged."""
    r = gw.call("echo", {"message": "a\u0000b"})
    assert r.status_code == 400, r.text
    jid = gw.call_ok("echo", {"message": "ok"})
    for path, body in [("progress", {"step": "s", "step_index": 0, "total_steps": 1,
                                     "status": "received", "actor_name": "s", "message": "m\u0000"}),
                       ("final", {"job_id": jid, "status": "succeeded", "result": {"k": "\u0000"}}),
                       ("final", {"job_id": jid, "status": "failed", "error": "e\u0000"})]:
        r = gw.post(f"/jobs/{jid}/{path}", body)
        assert r.status_code == 400, f"{path}: {r.status_code} {r.text!r}"
    j = gw.job(jid)
    assert j["status"] == "Running" and j["progress_percent"] == 0, j
