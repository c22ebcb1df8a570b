#!/usr/bin/env bash
# demo/run.sh - a three-actor pipeline on a private local RabbitMQ.
#
#   greeter (handlers/hello.so:hello) -> doubler -> incrementer -> happy-end
#
# Starts a broker node of its own (ports ASYA_DEMO_AMQP_PORT/ASYA_DEMO_MGMT_PORT,
# default 5674/15674), one asya-runtime + asya-sidecar pair per actor, publishes
# a handful of envelopes (good ones, a handler error, a malformed body), prints
# where each one ended up, and tears everything down.  Logs stay in the run
# folder it prints.  Run it with `make demo`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${ASYA_BUILD_DIR:-$ROOT/build}
AMQP_PORT=${ASYA_DEMO_AMQP_PORT:-5674}
MGMT_PORT=${ASYA_DEMO_MGMT_PORT:-15674}
RUN=$ROOT/build/demo-runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN/sockets" "$RUN/logs"
# shellcheck source=../tests/lib/broker.sh
source "$ROOT/tests/lib/broker.sh"

pids=()
cleanup()
{
    local rc=$?
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    broker_stop "$RUN/broker" >/dev/null 2>&1 || true
    rm -rf "$RUN/sockets"
    [ $rc -eq 0 ] || echo "demo failed; logs in $RUN/logs" >&2
    exit $rc
}
trap cleanup EXIT INT TERM

echo "== starting a private RabbitMQ on 127.0.0.1:$AMQP_PORT (about 10 s)"
broker_start "$RUN/broker" "$AMQP_PORT" "$MGMT_PORT" >"$RUN/logs/broker.log" 2>&1
URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"

start_actor()
{
    local name=$1 handler=$2
    local sock=$RUN/sockets/$name.sock
    ASYA_HANDLER=$handler ASYA_SOCKET_PATH=$sock ASYA_READY_FILE=$RUN/sockets/$name.ready \
        ASYA_RUNTIME_WORKERS=2 ASYA_LOG_LEVEL=${ASYA_LOG_LEVEL:-INFO} \
        "$BUILD/bin/asya-runtime" >"$RUN/logs/$name-runtime.log" 2>&1 &
    pids+=($!)
    ASYA_ACTOR_NAME=$name ASYA_RABBITMQ_URL=$URL ASYA_SOCKET_PATH=$sock \
        ASYA_RUNTIME_TIMEOUT=10s ASYA_CONCURRENCY=2 ASYA_METRICS_ENABLED=false \
        ASYA_LOG_LEVEL=${ASYA_LOG_LEVEL:-INFO} \
        "$BUILD/bin/asya-sidecar" >"$RUN/logs/$name-sidecar.log" 2>&1 &
    pids+=($!)
    echo "   actor $name: handler $(basename "${handler%%:*}"):${handler##*:}"
}

echo "== starting three actors"
start_actor greeter "$BUILD/lib/asya/hello.so:hello"
start_actor doubler "$BUILD/lib/asya/test_handlers.so:pipeline_doubler"
start_actor incrementer "$BUILD/lib/asya/test_handlers.so:pipeline_incrementer"
for a in greeter doubler incrementer; do
    for _ in $(seq 100); do [ -e "$RUN/sockets/$a.ready" ] && break; sleep 0.1; done
    [ -e "$RUN/sockets/$a.ready" ] || { echo "runtime $a did not become ready" >&2; exit 1; }
done

echo "== publishing envelopes and following them"
/usr/bin/python3 "$ROOT/demo/client.py" "$URL"
echo "== logs: $RUN/logs"
