#!/usr/bin/env bash
# run.sh - chaos test: a two-actor pipeline under SIGKILLs and broker restarts.
#
# Starts ONE private RabbitMQ node (tests/lib/broker.sh), then runs chaos.py,
# which starts the actors (asya-runtime + asya-sidecar pairs), streams thousands
# of envelopes through them while it kills and restarts sidecars, runtime
# workers, whole runtimes and the broker application, and finally accounts for
# every envelope id at happy-end / error-end.  Everything is torn down on exit
# or interrupt: the actors chaos.py started (by the pids it recorded) and the
# broker node.
#
#   ASYA_BUILD_DIR=$PWD/build tests/chaos/run.sh [chaos.py args...]
#   e.g. ... run.sh --seed 7 --count 5000
#
# Environment:
#   ASYA_BUILD_DIR              build output (default <repo>/build)
#   ASYA_CHAOS_AMQP_PORT        AMQP port of the private broker (default 5697)
#   ASYA_CHAOS_MGMT_PORT        management port (default 15697)
#   ASYA_CHAOS_SEED             seed of the fault schedule (default: random, printed)
#   ASYA_TEST_KEEP_RUNS         how many old run folders to keep (default 5)
#   PYTHON                      python with pika and requests (default /usr/bin/python3)
#
# Logs of every process go to $ASYA_BUILD_DIR/test-runs/chaos-<timestamp>/.
# Exit status: chaos.py's (0 = every id accounted for, payloads right), or 2
# when the environment could not be brought up.
set -u

SUITE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SUITE_DIR/../.." && pwd)
BUILD=${ASYA_BUILD_DIR:-$ROOT/build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "run.sh: no build dir ${ASYA_BUILD_DIR:-$ROOT/build}; run make" >&2; exit 2; }
AMQP_PORT=${ASYA_CHAOS_AMQP_PORT:-5697}
MGMT_PORT=${ASYA_CHAOS_MGMT_PORT:-15697}
PY=${PYTHON:-/usr/bin/python3}

# shellcheck source=../lib/broker.sh
. "$ROOT/tests/lib/broker.sh"
# shellcheck source=../lib/runs.sh
. "$ROOT/tests/lib/runs.sh"

say() { echo "chaos: $*" >&2; }

for b in asya-sidecar asya-runtime; do
    [ -x "$BUILD/bin/$b" ] || { say "missing $BUILD/bin/$b (run make)"; exit 2; }
done
[ -f "$BUILD/lib/asya/test_handlers.so" ] || { say "missing $BUILD/lib/asya/test_handlers.so (run make)"; exit 2; }
"$PY" -c 'import pika, requests' >/dev/null 2>&1 ||
    { say "$PY lacks pika/requests (apt-get install python3-pika python3-requests)"; exit 2; }

RUN_DIR=$(new_run_dir "$BUILD/test-runs" chaos) || exit 2

# Unix socket paths are limited to 107 bytes: keep sockets in a short /tmp dir.
SOCK_DIR=$(mktemp -d /tmp/asya-chaos.XXXXXX)
# The broker runs as the rabbitmq user when we are root: give it a dir it can reach.
BROKER_DIR=$(mktemp -d /tmp/asya-chaos-broker.XXXXXX)
RC=2
BROKER_STARTED=
CHAOS_PID=

teardown()
{
    local rc=$RC
    trap - EXIT INT TERM
    # chaos.py stops its processes itself; if it was killed, stop what it
    # recorded ("<pid> <name>" per line in $RUN_DIR/pids), and only those.
    if [ -n "$CHAOS_PID" ] && kill -0 "$CHAOS_PID" 2>/dev/null; then
        kill -TERM "$CHAOS_PID" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$CHAOS_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$CHAOS_PID" 2>/dev/null
    fi
    if [ -f "$RUN_DIR/pids" ]; then
        while read -r pid name; do
            if kill -0 "$pid" 2>/dev/null && grep -q 'asya-' "/proc/$pid/cmdline" 2>/dev/null; then
                say "stopping leftover $name (pid $pid)"
                kill -KILL "$pid" 2>/dev/null
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
# Fresh queue statistics every 0.5 s, so "no unacked messages" is seen promptly.
echo "collect_statistics_interval = 500" >"$SOCK_DIR/broker-extra.conf"
BROKER_STARTED=yes # from here on, stop whatever (half-)started
if ! BROKER_EXTRA_CONF=$SOCK_DIR/broker-extra.conf \
    broker_start "$BROKER_DIR" "$AMQP_PORT" "$MGMT_PORT" 2> >(tee "$RUN_DIR/broker-ctl.log" >&2); then
    say "broker did not start"
    exit 2
fi

export ASYA_CHAOS_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
export ASYA_CHAOS_MGMT_URL=http://127.0.0.1:$MGMT_PORT
export ASYA_CHAOS_RUN_DIR=$RUN_DIR
export ASYA_CHAOS_SOCK_DIR=$SOCK_DIR
export ASYA_CHAOS_BROKER_DIR=$BROKER_DIR
export ASYA_CHAOS_BROKER_SH=$ROOT/tests/lib/broker.sh
export ASYA_BUILD_DIR=$BUILD

cd "$ROOT" || exit 2
# In the background + wait, so the INT/TERM traps run at once.
"$PY" -u "$SUITE_DIR/chaos.py" ${ASYA_CHAOS_SEED:+--seed "$ASYA_CHAOS_SEED"} "$@" \
    > >(trap '' INT TERM; exec tee "$RUN_DIR/chaos.log") 2>&1 &
CHAOS_PID=$!
wait "$CHAOS_PID"
RC=$?
CHAOS_PID=
exit "$RC"
