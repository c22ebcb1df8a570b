#!/usr/bin/env bash
# run.sh - asya-gateway integration tests against a private RabbitMQ and PostgreSQL.
#
# Starts ONE private RabbitMQ node (tests/lib/broker.sh) and ONE private
# PostgreSQL server (tests/lib/postgres.sh, initdb once per run), runs pytest on
# tests/gateway (the tests start real asya-gateway processes against them), and
# always stops both on exit or interrupt.
#
#   ASYA_BUILD_DIR=$PWD/build tests/gateway/run.sh [pytest args...]
#   e.g. ... run.sh -k sse
#
# Environment:
#   ASYA_BUILD_DIR                 build output (default <repo>/build)
#   ASYA_GATEWAY_TEST_AMQP_PORT    AMQP port of the private broker (default 5791)
#   ASYA_GATEWAY_TEST_MGMT_PORT    management port (default 15791)
#   ASYA_GATEWAY_TEST_PG_PORT      PostgreSQL port (default 55791)
#   ASYA_TEST_KEEP_RUNS            how many old run folders to keep (default 5)
#   PYTHON                         python with pytest, pika, requests (default /usr/bin/python3)
#
# Logs of every process go to $ASYA_BUILD_DIR/test-runs/gateway-<timestamp>/.
# Exit status: pytest's, or 2 when the environment could not be brought up.
set -u

SUITE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SUITE_DIR/../.." && pwd)
BUILD=${ASYA_BUILD_DIR:-$ROOT/build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "run.sh: no build dir ${ASYA_BUILD_DIR:-$ROOT/build}; run make" >&2; exit 2; }
AMQP_PORT=${ASYA_GATEWAY_TEST_AMQP_PORT:-5791}
MGMT_PORT=${ASYA_GATEWAY_TEST_MGMT_PORT:-15791}
PG_PORT=${ASYA_GATEWAY_TEST_PG_PORT:-55791}
PY=${PYTHON:-/usr/bin/python3}

# shellcheck source=../lib/broker.sh
. "$ROOT/tests/lib/broker.sh"
# shellcheck source=../lib/postgres.sh
. "$ROOT/tests/lib/postgres.sh"
# shellcheck source=../lib/runs.sh
. "$ROOT/tests/lib/runs.sh"

say() { echo "gateway tests: $*" >&2; }

[ -x "$BUILD/bin/asya-gateway" ] || { say "missing $BUILD/bin/asya-gateway (run make)"; exit 2; }
"$PY" -c 'import pytest, pika, requests' >/dev/null 2>&1 ||
    { say "$PY lacks pytest/pika/requests (apt-get install python3-pytest python3-pika python3-requests)"; exit 2; }
[ -x "${PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ] ||
    { say "PostgreSQL 15 not found (apt-get install postgresql-15)"; exit 2; }

RUN_DIR=$(new_run_dir "$BUILD/test-runs" gateway) || exit 2

# The broker runs as the rabbitmq user and PostgreSQL as postgres when we are
# root: give each a dir it can own.  Short /tmp paths: the PostgreSQL unix
# socket lives inside its dir (107-byte limit).
BROKER_DIR=$(mktemp -d /tmp/asya-gwt-broker.XXXXXX)
PG_DIR=$(mktemp -d /tmp/asya-gwt-pg.XXXXXX)
RC=2
BROKER_STARTED=
PG_STARTED=
PYTEST_PID=

teardown()
{
    local rc=$RC
    trap - EXIT INT TERM
    # Interrupted while pytest runs: stop it (its fixtures may not get to run).
    if [ -n "$PYTEST_PID" ] && kill -0 "$PYTEST_PID" 2>/dev/null; then
        kill -TERM "$PYTEST_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$PYTEST_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PYTEST_PID" 2>/dev/null
    fi
    # Gateways the tests started (they normally stop them themselves): conftest
    # records "<pid> <name>" per process; stop any that are left.
    if [ -f "$RUN_DIR/pids" ]; then
        while read -r pid name; do
            if kill -0 "$pid" 2>/dev/null && grep -q 'asya-' "/proc/$pid/cmdline" 2>/dev/null; then
                say "stopping leftover $name (pid $pid)"
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
            fi
        done <"$RUN_DIR/pids"
    fi
    if [ -n "$PG_STARTED" ]; then
        pg_stop "$PG_DIR" >>"$RUN_DIR/postgres-ctl.log" 2>&1
    fi
    if [ -n "$BROKER_STARTED" ]; then
        broker_stop "$BROKER_DIR" >>"$RUN_DIR/broker-ctl.log" 2>&1
    fi
    [ -d "$BROKER_DIR/log" ] && cp -r "$BROKER_DIR/log" "$RUN_DIR/broker-log" 2>/dev/null
    [ -f "$PG_DIR/postgres.log" ] && cp "$PG_DIR/postgres.log" "$RUN_DIR/postgres.log" 2>/dev/null
    rm -rf "$BROKER_DIR" "$PG_DIR"
    if [ "$rc" -ne 0 ]; then
        say "FAILED (exit $rc); logs of every process: $RUN_DIR"
    else
        say "passed; logs: $RUN_DIR"
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'RC=130; say "interrupted"; exit 130' INT
trap 'RC=143; say "terminated"; exit 143' TERM

say "run folder $RUN_DIR"
BROKER_STARTED=yes # from here on, stop whatever (half-)started
if ! broker_start "$BROKER_DIR" "$AMQP_PORT" "$MGMT_PORT" 2> >(tee "$RUN_DIR/broker-ctl.log" >&2); then
    say "broker did not start"
    exit 2
fi
PG_STARTED=yes
if ! pg_start "$PG_DIR" "$PG_PORT" 2> >(tee "$RUN_DIR/postgres-ctl.log" >&2); then
    say "PostgreSQL did not start"
    exit 2
fi

export PYTHONPATH=$ROOT/tests/lib:$SUITE_DIR${PYTHONPATH:+:$PYTHONPATH}
export ASYA_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
export ASYA_TEST_MGMT_URL=http://127.0.0.1:$MGMT_PORT
export ASYA_TEST_EXCHANGE=asya
export ASYA_TEST_AMQP_PORT=$AMQP_PORT
export ASYA_TEST_RUN_DIR=$RUN_DIR
export ASYA_TEST_BROKER_DIR=$BROKER_DIR
export ASYA_TEST_BROKER_SH=$ROOT/tests/lib/broker.sh
export ASYA_TEST_PG_DIR=$PG_DIR
export ASYA_TEST_PG_SH=$ROOT/tests/lib/postgres.sh
export ASYA_TEST_PG_URL
ASYA_TEST_PG_URL=$(pg_url "$PG_DIR")
export ASYA_BUILD_DIR=$BUILD

cd "$ROOT" || exit 2
# pytest runs in the background so that a signal to this script is handled at
# once (bash defers traps while a foreground command runs); teardown stops it.
"$PY" -m pytest -p no:cacheprovider -q -rfEs --durations=15 \
    --junitxml="$RUN_DIR/junit.xml" tests/gateway "$@" > >(tee "$RUN_DIR/pytest.log") 2>&1 </dev/null &
PYTEST_PID=$!
wait "$PYTEST_PID"
RC=$?
PYTEST_PID=
exit "$RC"
