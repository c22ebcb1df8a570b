#!/usr/bin/env bash
# run-compose.sh - the sidecar-vs-runtime seed suite through docker compose
# (`make test-integration-sidecar DOCKER=1`).
#
#   tests/integration/sidecar-vs-runtime/run-compose.sh [pytest args...]
#   e.g. ... run-compose.sh -k fanout
#
# 1. builds the images asya-runtime:local and asya-sidecar:local
#    (compose/Dockerfile.*) and the tester image, sending the engine only the
#    sources they need;
# 2. starts docker-compose.yml: RabbitMQ (definitions loaded at start), one
#    runtime + sidecar container pair per scenario, and waits until every
#    container's healthcheck passes;
# 3. runs the pytest suite (tests/) in the tester container against the compose
#    broker;
# 4. kills the runtime container of test-echo-queue while it is working through
#    slow envelopes: its sidecar must pause (no consumer, messages kept), and
#    after the container is started again every envelope must reach happy-end
#    and none error-end (docker/kill_check.py);
# 5. restarts the RabbitMQ container: every sidecar must reconnect (healthy
#    again) and a pipeline across three actors must work;
# 6. always saves every container's log to build/test-runs/ and runs
#    `down -v --remove-orphans`, even when a step fails or on Ctrl-C.
#
# Needs a running Docker engine and `docker compose` or `docker-compose`, and
# the base images debian:bookworm-slim and rabbitmq:3-management (pulled from a
# registry, or local stand-ins: scripts/ci-container-images.sh).
#
# Environment:
#   ASYA_LOG_LEVEL         passed to every container (default INFO)
#   ASYA_TEST_AMQP_PORT    127.0.0.1 port published for AMQP (default 5673)
#   ASYA_TEST_MGMT_PORT    127.0.0.1 port published for management (default 15673)
#   ASYA_COMPOSE_PROJECT   compose project name (default asya-svr)
#   ASYA_COMPOSE_KILL=0    skip step 4
#   ASYA_COMPOSE_RESTART=0 skip step 5
#   ASYA_COMPOSE_KEEP=1    leave everything running (no down -v) to look around
#
# Exit status: 0 when pytest and the kill check pass; pytest's status or 1 when
# one fails; 2 when the environment could not be brought up.
set -u

SUITE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SUITE_DIR/../../.." && pwd)
PROJECT=${ASYA_COMPOSE_PROJECT:-asya-svr}
LOG_LEVEL=${ASYA_LOG_LEVEL:-INFO}
LOG_LEVEL_SET=${ASYA_LOG_LEVEL:+yes}
export ASYA_LOG_LEVEL=$LOG_LEVEL
KILL_QUEUE=test-echo-queue
KILL_SERVICE="rt-echo"
KILL_SIDECAR="sc-echo"

say() { echo "run-compose.sh: $*" >&2; }

# shellcheck source=../../lib/runs.sh
. "$ROOT/tests/lib/runs.sh"
# shellcheck source=../../lib/compose.sh
. "$ROOT/tests/lib/compose.sh"
compose_init "$PROJECT" "$SUITE_DIR/docker-compose.yml" "$SUITE_DIR"
RUN_DIR=$(new_run_dir "$ROOT/build/test-runs" sidecar-vs-runtime-compose) || exit 2
STAMP=$(date +%Y%m%d-%H%M%S) # tags this run's test ids

RC=2
UP=

trap compose_teardown EXIT
run_signal_traps

