"""MCP over Streamable HTTP at /mcp (GATEWAY.md "MCP"; the MCP 2025-06-18 transport spec).

Two kinds of client, against the module's gateway on each store (memory, PostgreSQL):
  - the official MCP TypeScript SDK, unchanged (tests/gateway/mcp/client.mjs: Client +
    StreamableHTTPClientTransport; npm ci through mcp/ensure.sh when node_modules is stale);
  - raw JSON-RPC with `requests`, for the transport's edges: session ids, protocol version
    negotiation, content types, notifications, parse errors, invalid requests, batches,
    DELETE and GET.

HTTP status choices the spec leaves open, as pinned here:
  - malformed JSON: HTTP 400 with a JSON-RPC error -32700 and id null (the spec: a server
    that cannot accept the input answers an HTTP error status, e.g. 400, and MAY carry a
    JSON-RPC error without id; the SDK's own server does the same);
  - an invalid request object (-32600): HTTP 200 or 400, the JSON-RPC error is what counts;
  - a batch (JSON array; 2025-06-18 has none): HTTP 200 or 400 with JSON-RPC error(s);
  - requests for a DELETEd or unknown session: 404 (the spec: MUST after a termination).
"""

import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import UUID_RE

HERE = os.path.dirname(os.path.abspath(__file__))
MCP_DIR = os.path.join(HERE, "mcp")
CLIENT = os.path.join(MCP_DIR, "client.mjs")

ROUTES = """\
defaults: {progress: true, timeout: 60}
tools:
  - name: shapes
    description: Nested shapes for the MCP input schema
    parameters:
      value: {type: integer, description: how many, required: true}
      mode: {type: string, description: speed, options: [fast, slow], default: fast}
      ratio: {type: number, default: 0.5}
      flag: {type: boolean}
      config:
        type: object
        description: nested settings
        required: true
        properties:
          name: {type: string, required: true}
          tags: {type: array, items: {type: string}}
          limits:
            type: object
            properties:
              max: {type: integer, default: 10}
              level: {type: string, options: [low, high]}
      records:
        type: array
        description: a list of records
        items:
          type: object
          properties:
            id: {type: integer, required: true}
            label: {type: string}
    route: ["{q}-work"]
    metadata: {owner: team-x}
  - name: echo
    description: Echo a message
    parameters:
      message: {type: string, description: the text to echo, required: true}
    route: ["{q}-work"]
"""

# What tools/list must say for `shapes` (keys beyond these are tolerated; "required"
# lists compare as sets and must be absent or empty where none is expected).
SHAPES_SCHEMA = {
    "type": "object",
    "properties": {
        "value": {"type": "integer", "description": "how many"},
        "mode": {"type": "string", "description": "speed", "enum": ["fast", "slow"],
                 "default": "fast"},
        "ratio": {"type": "number", "default": 0.5},
        "flag": {"type": "boolean"},
        "config": {
            "type": "object",
            "description": "nested settings",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "limits": {
                    "type": "object",
                    "properties": {
                        "max": {"type": "integer", "default": 10},
                        "level": {"type": "string", "enum": ["low", "high"]},
                    },
                },
            },
            "required": ["name"],
        },
        "records": {
            "type": "array",
            "description": "a list of records",
            "items": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "label": {"type": "string"}},
                "required": ["id"],
            },
        },
    },
    "required": ["value", "config"],
}

ECHO_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "the text to echo"}},
    "required": ["message"],
}

SHAPES_ARGS = {"value": 3, "config": {"name": "n1", "limits": {}}, "records": [{"id": 1}]}
# The payload the job (and its envelope) carries: the arguments with defaults applied.
SHAPES_PAYLOAD = {"value": 3, "mode": "fast", "ratio": 0.5,
                  "config": {"name": "n1", "limits": {"max": 10}}, "records": [{"id": 1}]}

JOB_TEXT_RE = re.compile(r"^Job created successfully with ID: (\S+)")
ACCEPT = "application/json, text/event-stream"
VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")


