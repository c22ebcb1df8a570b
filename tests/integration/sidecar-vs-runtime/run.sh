#!/usr/bin/env bash
# run.sh - the sidecar-vs-runtime seed suite.
#
# Starts a private RabbitMQ node (tests/lib/broker.sh) with rabbitmq-definitions.json,
# one asya-runtime + asya-sidecar pair per line of scenarios.txt, waits until every
# pair is ready, runs pytest on tests/, and always tears everything down.
#
#   ASYA_BUILD_DIR=$PWD/build tests/integration/sidecar-vs-runtime/run.sh [pytest args...]
#   e.g. ... run.sh -k fanout          # a single scenario
#
# Environment:
#   ASYA_BUILD_DIR        build output (default <repo>/build): bin/asya-runtime,
#                         bin/asya-sidecar, lib/asya/test_handlers.so
#   ASYA_TEST_AMQP_PORT   AMQP port of the private broker (default 5673)
#   ASYA_TEST_MGMT_PORT   management port (default 15673)
#   ASYA_LOG_LEVEL        passed to every runtime and sidecar and to pytest (default INFO)
#   ASYA_TEST_KEEP_RUNS   how many old run folders to keep (default 5)
#   PYTHON                python with pytest, pika and requests (default: first of
#                         python3, /usr/bin/python3 that has them)
#
# Exit status: pytest's (or 2 when the environment could not be brought up).
set -u

SUITE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SUITE_DIR/../../.." && pwd)
BUILD=${ASYA_BUILD_DIR:-$ROOT/build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "run.sh: no build dir ${ASYA_BUILD_DIR:-$ROOT/build}; run make" >&2; exit 2; }
AMQP_PORT=${ASYA_TEST_AMQP_PORT:-5673}
MGMT_PORT=${ASYA_TEST_MGMT_PORT:-15673}
LOG_LEVEL=${ASYA_LOG_LEVEL:-INFO}
LOG_LEVEL_SET=${ASYA_LOG_LEVEL:+yes}

# shellcheck source=../../lib/broker.sh
. "$ROOT/tests/lib/broker.sh"
# shellcheck source=../../lib/runs.sh
. "$ROOT/tests/lib/runs.sh"

say() { echo "run.sh: $*" >&2; }

RUNTIME_BIN=$BUILD/bin/asya-runtime
SIDECAR_BIN=$BUILD/bin/asya-sidecar
HANDLERS_SO=$BUILD/lib/asya/test_handlers.so
for f in "$RUNTIME_BIN" "$SIDECAR_BIN" "$HANDLERS_SO"; do
    [ -e "$f" ] || { say "missing $f (run make)"; exit 2; }
done

# A python with pytest, pika and requests (pyenv shims may hide Debian's packages).
PY=
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
        "$cand" -c 'import pytest, pika, requests' >/dev/null 2>&1; then
        PY=$cand
        break
    fi
done
[ -n "$PY" ] || { say "no python3 with pytest, pika and requests (apt-get install python3-pytest python3-pika python3-requests)"; exit 2; }

# ---- run folder -------------------------------------------------------------
RUN_DIR=$(new_run_dir "$BUILD/test-runs" sidecar-vs-runtime) || exit 2

