"""Configuration: bad environment values and bad route files stop the gateway
at start (exit 2, naming the variable or file:line), a config directory's
*.yaml/*.yml files are merged, built-in defaults (progress off, timeout 300),
ASYA_QUEUE_PREFIX, SIGTERM with open streams (exit 0 within 10 s), no
password in the log.  Each test starts gateways of its own."""

import os
import re
import signal
import time

import pytest

from gwlib import SSE, EOF


def run_to_exit(gateways, env=None, routes=None, timeout=10.0):
    g = gateways.new("gateway", env=env, routes=routes)
    g.start(wait=False)
    rc = g.wait_exit(timeout)
    g.expected_exit = True
    assert rc is not None, f"still running after {timeout}s; expected to stop at start:\n" \
                           f"{g.log_tail()}"
    return rc, g.log_text()


@pytest.mark.parametrize("var,value", [
    ("ASYA_GATEWAY_PORT", "http"),
    ("ASYA_GATEWAY_PORT", "70000"),
    ("ASYA_GATEWAY_MAX_BODY_BYTES", "lots"),
    ("ASYA_GATEWAY_MAX_BODY_BYTES", "-1"),
    ("ASYA_GATEWAY_MAX_CONNECTIONS", "-5"),
    ("ASYA_GATEWAY_IDLE_TIMEOUT", "soon"),
    ("ASYA_GATEWAY_SSE_KEEPALIVE", "1parsec"),
    ("ASYA_DATABASE_POOL_SIZE", "zero"),
    ("ASYA_LOG_LEVEL", "LOUD"),
    ("ASYA_RABBITMQ_URL", "http://127.0.0.1:5672/"),
    ("ASYA_DATABASE_URL", "this is not a database url"),
])
def test_bad_env_value_exits_2(gateways, var, value):
    rc, text = run_to_exit(gateways, env={var: value})
    assert rc == 2, f"{var}={value!r}: exit {rc}\n{text[-2000:]}"
    assert [l for l in text.splitlines() if var in l], f"no line names {var}:\n{text[-2000:]}"


BAD_ROUTES = [
    ("unknown key", """\
tools:
  - name: t
    route: ["{q}-echo"]
    colour: blue
""", 4, "colour"),
    ("unknown parameter key", """\
tools:
  - name: t
    parameters:
      x: {type: string, requird: true}
    route: ["{q}-echo"]
""", 4, "requird"),
    ("bad type", """\
tools:
  - name: t
    parameters:
      x:
        type: strin
    route: ["{q}-echo"]
""", 5, "strin"),
    ("undefined named route", """\
routes:
  known: ["{q}-echo"]
tools:
  - name: t
    route: unknown_route
""", 5, "unknown_route"),
    ("duplicate tool", """\
tools:
  - name: twice
    route: ["{q}-echo"]
  - name: twice
    route: ["{q}-echo"]
""", 4, "twice"),
    ("top-level typo", """\
tool:
  - name: t
    route: ["{q}-echo"]
""", 1, "tool"),
]


@pytest.mark.parametrize("what,text,line,word", BAD_ROUTES, ids=[b[0] for b in BAD_ROUTES])
def test_bad_routes_file_exits_2_naming_file_and_line(gateways, mctx, what, text, line, word):
    path = mctx.write_routes(text, name=f"bad-{re.sub(r'[^a-z]+', '-', what)}.yaml")
    rc, log = run_to_exit(gateways, routes=path)
    assert rc == 2, f"{what}: exit {rc}\n{log[-2000:]}"
    base = os.path.basename(path)
    hits = [l for l in log.splitlines() if f"{base}:{line}" in l]
    assert hits, f"{what}: no line names {base}:{line}:\n{log[-2000:]}"
    assert word in hits[0], f"{what}: {hits[0]!r} does not name {word!r}"


def test_missing_routes_file_exits_2(gateways, mctx):
    path = os.path.join(mctx.log_dir, "no-such-routes.yaml")
    rc, log = run_to_exit(gateways, routes=path)
    assert rc == 2
    assert "no-such-routes.yaml" in log


def test_config_directory_is_merged(gateways, mctx, mq, q):
    d = os.path.join(mctx.log_dir, "routes.d")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "a.yaml"), "w") as f:
        f.write(f'defaults: {{progress: true, timeout: 45}}\ntools:\n  - name: one\n'
                f'    route: ["{q.echo}"]\n')
    with open(os.path.join(d, "b.yml"), "w") as f:
        f.write(f'tools:\n  - name: two\n    route: ["{q.alpha}"]\n'
                f'    metadata: {{from: b}}\n')
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("tools: [this is: {not, read\n")
    g = gateways.start("gateway", routes=d)
    one = g.call_ok("one", {})
    two = g.call_ok("two", {})
    assert mq.get_job(q.echo, one, timeout=5) is not None
    assert mq.get_job(q.alpha, two, timeout=5) is not None
    assert g.call("three", {}).status_code == 404
    assert "  from: b" in g.call("two", {}).json()["content"][0]["text"].splitlines()


def test_builtin_defaults(gateways, mctx, mq, q):
    path = mctx.write_routes('tools:\n  - name: plain\n    route: ["{q}-echo"]\n',
                             name="plain.yaml")
    g = gateways.start("gateway", routes=path)
    r = g.call("plain", {})
    text = r.json()["content"][0]["text"]
    jid = re.match(r"Job created successfully with ID: (\S+)", text).group(1)
    assert "/stream" not in text, "progress is off by default"
    j = g.job(jid)
    assert j["timeout_seconds"] == 300, j
    assert mq.get_job(q.echo, jid, timeout=5) is not None


def test_queue_prefix(gateways, mq, q):
    prefixed = "pfx-" + q.echo
    mq.declare(prefixed)
    g = gateways.start("gateway", env={"ASYA_QUEUE_PREFIX": "pfx-"})
    jid = g.call_ok("echo", {"message": "prefixed"})
    m = mq.get_job(prefixed, jid, timeout=5)
    assert m is not None, "published with routing key = prefix + first step"
    assert m.routing_key == prefixed
    assert mq.get_job(q.echo, jid, timeout=0.5) is None


def test_sigterm_with_open_streams_exits_0(gateways):
    g = gateways.start("gateway")
    jid = g.call_ok("echo", {"message": "x"})
    streams = [SSE(f"{g.url}/jobs/{jid}/stream") for _ in range(3)]
    try:
        for s in streams:
            assert s.next_event(5).event == "status"
        t = time.monotonic()
        os.kill(g.pid, signal.SIGTERM)
        g.expected_exit = True
        for s in streams:
            items = s.read_until_eof(10)
            assert isinstance(items[-1], EOF)
        rc = g.wait_exit(max(0.1, 10 - (time.monotonic() - t)))
        assert rc == 0, f"exit {rc} within 10 s of SIGTERM:\n{g.log_tail()}"
    finally:
        for s in streams:
            s.close()


def test_sigint_exits_0(gateways):
    g = gateways.start("gateway")
    g.call_ok("quiet", {})
    os.kill(g.pid, signal.SIGINT)
    g.expected_exit = True
    assert g.wait_exit(10) == 0


def test_no_password_in_the_log(pg, gateways):
    db = pg.url(pg.new_database("pw"))
    assert ":asya@" in db
    g = gateways.start("gateway", db_url=db)
    g.call_ok("echo", {"message": "x"})
    g.restart()
    text = g.log_text()
    assert ":asya@" not in text, "the database password is logged"
    assert "guest:guest@" not in text, "the broker password is logged"
