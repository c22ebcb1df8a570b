"""Fixtures of the gateway-vs-actors suite (started by ../run.sh; see ../README.md).

  gw        the running gateway (gva.Gateway): tool calls over POST /tools/call,
            GET /jobs/..., SSE streams
  mcp       an initialized MCP session on /mcp (gva.Mcp), closed after the test
  gateway   its process (gva.GatewayProcess; in the compose run its container,
            gva.ComposeGateway): stop(SIGTERM|SIGKILL), start()

After every test the gateway and PostgreSQL are up again (a test that failed
half-way through an outage does not take the rest with it), and every actor
(runtime and sidecar) must still be running.
"""

import logging
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gva  # noqa: E402

# pika / urllib3 DEBUG output drowns ours.
for name in ("pika", "urllib3"):
    logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def gw():
    g = gva.Gateway()
    if not g.ready():
        pytest.fail(f"the gateway at {g.url} is not ready (run through run.sh)")
    return g


@pytest.fixture
def mcp(gw):
    m = gva.Mcp(gw.url)
    yield m
    m.close()


@pytest.fixture(scope="session")
def gateway():
    p = gva.gateway_process()
    if not p.available:
        pytest.skip("the gateway's control files are not set (run through run.sh)"
                    if not gva.COMPOSE_PROJECT else
                    "no Docker engine socket in the tester to stop and start the gateway "
                    "container (run through run-compose.sh)")
    return p


@pytest.fixture(autouse=True)
def _system_intact(request):
    yield
    problems = []
    if gva.pg_control() and not gva.pg_up():
        problems.append("PostgreSQL was down after the test; started again")
        gva.pg("start")
    p = gva.gateway_process()
    if p.available and not p.running():
        problems.append("the gateway was down after the test; started again")
        p.start()
    dead = gva.dead_actors()
    if dead:
        problems.append("actors died: " + ", ".join(dead))
    if problems:
        pytest.fail("; ".join(problems))