def assert_schema(actual, expected, path="inputSchema"):
    assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
    for k, v in expected.items():
        assert k in actual, f"{path}: no {k!r} in {actual!r}"
        if k == "properties":
            assert isinstance(actual[k], dict), f"{path}.properties: {actual[k]!r}"
            assert set(actual[k]) == set(v), \
                f"{path}.properties: names {sorted(actual[k])} != {sorted(v)}"
            for name, sub in v.items():
                assert_schema(actual[k][name], sub, f"{path}.properties.{name}")
        elif k == "items":
            assert_schema(actual[k], v, f"{path}.items")
        elif k == "required":
            assert isinstance(actual[k], list) and sorted(actual[k]) == sorted(v), \
                f"{path}.required: {actual[k]!r} != {v!r}"
        else:
            assert actual[k] == v and type(actual[k]) is type(v), \
                f"{path}.{k}: {actual[k]!r} != {v!r}"
    if "required" not in expected:
        assert not actual.get("required"), f"{path}.required: {actual.get('required')!r}, want none"


# ---- the SDK client ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sdk_client():
    """The path of client.mjs with its node_modules current (npm ci only when stale)."""
    if shutil.which("node") is None:
        pytest.fail("node not found (scripts/install-deps.sh installs nodejs and npm)")
    r = subprocess.run([os.path.join(MCP_DIR, "ensure.sh")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"tests/gateway/mcp/ensure.sh failed:\n{r.stdout}{r.stderr}"
    return CLIENT


def run_sdk(client, url, *args, timeout=60):
    """Run client.mjs; returns {op: [line, ...]} and fails the test on a nonzero exit."""
    p = subprocess.run(["node", client, url, *args], capture_output=True, text=True,
                       timeout=timeout)
    lines = []
    for line in p.stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pytest.fail(f"client.mjs printed a non-JSON line {line!r}; stderr:\n{p.stderr}")
    assert p.returncode == 0, (f"client.mjs exited {p.returncode}:\n{p.stdout}\n"
                               f"stderr:\n{p.stderr}")
    ops = {}
    for obj in lines:
        ops.setdefault(obj["op"], []).append(obj)
    return ops


def job_id_of(result):
    assert not result.get("isError"), f"tool call failed: {result}"
    text = result["content"][0]["text"]
    assert result["content"][0]["type"] == "text"
    m = JOB_TEXT_RE.match(text)
    assert m, f"unexpected success text {text!r}"
    assert UUID_RE.match(m.group(1)), f"not a v4 uuid: {m.group(1)!r}"
    return m.group(1)


def test_sdk_client_full_flow(gw, mq, q, sdk_client):
    """initialize, listTools, callTool (and an unknown tool), ping, DELETE: the SDK, unchanged."""
    ops = run_sdk(sdk_client, gw.url, "--call", "shapes", json.dumps(SHAPES_ARGS),
                  "--call-error", "no_such_tool", "{}")

    init = ops["initialize"][0]
    # This SDK offers its newest version (newer than the gateway knows): the answer is
    # 2025-06-18, which the SDK accepts.
    assert init["protocolVersion"] == "2025-06-18"
    assert init["serverInfo"]["name"] == "asya-gateway"
    assert isinstance(init["serverInfo"].get("version"), str) and init["serverInfo"]["version"]
    assert init["capabilities"].get("tools") == {}
    assert init["sessionId"] and re.fullmatch(r"[\x21-\x7e]+", init["sessionId"])

    tools = {t["name"]: t for t in ops["listTools"][0]["tools"]}
    assert set(tools) == {"shapes", "echo"}
    assert tools["shapes"]["description"] == "Nested shapes for the MCP input schema"
    assert_schema(tools["shapes"]["inputSchema"], SHAPES_SCHEMA)
    assert_schema(tools["echo"]["inputSchema"], ECHO_SCHEMA)

    call = ops["callTool"][0]
    jid = job_id_of(call["result"])
    text = call["result"]["content"][0]["text"]
    assert f"GET /jobs/{jid}" in text and f"GET /jobs/{jid}/stream" in text, text
    assert "  owner: team-x" in text.splitlines(), text
    job = gw.job(jid)
    assert job["id"] == jid
    assert job["status"] in ("Pending", "Running")
    assert job["route"]["steps"] == [q("work")]
    assert job["payload"] == SHAPES_PAYLOAD
    env = mq.get_job(q("work"), jid)
    assert env is not None, f"no envelope for {jid} on {q('work')}"
    assert env.json["payload"] == SHAPES_PAYLOAD

    err = ops["callToolError"][0]
    assert err["code"] == -32602, err

    assert ops["ping"][0]["result"] == {}

    close = ops["close"][0]
    assert close["sessionId"] == init["sessionId"]
    assert close["deleteStatus"] in (200, 204), close

    http = ops["http"][0]["requests"]
    for h in http:
        assert "error" not in h, http
        if h["method"] == "GET":  # the SDK's optional server-to-client stream
            assert h["status"] == 405, http
        else:
            assert 200 <= h["status"] < 300, http
    # The initialized notification got 202; requests got JSON (or an SSE stream).
    assert any(h["method"] == "POST" and h["status"] == 202 for h in http), http

    # The session the SDK DELETEd is gone.
    r = rpc(gw, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, session=init["sessionId"])
    assert r.status_code == 404, (r.status_code, r.text)


def test_sdk_two_clients_get_distinct_sessions(gw, sdk_client):
    a = run_sdk(sdk_client, gw.url)["initialize"][0]["sessionId"]
    b = run_sdk(sdk_client, gw.url)["initialize"][0]["sessionId"]
    assert a != b


# ---- raw JSON-RPC -------------------------------------------------------------------------


def rpc(gw, body, session=None, headers=None, version=None):
    """POST body (an object, serialized; bytes/str sent as they are) to /mcp."""
    h = {"Content-Type": "application/json", "Accept": ACCEPT}
    if session:
        h["Mcp-Session-Id"] = session
    if version:
        h["MCP-Protocol-Version"] = version
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return gw.session.post(gw.url + "/mcp", data=data, headers=h, timeout=10)


def message(r):
    """The one JSON-RPC message of an answer: a JSON body, or the first `data:` of an SSE one."""
    ctype = r.headers.get("Content-Type", "")
    if ctype.startswith("text/event-stream"):
        for line in r.text.splitlines():
            if line.startswith("data:"):
                return json.loads(line[5:].strip())
        pytest.fail(f"SSE answer without data: {r.text!r}")
    assert ctype.startswith("application/json"), f"Content-Type {ctype!r}: {r.text!r}"
    return r.json()


def initialize(gw, version="2025-06-18"):
    params = {"capabilities": {}, "clientInfo": {"name": "raw-test", "version": "0"}}
    if version is not None:
        params["protocolVersion"] = version
    r = rpc(gw, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    assert r.status_code == 200, (r.status_code, r.text)
    return r


class Session:
    """An initialized session (initialize + notifications/initialized)."""

    def __init__(self, gw, version="2025-06-18"):
        self.gw = gw
        r = initialize(gw, version)
        self.id = r.headers.get("Mcp-Session-Id")
        assert self.id, f"initialize without Mcp-Session-Id: {dict(r.headers)}"
        self.version = message(r)["result"]["protocolVersion"]
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert n.status_code == 202, (n.status_code, n.text)
        self._id = 100

    def post(self, body, headers=None):
        return rpc(self.gw, body, session=self.id, headers=headers, version=self.version)

    def request(self, method, params=None, expect_status=200):
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method}
        if params is not None:
            body["params"] = params
        r = self.post(body)
        assert r.status_code == expect_status, (method, r.status_code, r.text)
        m = message(r)
        assert m.get("jsonrpc") == "2.0" and m.get("id") == self._id, m
        return m


@pytest.mark.parametrize("asked,answered", [
    ("2025-06-18", "2025-06-18"),
    ("2025-03-26", "2025-03-26"),
    ("2024-11-05", "2024-11-05"),
    ("2025-11-25", "2025-06-18"),
    ("2024-10-07", "2025-06-18"),
    ("1999-01-01", "2025-06-18"),
    ("not-a-version", "2025-06-18"),
])
def test_initialize_session_and_version_negotiation(gw, asked, answered):
    r = initialize(gw, asked)
    sid = r.headers.get("Mcp-Session-Id")
    assert sid and re.fullmatch(r"[\x21-\x7e]+", sid), f"bad Mcp-Session-Id {sid!r}"
    m = message(r)
    assert m["jsonrpc"] == "2.0" and m["id"] == 1 and "error" not in m, m
    res = m["result"]
    assert res["protocolVersion"] == answered
    assert res["serverInfo"]["name"] == "asya-gateway"
    assert isinstance(res["serverInfo"]["version"], str) and res["serverInfo"]["version"]
    assert res["capabilities"]["tools"] == {}


def test_each_initialize_gets_a_new_session(gw):
    ids = {initialize(gw).headers.get("Mcp-Session-Id") for _ in range(3)}
    assert len(ids) == 3


def test_tools_list_and_schema_raw(gw):
    s = Session(gw)
    res = s.request("tools/list")["result"]
    tools = {t["name"]: t for t in res["tools"]}
    assert set(tools) == {"shapes", "echo"}
    assert tools["echo"]["description"] == "Echo a message"
    assert_schema(tools["shapes"]["inputSchema"], SHAPES_SCHEMA)
    assert_schema(tools["echo"]["inputSchema"], ECHO_SCHEMA)


def test_tools_call_raw_creates_job(gw, mq, q):
    s = Session(gw)
    res = s.request("tools/call", {"name": "echo", "arguments": {"message": "hi"}})["result"]
    jid = job_id_of(res)
    job = gw.job(jid)
    assert job["payload"] == {"message": "hi"}
    assert job["route"]["steps"] == [q("work")]
    env = mq.get_job(q("work"), jid)
    assert env is not None and env.json["payload"] == {"message": "hi"}


@pytest.mark.parametrize("args,reason", [
    ({}, "missing required parameter: message"),
    ({"message": 5}, "parameter message: expected string, got integer"),
])
def test_tools_call_bad_arguments_is_a_tool_error(gw, args, reason):
    """A tool-level failure is a CallToolResult with isError, not a JSON-RPC error."""
    s = Session(gw)
    m = s.request("tools/call", {"name": "echo", "arguments": args})
    assert "error" not in m, m
    res = m["result"]
    assert res.get("isError") is True, res
    assert reason in res["content"][0]["text"], res


def test_tools_call_bad_nested_option_is_a_tool_error(gw):
    s = Session(gw)
    args = {"value": 1, "config": {"name": "x", "limits": {"level": "extreme"}}}
    res = s.request("tools/call", {"name": "shapes", "arguments": args})["result"]
    assert res.get("isError") is True, res
    assert "config.limits.level" in res["content"][0]["text"], res


def test_unknown_tool_is_invalid_params(gw):
    s = Session(gw)
    m = s.request("tools/call", {"name": "no_such_tool", "arguments": {}})
    assert "result" not in m, m
    assert m["error"]["code"] == -32602, m
    assert isinstance(m["error"]["message"], str) and m["error"]["message"]


def test_ping(gw):
    s = Session(gw)
    assert s.request("ping")["result"] == {}


def test_unknown_method(gw):
    s = Session(gw)
    r = s.post({"jsonrpc": "2.0", "id": "abc", "method": "no/such/method"})
    assert r.status_code == 200, (r.status_code, r.text)
    m = message(r)
    assert m["id"] == "abc" and m["error"]["code"] == -32601, m


def test_request_without_session_after_initialize_is_400(gw):
    Session(gw)
    for body in ({"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                 {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                  "params": {"name": "echo", "arguments": {"message": "x"}}},
                 {"jsonrpc": "2.0", "id": 4, "method": "ping"}):
        r = rpc(gw, body)
        assert r.status_code == 400, (body["method"], r.status_code, r.text)


def test_unknown_session_is_404(gw):
    r = rpc(gw, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, session=str(uuid.uuid4()))
    assert r.status_code == 404, (r.status_code, r.text)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_400(gw, ctype):
    s = Session(gw)
    r = s.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"Content-Type": ctype})
    assert r.status_code == 400, (ctype, r.status_code, r.text)
    r = rpc(gw, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "x", "version": "0"}}}, headers={"Content-Type": ctype})
    assert r.status_code == 400, ("initialize", ctype, r.status_code, r.text)


