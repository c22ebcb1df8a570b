#!/usr/bin/env bash
# run.sh - asya-sidecar integration tests against a private RabbitMQ.
#
# Starts ONE private RabbitMQ node (tests/lib/broker.sh), runs pytest on
# tests/sidecar (each test starts its own sidecar, fake or real runtime as real
# processes, with unique queue names), and always stops the broker on exit or
# interrupt.
#
#   ASYA_BUILD_DIR=$PWD/build tests/sidecar/run.sh [pytest args...]
#   e.g. ... run.sh -k broker_restart
#
# Environment:
#   ASYA_BUILD_DIR                 build output (default <repo>/build)
#   ASYA_SIDECAR_TEST_AMQP_PORT    AMQP port of the private broker (default 5683)
#   ASYA_SIDECAR_TEST_MGMT_PORT    management port (default 15683)
#   ASYA_TEST_KEEP_RUNS            how many old run folders to keep (default 5)
#   PYTHON                         python with pytest, pika, requests (default /usr/bin/python3)
#
# Logs of every process go to $ASYA_BUILD_DIR/test-runs/sidecar-<timestamp>/.
# Exit status: pytest's, or 2 when the environment could not be brought up.
set -u

SUITE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SUITE_DIR/../.." && pwd)
BUILD=${ASYA_BUILD_DIR:-$ROOT/build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "run.sh: no build dir ${ASYA_BUILD_DIR:-$ROOT/build}; run make" >&2; exit 2; }
AMQP_PORT=${ASYA_SIDECAR_TEST_AMQP_PORT:-5683}
MGMT_PORT=${ASYA_SIDECAR_TEST_MGMT_PORT:-15683}
PY=${PYTHON:-/usr/bin/python3}

# shellcheck source=../lib/broker.sh
. "$ROOT/tests/lib/broker.sh"
# shellcheck source=../lib/runs.sh
. "$ROOT/tests/lib/runs.sh"

say() { echo "sidecar tests: $*" >&2; }

[ -x "$BUILD/bin/asya-sidecar" ] || { say "missing $BUILD/bin/asya-sidecar (run make)"; exit 2; }
"$PY" -c 'import pytest, pika, requests' >/dev/null 2>&1 ||
    { say "$PY lacks pytest/pika/requests (apt-get install python3-pytest python3-pika python3-requests)"; exit 2; }

RUN_DIR=$(new_run_dir "$BUILD/test-runs" sidecar) || exit 2

# Unix socket paths are limited to 107 bytes: keep sockets in a short /tmp dir.
SOCK_DIR=$(mktemp -d /tmp/asya-sct.XXXXXX)
# The broker runs as the rabbitmq user when we are root: give it a dir it can reach.
BROKER_DIR=$(mktemp -d /tmp/asya-sct-broker.XXXXXX)
RC=2
BROKER_STARTED=
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
    # Processes the tests started (they normally stop them themselves): conftest
    # records "<pid> <name>" per process; stop any that are left.
    if [ -f "$RUN_DIR/pids" ]; then
        while read -r pid name; do
            if kill -0 "$pid" 2>/dev/null && grep -qE 'asya-|fake_runtime' "/proc/$pid/cmdline" 2>/dev/null; then
                say "stopping leftover $name (pid $pid)"
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
            fi
        done <"$RUN_DIR/pids"
    fi
    if [ -n "$BROKER_STARTED" ]; then
        broker_stop "$BROKER_DIR" >>"$RUN_DIR/broker-ctl.log" 2>&1
    fi
    [ -d "$BROKER_DIR/log" ] && cp -r "$BROKER_DIR/log" "$RUN_DIR/broker-log" 2>/dev/null
    rm -rf "$BROKER_DIR" "$SOCK_DIR"
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

export PYTHONPATH=$ROOT/tests/lib:$SUITE_DIR${PYTHONPATH:+:$PYTHONPATH}
export ASYA_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
export ASYA_TEST_MGMT_URL=http://127.0.0.1:$MGMT_PORT
export ASYA_TEST_EXCHANGE=asya
export ASYA_TEST_AMQP_PORT=$AMQP_PORT
export ASYA_TEST_RUN_DIR=$RUN_DIR
export ASYA_TEST_SOCK_DIR=$SOCK_DIR
export ASYA_TEST_BROKER_DIR=$BROKER_DIR
export ASYA_TEST_BROKER_SH=$ROOT/tests/lib/broker.sh
export ASYA_BUILD_DIR=$BUILD

cd "$ROOT" || exit 2
# pytest runs in the background so that a signal to this script is handled at
# once (bash defers traps while a foreground command runs); teardown stops it.
"$PY" -m pytest -p no:cacheprovider -v -rfEs --durations=10 \
    --junitxml="$RUN_DIR/junit.xml" tests/sidecar "$@" > >(tee "$RUN_DIR/pytest.log") 2>&1 </dev/null &
PYTEST_PID=$!
wait "$PYTEST_PID"
RC=$?
PYTEST_PID=
exit "$RC"
