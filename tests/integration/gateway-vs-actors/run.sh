#!/usr/bin/env bash
# run.sh - the gateway-vs-actors seed suite.
#
# Starts, all as local processes from the build:
#   - a private PostgreSQL (tests/lib/postgres.sh) for the gateway's jobs,
#   - a private RabbitMQ node (tests/lib/broker.sh) with rabbitmq-definitions.json,
#   - asya-gateway with gateway-routes.yaml and the PostgreSQL store,
#   - one asya-runtime + asya-sidecar pair per line of actors.txt (the six test
#     actors and the end actors happy-end / error-end), every sidecar with
#     ASYA_GATEWAY_URL pointing at the gateway,
# waits until the gateway's and every sidecar's /readyz answer 200, runs pytest on
# tests/, and always tears everything down (also on failure or Ctrl-C).
#
#   ASYA_BUILD_DIR=$PWD/build tests/integration/gateway-vs-actors/run.sh [pytest args...]
#   e.g. ... run.sh -k pipeline
#
# Environment:
#   ASYA_BUILD_DIR          build output (default <repo>/build): bin/asya-gateway,
#                           bin/asya-sidecar, bin/asya-runtime, lib/asya/test_handlers.so,
#                           lib/asya/crew.so
#   ASYA_LOG_LEVEL          passed to the gateway, every runtime and sidecar, and pytest
#                           (default INFO)
#   ASYA_TEST_AMQP_PORT     AMQP port of the private broker (default 5792)
#   ASYA_TEST_MGMT_PORT     its management port (default 15792)
#   ASYA_TEST_PG_PORT       PostgreSQL port (default 55792)
#   ASYA_TEST_GATEWAY_PORT  the gateway's HTTP port (default 18792)
#   ASYA_TEST_METRICS_PORT  first sidecar metrics port, one per actor (default 18800)
#   ASYA_TEST_KEEP_RUNS     how many old run folders to keep (default 5)
#   PYTHON                  python with pytest, pika and requests (default: the first of
#                           python3, /usr/bin/python3 that has them)
#
# What the tests get (see README.md): ASYA_TEST_GATEWAY_URL, the gateway's control
# files (gateway.env: its environment, one VAR=value a line; gateway.pid: the pid of
# the running gateway, rewritten by a test that restarts it), ASYA_TEST_PG_DIR for
# tests/lib/postgres.sh restart, and the pids file ("<queue> <role> <pid>" a line).
#
# Logs of every process: $ASYA_BUILD_DIR/test-runs/gateway-vs-actors-<time>-<pid>/.
# Exit status: pytest's, or 2 when the environment could not be brought up.
set -u

SUITE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SUITE_DIR/../../.." && pwd)
BUILD=${ASYA_BUILD_DIR:-$ROOT/build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "run.sh: no build dir ${ASYA_BUILD_DIR:-$ROOT/build}; run make" >&2; exit 2; }
AMQP_PORT=${ASYA_TEST_AMQP_PORT:-5792}
MGMT_PORT=${ASYA_TEST_MGMT_PORT:-15792}
PG_PORT=${ASYA_TEST_PG_PORT:-55792}
GW_PORT=${ASYA_TEST_GATEWAY_PORT:-18792}
METRICS_PORT=${ASYA_TEST_METRICS_PORT:-18800}
LOG_LEVEL=${ASYA_LOG_LEVEL:-INFO}
LOG_LEVEL_SET=${ASYA_LOG_LEVEL:+yes}

# shellcheck source=../../lib/broker.sh
. "$ROOT/tests/lib/broker.sh"
# shellcheck source=../../lib/postgres.sh
. "$ROOT/tests/lib/postgres.sh"
# shellcheck source=../../lib/runs.sh
. "$ROOT/tests/lib/runs.sh"

say() { echo "run.sh: $*" >&2; }

RUNTIME_BIN=$BUILD/bin/asya-runtime
SIDECAR_BIN=$BUILD/bin/asya-sidecar
GATEWAY_BIN=$BUILD/bin/asya-gateway
LIB_DIR=$BUILD/lib/asya
for f in "$RUNTIME_BIN" "$SIDECAR_BIN" "$GATEWAY_BIN" "$LIB_DIR/test_handlers.so" "$LIB_DIR/crew.so"; do
    [ -e "$f" ] || { say "missing $f (run make)"; exit 2; }