def test_json_content_type_with_charset_is_accepted(gw):
    s = Session(gw)
    r = s.post({"jsonrpc": "2.0", "id": 9, "method": "ping"},
               headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200, (r.status_code, r.text)
    assert message(r)["result"] == {}


@pytest.mark.parametrize("body", [
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "method": "notifications/cancelled",
     "params": {"requestId": 5, "reason": "no longer needed"}},
    {"jsonrpc": "2.0", "method": "notifications/some_future_thing", "params": {}},
])
def test_notification_is_202_without_body(gw, body):
    s = Session(gw)
    r = s.post(body)
    assert r.status_code == 202, (r.status_code, r.text)
    assert r.content == b"", r.content


@pytest.mark.parametrize("raw", [
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping"',
    b"{not json at all}",
    b"",
    b"\xff\xfe\x00garbage",
])
def test_malformed_json_is_parse_error(gw, raw):
    s = Session(gw)
    r = s.post(raw)
    assert r.status_code == 400, (raw, r.status_code, r.text)
    m = message(r)
    assert m["jsonrpc"] == "2.0" and m["error"]["code"] == -32700, m
    assert m.get("id") is None, m
    assert gw.get("/health").status_code == 200


@pytest.mark.parametrize("body", [
    {"jsonrpc": "2.0", "id": 1},
    {"jsonrpc": "1.0", "id": 2, "method": "ping"},
    {"id": 3, "method": "ping"},
    {"jsonrpc": "2.0", "id": 4, "method": 42},
    {"jsonrpc": "2.0", "id": {"nested": 1}, "method": "ping"},
    "just a string",
    42,
    None,
])
def test_invalid_request_object(gw, body):
    s = Session(gw)
    r = s.post(json.dumps(body))
    assert r.status_code in (200, 400), (body, r.status_code, r.text)
    m = message(r)
    assert m["jsonrpc"] == "2.0" and "result" not in m, m
    assert m["error"]["code"] == -32600, m
    assert gw.get("/health").status_code == 200


