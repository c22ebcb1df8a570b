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

command -v docker >/dev/null 2>&1 || { say "docker is not installed"; exit 2; }
docker info >/dev/null 2>&1 || { say "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-default}); start dockerd first"; exit 2; }
if docker compose version >/dev/null 2>&1; then
    DC=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    DC=(docker-compose)
else
    say "neither 'docker compose' nor 'docker-compose' is installed"
    exit 2
fi
DC+=(-p "$PROJECT" -f "$SUITE_DIR/docker-compose.yml" --project-directory "$SUITE_DIR")
dc() { "${DC[@]}" "$@"; }
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

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

# shellcheck source=../../lib/runs.sh
. "$ROOT/tests/lib/runs.sh"
RUN_DIR=$(new_run_dir "$ROOT/build/test-runs" gateway-vs-actors-compose) || exit 2

RC=2
UP=

teardown()
{
    local rc=$RC
    trap - EXIT INT TERM
    if [ -n "$UP" ]; then
        dc ps >"$RUN_DIR/ps.txt" 2>&1
        if [ "$rc" -ne 0 ]; then
            # The state the failure left: queue depths (management API of the broker).
            dc exec -T rabbitmq rabbitmqctl list_queues name messages consumers \
                >"$RUN_DIR/queues.txt" 2>&1
        fi
        for s in $(dc config --services 2>/dev/null); do
            dc logs --no-color --timestamps "$s" >"$RUN_DIR/$s.log" 2>&1
        done
        if [ "${ASYA_COMPOSE_KEEP:-}" = 1 ]; then
            say "ASYA_COMPOSE_KEEP=1: left running; stop with: ${DC[*]} down -v --remove-orphans"
        else
            dc down -v --remove-orphans --timeout 20 >"$RUN_DIR/down.log" 2>&1 ||
                { say "down -v failed:"; cat "$RUN_DIR/down.log" >&2; }
        fi
    fi
    if [ "$rc" -ne 0 ]; then
        say "FAILED (exit $rc); logs of every container: $RUN_DIR"
    else
        say "passed; logs: $RUN_DIR"
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'RC=130; say "interrupted"; exit 130' INT
trap 'RC=143; say "terminated"; exit 143' TERM

# ---- the compose file must have a pair per actor, and metrics.txt a line --------
services=$(dc config --services 2>"$RUN_DIR/config.err") || {
    say "docker-compose.yml does not parse:"
    cat "$RUN_DIR/config.err" >&2
    exit 2
}
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
for base in debian:bookworm-slim rabbitmq:3-management postgres:15; do
    docker image inspect "$base" >/dev/null 2>&1 && continue
    say "pulling $base (on a machine without a registry, run scripts/ci-container-images.sh first)"
    docker pull -q "$base" >/dev/null || { say "no image $base"; exit 2; }
done
build()
{
    # build TAG DOCKERFILE CONTEXT-DIR PATHS...: a tar of only PATHS as context.
    local tag=$1 file=$2 dir=$3 t0=$SECONDS
    shift 3
    if ! tar -C "$dir" -c "$@" | docker build -f "$file" -t "$tag" - >"$RUN_DIR/build-${tag%%:*}.log" 2>&1; then
        tail -n 30 "$RUN_DIR/build-${tag%%:*}.log" >&2
        say "building $tag failed (log: $RUN_DIR/build-${tag%%:*}.log)"
        exit 2
    fi
    say "image $tag built in $((SECONDS - t0)) s"
}
SRC=(Makefile asya-handler.pc.in include src compose)
build asya-runtime:local compose/Dockerfile.runtime "$ROOT" "${SRC[@]}" handlers \
    tests/integration/sidecar-vs-runtime/handlers
build asya-sidecar:local compose/Dockerfile.sidecar "$ROOT" "${SRC[@]}"
build asya-gateway:local compose/Dockerfile.gateway "$ROOT" "${SRC[@]}" db
build asya-gva-tester:local docker/Dockerfile.tester "$SUITE_DIR" docker

# ---- 2. up and healthy ----------------------------------------------------------
dc down -v --remove-orphans >/dev/null 2>&1 # leftovers of an interrupted run
UP=yes
t0=$SECONDS
say "starting RabbitMQ, PostgreSQL, the gateway and $(wc -w <<<"$PAIRS") runtime/sidecar containers"
# shellcheck disable=SC2086
if ! dc up -d --no-build $SERVICES >"$RUN_DIR/up.log" 2>&1; then
    tail -n 30 "$RUN_DIR/up.log" >&2
    say "compose up failed"
    exit 2
fi
deadline=$((SECONDS + 180))
while :; do
    pending=
    for s in $SERVICES; do
        id=$(dc ps -q "$s" 2>/dev/null)
        st=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null)
        case $st in
        running/healthy) ;;
        exited/* | dead/*)
            say "$s exited during start-up:"
            dc logs --no-color --tail 20 "$s" >&2
            exit 2
            ;;
        *) pending="$pending $s($st)" ;;
        esac
    done
    [ -z "$pending" ] && break
    if [ $SECONDS -ge $deadline ]; then
        say "not healthy after 180 s:$pending"
        exit 2
    fi
    sleep 1
done
say "all $(wc -w <<<"$SERVICES") containers healthy after $((SECONDS - t0)) s"

# ---- 3. the pytest suite ----------------------------------------------------------
PYTEST_LEVEL=$(echo "$LOG_LEVEL" | tr '[:lower:]' '[:upper:]')
[ "$PYTEST_LEVEL" = WARN ] && PYTEST_LEVEL=WARNING
PYTEST=(python3 -m pytest -p no:cacheprovider -v -rfEsxX --durations=10 --log-level="$PYTEST_LEVEL")
[ -n "$LOG_LEVEL_SET" ] && PYTEST+=(-o log_cli=true --log-cli-level="$PYTEST_LEVEL")
t0=$SECONDS
dc run --rm --no-deps -T tester "${PYTEST[@]}" tests "$@" 2>&1 | tee "$RUN_DIR/pytest.log"
RC=${PIPESTATUS[0]}
say "pytest in the tester container: exit $RC after $((SECONDS - t0)) s"
exit "$RC"