# ---- the compose file must have a pair per scenario ---------------------------
services=$(compose_services) || exit 2
missing=
while read -r queue handler _timeout; do
    short=${queue#test-}
    short=${short%-queue}
    for s in "rt-$short" "sc-$short"; do
        grep -qx "$s" <<<"$services" || missing="$missing $s"
    done
    grep -A3 "^  rt-$short:" "$SUITE_DIR/docker-compose.yml" | grep -q "test_handlers.so:$handler\$" ||
        missing="$missing rt-$short(handler $handler)"
done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SUITE_DIR/scenarios.txt")
if [ -n "$missing" ]; then
    say "docker-compose.yml disagrees with scenarios.txt; missing or different:$missing"
    exit 2
fi
PAIRS=$(grep -E '^(rt|sc)-' <<<"$services" | tr '\n' ' ')

# ---- 1. images ------------------------------------------------------------------
compose_pull_bases debian:bookworm-slim rabbitmq:3-management
SRC=(Makefile asya-handler.pc.in include src compose)
compose_build asya-runtime:local compose/Dockerfile.runtime "$ROOT" "${SRC[@]}" handlers \
    tests/integration/sidecar-vs-runtime/handlers
compose_build asya-sidecar:local compose/Dockerfile.sidecar "$ROOT" "${SRC[@]}"
compose_build asya-svr-tester:local docker/Dockerfile.tester "$SUITE_DIR" docker

# ---- 2. up and healthy ----------------------------------------------------------
# shellcheck disable=SC2086
compose_start "starting RabbitMQ and $(wc -w <<<"$PAIRS") runtime/sidecar containers" rabbitmq $PAIRS

# ---- 3. the pytest suite ----------------------------------------------------------
pytest_log_args "$LOG_LEVEL" "$LOG_LEVEL_SET"
PYTEST=(python3 -m pytest -p no:cacheprovider -v "${PYTEST_LOG_ARGS[@]}")
t0=$SECONDS
dc run --rm --no-deps tester "${PYTEST[@]}" tests "$@"
RC=$?
say "pytest in the tester container: exit $RC after $((SECONDS - t0)) s"
[ "$RC" -eq 0 ] || exit "$RC"

# ---- 4. kill a runtime container mid-run ------------------------------------------
if [ "${ASYA_COMPOSE_KILL:-1}" != 0 ]; then
    t0=$SECONDS
    kc() { dc run --rm --no-deps -T tester python3 docker/kill_check.py "$@"; }
    run=$STAMP-$$
    N=20
    say "kill check: $N slow envelopes to $KILL_QUEUE, then docker kill of $KILL_SERVICE"
    kc publish "$KILL_QUEUE" "$N" "$run" || { RC=1; exit 1; }
    sleep 2 # echo_handler takes 0.5 s per envelope: the runtime is mid-request
    rt=$(dc ps -q "$KILL_SERVICE")
    sc=$(dc ps -q "$KILL_SIDECAR")
    docker kill -s KILL "$rt" >/dev/null || { say "docker kill failed"; RC=1; exit 1; }
    kc paused "$KILL_QUEUE" || { RC=1; exit 1; }
    if docker exec "$sc" /usr/local/bin/asya-probe /readyz >"$RUN_DIR/readyz-while-dead.txt" 2>&1; then
        say "kill check: the sidecar reports ready while its runtime is dead"
        RC=1
        exit 1
    fi
    say "kill check: sidecar /readyz while the runtime is dead: $(cat "$RUN_DIR/readyz-while-dead.txt")"
    docker start "$rt" >/dev/null || { say "docker start failed"; RC=1; exit 1; }
    kc collect "$KILL_QUEUE" "$N" "$run" || { RC=1; exit 1; }
    state=$(docker inspect -f '{{.State.Status}} restarts={{.RestartCount}}' "$sc")
    if [ "${state%% *}" != running ]; then
        say "kill check: the sidecar is $state after the runtime's death"
        RC=1
        exit 1
    fi
    say "kill check passed in $((SECONDS - t0)) s (sidecar $state)"
fi

# ---- 5. restart RabbitMQ: every sidecar reconnects ----------------------------------
if [ "${ASYA_COMPOSE_RESTART:-1}" != 0 ]; then
    t0=$SECONDS
    say "broker restart: docker restart of rabbitmq"
    docker restart -t 20 "$(dc ps -q rabbitmq)" >/dev/null || { say "docker restart failed"; RC=1; exit 1; }
    # Sidecars reconnect with backoff (1, 2, 4, 8, 16 s...): wait until every one
    # answers /readyz again (the healthcheck status would lag: it turns
    # unhealthy only after many failed probes).
    sleep 2
    deadline=$((SECONDS + 120))
    while :; do
        pending=
        st=$(docker inspect -f '{{.State.Status}}/{{.State.Health.Status}}' "$(dc ps -q rabbitmq)" 2>/dev/null)
        [ "$st" = running/healthy ] || pending=" rabbitmq($st)"
        if [ -z "$pending" ]; then
            for s in $PAIRS; do
                case $s in sc-*) ;; *) continue ;; esac
                docker exec "$(dc ps -q "$s")" /usr/local/bin/asya-probe /readyz >/dev/null 2>&1 ||
                    pending="$pending $s"
            done
        fi
        [ -z "$pending" ] && break
        if [ $SECONDS -ge $deadline ]; then
            say "broker restart: not healthy again after 120 s:$pending"
            RC=1
            exit 1
        fi
        sleep 2
    done
    dc run --rm --no-deps -T tester python3 docker/kill_check.py pipeline "$STAMP-$$" || { RC=1; exit 1; }
    say "broker restart check passed in $((SECONDS - t0)) s"
fi
RC=0
exit 0