def _assert_rpc_errors(r, code=-32600):
    assert r.status_code in (200, 400), (r.status_code, r.text)
    m = message(r)
    items = m if isinstance(m, list) else [m]
    assert items, m
    for it in items:
        assert it.get("jsonrpc") == "2.0" and "result" not in it and "error" in it, m
        assert it["error"]["code"] == code, m


@pytest.mark.parametrize("batch", [
    [{"jsonrpc": "2.0", "id": 1, "method": "ping"},
     {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}],
    [{"jsonrpc": "2.0", "method": "notifications/initialized"}],
    [],
    [1, 2, 3],
])
def test_batch_gets_jsonrpc_errors(gw, batch):
    """2025-06-18 has no batches: an array is answered with JSON-RPC errors, and the
    session and the gateway carry on."""
    s = Session(gw)
    _assert_rpc_errors(s.post(batch))
    assert s.request("ping")["result"] == {}
    assert gw.get("/health").status_code == 200


def test_batch_initialize_without_session(gw):
    r = rpc(gw, [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "x", "version": "0"}}}])
    assert r.status_code in (200, 400), (r.status_code, r.text)
    m = message(r)
    items = m if isinstance(m, list) else [m]
    assert all("error" in it and "result" not in it for it in items), m
    assert gw.get("/health").status_code == 200