done
[ -x "${PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ] ||
    { say "PostgreSQL 15 not found (apt-get install postgresql-15)"; exit 2; }

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

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mapfile -t ACTORS < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SUITE_DIR/actors.txt")
for p in "$GW_PORT" $(seq "$METRICS_PORT" $((METRICS_PORT + ${#ACTORS[@]} - 1))); do
    if port_busy "$p"; then
        say "port $p on 127.0.0.1 is already in use (another run of this suite?)"
        exit 2
    fi
done

# ---- run folder -------------------------------------------------------------
RUN_DIR=$(new_run_dir "$BUILD/test-runs" gateway-vs-actors) || exit 2

# Unix socket paths are limited to 107 bytes; use the run folder when it fits.
if [ ${#RUN_DIR} -lt 60 ]; then
    SOCK_DIR=$RUN_DIR/sockets
    mkdir -p "$SOCK_DIR"
else
    SOCK_DIR=$(mktemp -d /tmp/asya-gva-sock.XXXXXX)
fi
# The broker runs as rabbitmq and PostgreSQL as postgres when we are root: give
# each a dir it can own (short: PostgreSQL's socket lives inside it).
BROKER_DIR=$(mktemp -d /tmp/asya-gva-broker.XXXXXX)
PG_DIR=$(mktemp -d /tmp/asya-gva-pg.XXXXXX)
PIDS_FILE=$RUN_DIR/pids          # "<queue> <role> <pid>" per runtime and sidecar
GW_ENV_FILE=$RUN_DIR/gateway.env # the gateway's environment, one VAR=value a line
GW_PID_FILE=$RUN_DIR/gateway.pid # the running gateway (tests that restart it rewrite it)
: >"$PIDS_FILE"

RC=2
BROKER_STARTED=
PG_STARTED=
PYTEST_PID=

# ---- teardown (always) ------------------------------------------------------
alive() {
    # alive PID: running, not a zombie.
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_pids()
{
    # stop_pids SIGNAL PID... : signal, wait up to 15 s, then SIGKILL the rest.
    local sig=$1 p left
    shift
    [ $# -gt 0 ] || return 0
    kill "-$sig" "$@" 2>/dev/null
    for _ in $(seq 1 150); do
        left=
        for p in "$@"; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && break
        sleep 0.1
    done
    if [ -n "$left" ]; then
        say "killing processes that ignored SIG$sig:$left"
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null
    fi
    for p in "$@"; do wait "$p" 2>/dev/null; done
    return 0
}

# The gateway in gateway.pid, if it is one of ours (a test may have started it).
gateway_pid()
{
    local pid
    pid=$(cat "$GW_PID_FILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" && grep -qa asya-gateway "/proc/$pid/cmdline" 2>/dev/null &&
        echo "$pid"
}

teardown()
{
    local rc=$RC gw
    trap - EXIT INT TERM
    # Interrupted while pytest runs: stop it (its fixtures may not get to run).
    if [ -n "$PYTEST_PID" ] && kill -0 "$PYTEST_PID" 2>/dev/null; then
        kill -TERM "$PYTEST_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$PYTEST_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PYTEST_PID" 2>/dev/null
        wait "$PYTEST_PID" 2>/dev/null
    fi
    if [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ]; then
        while read -r q role pid; do
            alive "$pid" ||
                say "note: $role of $q (pid $pid) had exited before teardown; see $RUN_DIR/$q.$role.log"
        done <"$PIDS_FILE"
    fi
    # Sidecars first (they hand unfinished work back to the broker), then
    # runtimes, then the gateway.
    # shellcheck disable=SC2046 # one pid per word
    stop_pids TERM $(awk '$2 == "sidecar" {print $3}' "$PIDS_FILE")
    # shellcheck disable=SC2046
    stop_pids TERM $(awk '$2 == "runtime" {print $3}' "$PIDS_FILE")
    if gw=$(gateway_pid); then
        stop_pids TERM "$gw"
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
    rm -f "$SOCK_DIR"/*.sock "$SOCK_DIR"/*.ready
    rmdir "$SOCK_DIR" 2>/dev/null
    run_verdict "$rc" "$RUN_DIR" process
    exit "$rc"
}
trap teardown EXIT
run_signal_traps

# Our children get only the ASYA_* variables we give them.
mapfile -t UNSET_ASYA < <(compgen -e | grep '^ASYA_' | sed 's/^/-u/')

say "run folder $RUN_DIR"

# ---- runtimes (no broker needed), PostgreSQL and the broker, in parallel ------
i=0
for line in "${ACTORS[@]}"; do
    read -r queue handler _timeout conc kind <<<"$line"
    mode=payload
    [ "${kind:-}" = end ] && mode=envelope
    rm -f "$SOCK_DIR/$queue.sock" "$SOCK_DIR/$queue.ready"
    env "${UNSET_ASYA[@]}" \
        ASYA_HANDLER="$LIB_DIR/$handler" \
        ASYA_HANDLER_MODE="$mode" \
        ASYA_SOCKET_PATH="$SOCK_DIR/$queue.sock" \
        ASYA_READY_FILE="$SOCK_DIR/$queue.ready" \
        ASYA_RUNTIME_WORKERS="$conc" \
        ASYA_LOG_LEVEL="$LOG_LEVEL" \
        "$RUNTIME_BIN" >"$RUN_DIR/$queue.runtime.log" 2>&1 </dev/null &
    echo "$queue runtime $!" >>"$PIDS_FILE"
    i=$((i + 1))
done

PG_STARTED=yes # from here on, stop whatever (half-)started
BROKER_STARTED=yes
pg_start "$PG_DIR" "$PG_PORT" >"$RUN_DIR/postgres-ctl.log" 2>&1 </dev/null &
PG_JOB=$!
BROKER_EXTRA_CONF=$SUITE_DIR/rabbitmq.conf \
    broker_start "$BROKER_DIR" "$AMQP_PORT" "$MGMT_PORT" "$SUITE_DIR/rabbitmq-definitions.json" \
    >"$RUN_DIR/broker-ctl.log" 2>&1 </dev/null &
BROKER_JOB=$!
if ! wait "$PG_JOB"; then
    say "PostgreSQL did not start:"
    tail -n 20 "$RUN_DIR/postgres-ctl.log" >&2
    wait "$BROKER_JOB"
    exit 2
fi
say "PostgreSQL ready on 127.0.0.1:$PG_PORT"
if ! wait "$BROKER_JOB"; then
    say "the broker did not start:"
    tail -n 40 "$RUN_DIR/broker-ctl.log" >&2
    exit 2
fi
say "RabbitMQ ready on 127.0.0.1:$AMQP_PORT (management $MGMT_PORT)"
AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
MGMT_URL=http://127.0.0.1:$MGMT_PORT
PG_URL=$(pg_url "$PG_DIR") || exit 2
GW_URL=http://127.0.0.1:$GW_PORT

# ---- the gateway ------------------------------------------------------------
cat >"$GW_ENV_FILE" <<EOF
PATH=$PATH
LANG=C.UTF-8
ASYA_GATEWAY_PORT=$GW_PORT
ASYA_GATEWAY_ADDR=127.0.0.1
ASYA_RABBITMQ_URL=$AMQP_URL
ASYA_RABBITMQ_EXCHANGE=asya
ASYA_DATABASE_URL=$PG_URL
ASYA_CONFIG_PATH=$SUITE_DIR/gateway-routes.yaml
ASYA_GATEWAY_MIGRATIONS_DIR=$ROOT/db
ASYA_LOG_LEVEL=$LOG_LEVEL
EOF
mapfile -t GW_ENV <"$GW_ENV_FILE"
env -i "${GW_ENV[@]}" "$GATEWAY_BIN" >"$RUN_DIR/gateway.log" 2>&1 </dev/null &
echo $! >"$GW_PID_FILE"
disown $! # tests kill and restart it: no job-control notes from bash about it

# ---- wait for the runtimes, then start the sidecars -------------------------
deadline=$((SECONDS + 30))
while :; do
    pending=
    while read -r q role pid; do
        [ "$role" = runtime ] || continue
        if ! alive "$pid"; then
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
say "${#ACTORS[@]} runtimes ready"

i=0
METRICS_URLS=()
for line in "${ACTORS[@]}"; do
    read -r queue _handler timeout conc kind <<<"$line"
    end=false
    [ "${kind:-}" = end ] && end=true
    port=$((METRICS_PORT + i))
    env "${UNSET_ASYA[@]}" \
        ASYA_RABBITMQ_URL="$AMQP_URL" \
        ASYA_RABBITMQ_EXCHANGE=asya \
        ASYA_QUEUE_NAME="$queue" \
        ASYA_ACTOR_NAME="$queue" \
        ASYA_SOCKET_PATH="$SOCK_DIR/$queue.sock" \
        ASYA_RUNTIME_TIMEOUT="$timeout" \
        ASYA_CONCURRENCY="$conc" \
        ASYA_STEP_HAPPY_END=happy-end \
        ASYA_STEP_ERROR_END=error-end \
        ASYA_IS_END_ACTOR="$end" \
        ASYA_GATEWAY_URL="$GW_URL" \
        ASYA_METRICS_ADDR="127.0.0.1:$port" \
        ASYA_SHUTDOWN_TIMEOUT=10s \
        ASYA_LOG_LEVEL="$LOG_LEVEL" \
        "$SIDECAR_BIN" >"$RUN_DIR/$queue.sidecar.log" 2>&1 </dev/null &
    echo "$queue sidecar $!" >>"$PIDS_FILE"
    echo "$queue http://127.0.0.1:$port" >>"$RUN_DIR/metrics"
    METRICS_URLS+=("$queue=http://127.0.0.1:$port")
    i=$((i + 1))
done

# ---- readiness: the gateway's /readyz and every sidecar's /readyz ------------
deadline=$((SECONDS + 40))
while :; do
    pending=
    gw=$(cat "$GW_PID_FILE")
    if ! alive "$gw"; then
        say "the gateway exited during start-up:"
        tail -n 20 "$RUN_DIR/gateway.log" >&2
        exit 2
    fi
    curl -fsS -o /dev/null -m 2 "$GW_URL/readyz" 2>/dev/null || pending="$pending gateway"
    for qu in "${METRICS_URLS[@]}"; do
        q=${qu%%=*}
        pid=$(awk -v q="$q" '$1 == q && $2 == "sidecar" {print $3}' "$PIDS_FILE")
        if ! alive "$pid"; then
            say "sidecar of $q exited during start-up:"
            tail -n 20 "$RUN_DIR/$q.sidecar.log" >&2
            exit 2
        fi
        curl -fsS -o /dev/null -m 2 "${qu#*=}/readyz" 2>/dev/null || pending="$pending $q"
    done
    [ -z "$pending" ] && break
    if [ $SECONDS -ge $deadline ]; then
        say "not ready after 40 s:$pending"
        exit 2
    fi
    sleep 0.2
done
say "gateway and ${#ACTORS[@]} sidecars ready"

# ---- tests ------------------------------------------------------------------
export PYTHONPATH=$ROOT/tests/lib${PYTHONPATH:+:$PYTHONPATH}
export ASYA_BUILD_DIR=$BUILD
export ASYA_TEST_AMQP_URL=$AMQP_URL ASYA_TEST_MGMT_URL=$MGMT_URL ASYA_TEST_EXCHANGE=asya
export ASYA_TEST_GATEWAY_URL=$GW_URL
export ASYA_TEST_GATEWAY_BIN=$GATEWAY_BIN
export ASYA_TEST_GATEWAY_ENV=$GW_ENV_FILE ASYA_TEST_GATEWAY_PIDFILE=$GW_PID_FILE
export ASYA_TEST_RUN_DIR=$RUN_DIR ASYA_TEST_PIDS_FILE=$PIDS_FILE
export ASYA_TEST_METRICS_FILE=$RUN_DIR/metrics
export ASYA_TEST_PG_DIR=$PG_DIR ASYA_TEST_PG_SH=$ROOT/tests/lib/postgres.sh
export ASYA_TEST_PG_URL=$PG_URL

pytest_log_args "$LOG_LEVEL" "$LOG_LEVEL_SET"
PYTEST_ARGS=(-p no:cacheprovider -v -rfEsxX --durations=10 --junitxml="$RUN_DIR/junit.xml"
    "${PYTEST_LOG_ARGS[@]}")

cd "$SUITE_DIR" || exit 2
# pytest runs in the background so that a signal to this script is handled at
# once (bash defers traps while a foreground command runs); teardown stops it.
"$PY" -m pytest "${PYTEST_ARGS[@]}" tests "$@" > >(tee "$RUN_DIR/pytest.log") 2>&1 </dev/null &
PYTEST_PID=$!
wait "$PYTEST_PID"
RC=$?
PYTEST_PID=
if [ "$RC" -ne 0 ]; then
    # The state the failure left, before teardown changes it: queue depths and
    # every process's metrics.
    mkdir -p "$RUN_DIR/state"
    curl -fsS -m 5 -u guest:guest "$MGMT_URL/api/queues" \
        >"$RUN_DIR/state/queues.json" 2>&1
    curl -fsS -m 5 "$GW_URL/metrics" >"$RUN_DIR/state/gateway.metrics" 2>&1
    for qu in "${METRICS_URLS[@]}"; do
        curl -fsS -m 5 "${qu#*=}/metrics" >"$RUN_DIR/state/${qu%%=*}.metrics" 2>&1
    done
fi
exit "$RC"
