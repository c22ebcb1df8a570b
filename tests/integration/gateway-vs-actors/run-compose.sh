#!/usr/bin/env bash
# run-compose.sh - the gateway-vs-actors suite through docker compose
# (`make test-integration-gateway DOCKER=1`).
#
#   tests/integration/gateway-vs-actors/run-compose.sh [pytest args...]
#   e.g. ... run-compose.sh -k pipeline
#
# 1. builds the images asya-runtime:local, asya-sidecar:local, asya-gateway:local
#    (compose/Dockerfile.*) and the tester image, sending the engine only the
#    sources they need;
# 2. starts docker-compose.yml: RabbitMQ (definitions loaded at start),
#    PostgreSQL, asya-gateway with gateway-routes.yaml, one runtime + sidecar
#    container pair per line of actors.txt (end actors included), and waits until
#    every container's healthcheck passes;
# 3. runs the pytest suite (tests/, the same as run.sh's) in the tester
#    container.  The engine's API socket is mounted into it: test_resilience.py
#    restarts the gateway container (SIGTERM, SIGKILL, a 30 s outage) and the
#    PostgreSQL container in the middle of 200 jobs through it, and after every
#    test the fixtures check that no actor container died;
# 4. always saves every container's log to build/test-runs/ and runs
#    `down -v --remove-orphans`, even when a step fails or on Ctrl-C.
#
# Needs a running Docker engine on a unix socket (DOCKER_HOST=unix://... or
# /var/run/docker.sock; with another engine address the restart tests are
# skipped), `docker compose` or `docker-compose`, and the base images
# debian:bookworm-slim, rabbitmq:3-management and postgres:15 (pulled from a
# registry, or local stand-ins: scripts/ci-container-images.sh).
#
# Environment:
#   ASYA_LOG_LEVEL          passed to every container (default INFO)
#   ASYA_TEST_AMQP_PORT     127.0.0.1 port published for AMQP (default 5793)
#   ASYA_TEST_MGMT_PORT     ... for management (default 15793)
#   ASYA_TEST_PG_PORT       ... for PostgreSQL (default 55793)
#   ASYA_TEST_GATEWAY_PORT  ... for the gateway (default 18793)
#   ASYA_COMPOSE_PROJECT    compose project name (default asya-gva)
#   ASYA_COMPOSE_KEEP=1     leave everything running (no down -v) to look around
#
# Exit status: pytest's; 2 when the environment could not be brought up.
set -u

SUITE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SUITE_DIR/../../.." && pwd)
PROJECT=${ASYA_COMPOSE_PROJECT:-asya-gva}
export ASYA_COMPOSE_PROJECT=$PROJECT
LOG_LEVEL=${ASYA_LOG_LEVEL:-INFO}
LOG_LEVEL_SET=${ASYA_LOG_LEVEL:+yes}
export ASYA_LOG_LEVEL=$LOG_LEVEL

say() { echo "run-compose.sh: $*" >&2; }

# shellcheck source=../../lib/runs.sh
. "$ROOT/tests/lib/runs.sh"
# shellcheck source=../../lib/compose.sh
. "$ROOT/tests/lib/compose.sh"
compose_init "$PROJECT" "$SUITE_DIR/docker-compose.yml" "$SUITE_DIR"