def test_delete_ends_the_session(gw):
    s = Session(gw)
    assert s.request("ping")["result"] == {}
    r = gw.session.delete(gw.url + "/mcp", headers={"Mcp-Session-Id": s.id}, timeout=10)
    assert r.status_code in (200, 204), (r.status_code, r.text)
    for body in ({"jsonrpc": "2.0", "id": 2, "method": "ping"},
                 {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                 {"jsonrpc": "2.0", "method": "notifications/initialized"}):
        r = s.post(body)
        assert r.status_code == 404, (body.get("method"), r.status_code, r.text)
    r = gw.session.delete(gw.url + "/mcp", headers={"Mcp-Session-Id": s.id}, timeout=10)
    assert r.status_code == 404, (r.status_code, r.text)
    # Other sessions are untouched, and a new one can start.
    assert Session(gw).request("ping")["result"] == {}


def test_delete_without_session_is_400(gw):
    r = gw.session.delete(gw.url + "/mcp", timeout=10)
    assert r.status_code == 400, (r.status_code, r.text)


def test_get_is_405(gw):
    """No server-to-client stream: 405 (without a session id, 400 would do too)."""
    s = Session(gw)
    r = gw.session.get(gw.url + "/mcp", headers={"Accept": "text/event-stream",
                                                 "Mcp-Session-Id": s.id}, timeout=10)
    assert r.status_code == 405, (r.status_code, r.text)
    r = gw.session.get(gw.url + "/mcp", headers={"Accept": "text/event-stream"}, timeout=10)
    assert r.status_code in (400, 405), (r.status_code, r.text)
    assert s.request("ping")["result"] == {}