# Unix socket paths are limited to 107 bytes; use the run folder when it fits.
if [ ${#RUN_DIR} -lt 60 ]; then
    SOCK_DIR=$RUN_DIR/sockets
    mkdir -p "$SOCK_DIR"
else
    SOCK_DIR=$(mktemp -d /tmp/asya-svr-sock.XXXXXX)
fi
# The broker runs as the rabbitmq user when we are root: give it a dir it can reach.
BROKER_DIR=$(mktemp -d /tmp/asya-svr-broker.XXXXXX)
PIDS_FILE=$RUN_DIR/pids # "<queue> <role> <pid>" per line, read by the tests

RC=2
BROKER_STARTED=

# ---- teardown (always) ------------------------------------------------------
stop_pids()
{
    # stop_pids SIGNAL PID... : signal, wait up to 10 s, then SIGKILL the rest.
    local sig=$1 p alive
    shift
    [ $# -gt 0 ] || return 0
    kill "-$sig" "$@" 2>/dev/null
    for _ in $(seq 1 100); do
        alive=
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    if [ -n "$alive" ]; then
        say "killing processes that ignored SIG$sig:$alive"
        # shellcheck disable=SC2086
        kill -KILL $alive 2>/dev/null
    fi
    for p in "$@"; do wait "$p" 2>/dev/null; done
}

teardown()
{
    local rc=$RC
    trap - EXIT INT TERM
    # Report pairs that died before teardown (helps reading a failure).
    if [ -f "$PIDS_FILE" ]; then
        # (On Ctrl-C the whole process group got SIGINT, so that is expected then.)
        if [ "$rc" -ne 130 ]; then
            while read -r q role pid; do
                kill -0 "$pid" 2>/dev/null ||
                    say "note: $role of $q (pid $pid) had exited before teardown; see $RUN_DIR/$q.$role.log"
            done <"$PIDS_FILE"
        fi
        # Sidecars first (they requeue in-flight work), then runtimes.
        # shellcheck disable=SC2046 # one pid per word
        stop_pids TERM $(awk '$2 == "sidecar" {print $3}' "$PIDS_FILE")
        # shellcheck disable=SC2046 # one pid per word
        stop_pids TERM $(awk '$2 == "runtime" {print $3}' "$PIDS_FILE")
    fi
    if [ -n "$BROKER_STARTED" ]; then
        broker_stop "$BROKER_DIR" >>"$RUN_DIR/broker-ctl.log" 2>&1
    fi
    if [ -d "$BROKER_DIR/log" ]; then
        cp -r "$BROKER_DIR/log" "$RUN_DIR/broker-log" 2>/dev/null
    fi
    rm -rf "$BROKER_DIR"
    rm -f "$SOCK_DIR"/*.sock "$SOCK_DIR"/*.ready
    rmdir "$SOCK_DIR" 2>/dev/null
    run_verdict "$rc" "$RUN_DIR" process
    exit "$rc"
}
trap teardown EXIT
run_signal_traps

# ---- broker -----------------------------------------------------------------
say "run folder $RUN_DIR"
if ! BROKER_EXTRA_CONF=$SUITE_DIR/rabbitmq.conf \
    broker_start "$BROKER_DIR" "$AMQP_PORT" "$MGMT_PORT" "$SUITE_DIR/rabbitmq-definitions.json" \
    2> >(tee "$RUN_DIR/broker-ctl.log" >&2); then
    BROKER_STARTED=yes # stop whatever half-started
    say "broker did not start"
    exit 2
fi
BROKER_STARTED=yes
AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
MGMT_URL=http://127.0.0.1:$MGMT_PORT

# ---- scenario pairs ---------------------------------------------------------
mapfile -t SCENARIOS < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SUITE_DIR/scenarios.txt")
QUEUES=()

for line in "${SCENARIOS[@]}"; do
    read -r queue handler timeout <<<"$line"
    sock=$SOCK_DIR/$queue.sock
    ready=$SOCK_DIR/$queue.ready
    rm -f "$sock" "$ready"
    env ASYA_HANDLER="$HANDLERS_SO:$handler" \
        ASYA_SOCKET_PATH="$sock" \
        ASYA_READY_FILE="$ready" \
        ASYA_LOG_LEVEL="$LOG_LEVEL" \
        "$RUNTIME_BIN" >"$RUN_DIR/$queue.runtime.log" 2>&1 </dev/null &
    echo "$queue runtime $!" >>"$PIDS_FILE"
    QUEUES+=("$queue")
done

# Wait for every runtime's ready file (its workers have loaded the handler).
deadline=$((SECONDS + 30))
while :; do
    pending=
    while read -r q role pid; do
        [ "$role" = runtime ] || continue
        if ! kill -0 "$pid" 2>/dev/null; then
            say "runtime of $q exited during start-up:"
            tail -n 20 "$RUN_DIR/$q.runtime.log" >&2
            exit 2
        fi
        [ -e "$SOCK_DIR/$q.ready" ] && [ -S "$SOCK_DIR/$q.sock" ] || pending="$pending $q"
    done <"$PIDS_FILE"
    [ -z "$pending" ] && break
    if [ $SECONDS -ge $deadline ]; then
        say "runtimes not ready after 30 s:$pending"
        exit 2
    fi
    sleep 0.1
done
say "${#QUEUES[@]} runtimes ready"

for line in "${SCENARIOS[@]}"; do
    read -r queue handler timeout <<<"$line"
    env ASYA_RABBITMQ_URL="$AMQP_URL" \
        ASYA_RABBITMQ_EXCHANGE=asya \
        ASYA_QUEUE_NAME="$queue" \
        ASYA_ACTOR_NAME="$queue" \
        ASYA_SOCKET_PATH="$SOCK_DIR/$queue.sock" \
        ASYA_RUNTIME_TIMEOUT="${timeout:-30s}" \
        ASYA_STEP_HAPPY_END=happy-end \
        ASYA_STEP_ERROR_END=error-end \
        ASYA_METRICS_ENABLED=false \
        ASYA_LOG_LEVEL="$LOG_LEVEL" \
        "$SIDECAR_BIN" >"$RUN_DIR/$queue.sidecar.log" 2>&1 </dev/null &
    echo "$queue sidecar $!" >>"$PIDS_FILE"
done

# Wait until every scenario queue has a consumer (the sidecars are up).
export PYTHONPATH=$ROOT/tests/lib${PYTHONPATH:+:$PYTHONPATH}
export ASYA_TEST_AMQP_URL=$AMQP_URL ASYA_TEST_MGMT_URL=$MGMT_URL ASYA_TEST_EXCHANGE=asya
export ASYA_TEST_RUN_DIR=$RUN_DIR ASYA_TEST_PIDS_FILE=$PIDS_FILE
# For fault tests: tests/lib/broker.sh verbs (stop_app/start_app) on this node.
export ASYA_TEST_BROKER_DIR=$BROKER_DIR ASYA_TEST_BROKER_SH=$ROOT/tests/lib/broker.sh
if ! "$PY" - "${QUEUES[@]}" <<'EOF'; then
import sys
from asya_testlib import Broker
with Broker() as b:
    missing = b.wait_consumers(sys.argv[1:], timeout=30)
if missing:
    print("run.sh: no consumer after 30 s on: " + " ".join(missing), file=sys.stderr)
    sys.exit(1)
EOF
    while read -r q role pid; do
        [ "$role" = sidecar ] && ! kill -0 "$pid" 2>/dev/null &&
            { say "sidecar of $q exited:"; tail -n 20 "$RUN_DIR/$q.sidecar.log" >&2; }
    done <"$PIDS_FILE"
    exit 2
fi
say "${#QUEUES[@]} sidecars consuming"

# ---- tests ------------------------------------------------------------------
pytest_log_args "$LOG_LEVEL" "$LOG_LEVEL_SET"
PYTEST_ARGS=(-p no:cacheprovider -v "${PYTEST_LOG_ARGS[@]}")

cd "$SUITE_DIR" || exit 2
"$PY" -m pytest "${PYTEST_ARGS[@]}" tests "$@"
RC=$?
exit "$RC"