# The engine's socket for the tester (the restart tests), when it is a local one.
sock=
case ${DOCKER_HOST:-unix:///var/run/docker.sock} in
unix://*) sock=${DOCKER_HOST:-unix:///var/run/docker.sock}; sock=${sock#unix://} ;;
esac
if [ -n "$sock" ] && [ -S "$sock" ]; then
    export ASYA_COMPOSE_DOCKER_SOCK=$sock ASYA_COMPOSE_DOCKER_SOCK_IN=/var/run/docker.sock
    ASYA_COMPOSE_DOCKER_GID=$(stat -c %g "$sock")
    export ASYA_COMPOSE_DOCKER_GID
else
    say "note: the engine is not on a local unix socket (DOCKER_HOST=${DOCKER_HOST:-}); the tests that restart containers are skipped"
fi

RUN_DIR=$(new_run_dir "$ROOT/build/test-runs" gateway-vs-actors-compose) || exit 2

RC=2
UP=

# save_queues RC: on a failure, the state it left: queue depths (rabbitmqctl in
# the broker's container); compose_teardown calls it after saving `ps`.
# shellcheck disable=SC2317 # called by compose_teardown
save_queues()
{
    [ "$1" -ne 0 ] || return 0
    dc exec -T rabbitmq rabbitmqctl list_queues name messages consumers \
        >"$RUN_DIR/queues.txt" 2>&1
}
trap 'compose_teardown save_queues' EXIT
run_signal_traps

# ---- the compose file must have a pair per actor, and metrics.txt a line --------
services=$(compose_services) || exit 2
missing=
while read -r queue handler timeout conc kind; do
    short=${queue#test-}
    short=${short%-queue}
    for s in "rt-$short" "sc-$short"; do
        grep -qx "$s" <<<"$services" || missing="$missing $s"
    done
    grep -A3 "^  rt-$short:" "$SUITE_DIR/docker-compose.yml" | grep -q "handlers/$handler\$" ||
        missing="$missing rt-$short(handler $handler)"
    grep -A8 "^  sc-$short:" "$SUITE_DIR/docker-compose.yml" | grep -q "ASYA_RUNTIME_TIMEOUT: $timeout\$" ||
        missing="$missing sc-$short(timeout $timeout)"
    grep -A9 "^  sc-$short:" "$SUITE_DIR/docker-compose.yml" | grep -q "ASYA_CONCURRENCY: \"$conc\"\$" ||
        missing="$missing sc-$short(concurrency $conc)"
    end=false
    [ "${kind:-}" = end ] && end=true
    grep -A10 "^  sc-$short:" "$SUITE_DIR/docker-compose.yml" | grep -q "ASYA_IS_END_ACTOR: \"$end\"\$" ||
        missing="$missing sc-$short(end $end)"
    grep -q "^$queue http://sc-$short:8080\$" "$SUITE_DIR/docker/metrics.txt" ||
        missing="$missing docker/metrics.txt($queue)"
done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SUITE_DIR/actors.txt")
if [ -n "$missing" ]; then
    say "docker-compose.yml disagrees with actors.txt; missing or different:$missing"
    exit 2
fi
PAIRS=$(grep -E '^(rt|sc)-' <<<"$services" | tr '\n' ' ')
SERVICES="rabbitmq postgres gateway $PAIRS"

# ---- 1. images ------------------------------------------------------------------
compose_pull_bases debian:bookworm-slim rabbitmq:3-management postgres:15
SRC=(Makefile asya-handler.pc.in include src compose)
compose_build asya-runtime:local compose/Dockerfile.runtime "$ROOT" "${SRC[@]}" handlers \
    tests/integration/sidecar-vs-runtime/handlers
compose_build asya-sidecar:local compose/Dockerfile.sidecar "$ROOT" "${SRC[@]}"
compose_build asya-gateway:local compose/Dockerfile.gateway "$ROOT" "${SRC[@]}" db
compose_build asya-gva-tester:local docker/Dockerfile.tester "$SUITE_DIR" docker

# ---- 2. up and healthy ----------------------------------------------------------
# shellcheck disable=SC2086
compose_start "starting RabbitMQ, PostgreSQL, the gateway and $(wc -w <<<"$PAIRS") runtime/sidecar containers" $SERVICES

# ---- 3. the pytest suite ----------------------------------------------------------
pytest_log_args "$LOG_LEVEL" "$LOG_LEVEL_SET"
PYTEST=(python3 -m pytest -p no:cacheprovider -v -rfEsxX --durations=10 "${PYTEST_LOG_ARGS[@]}")
t0=$SECONDS
dc run --rm --no-deps -T tester "${PYTEST[@]}" tests "$@" 2>&1 | tee "$RUN_DIR/pytest.log"
RC=${PIPESTATUS[0]}
say "pytest in the tester container: exit $RC after $((SECONDS - t0)) s"
exit "$RC"
