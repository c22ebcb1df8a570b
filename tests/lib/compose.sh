#!/usr/bin/env bash
# compose.sh - the docker compose side of the test harnesses (sourced by
# tests/integration/*/run-compose.sh, after tests/lib/runs.sh).
#
# The caller defines say() and the globals RUN_DIR (the run folder), RC (the
# exit status teardown exits with) and UP (non-empty once the project may have
# containers); compose_init sets DC, the compose command, which dc() runs.

# compose_init PROJECT COMPOSE-FILE PROJECT-DIR: exit 2 unless docker, an engine
# and `docker compose` or `docker-compose` are there; set DC to that command with
# the project name, file and folder; without the buildx plugin the docker CLI
# needs the classic builder (DOCKER_BUILDKIT=0).
compose_init()
{
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
    DC+=(-p "$1" -f "$2" --project-directory "$3")
    docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
}

# dc ARGS...: the compose command of this project.
dc() { "${DC[@]}" "$@"; }

# compose_teardown [HOOK]: the EXIT trap.  When UP, save `ps` and every
# service's log into RUN_DIR, then `down -v --remove-orphans` (or leave it all
# running with ASYA_COMPOSE_KEEP=1); HOOK, a function, is called with the exit
# status right after `ps` is saved (e.g. to save more state on a failure).  Then
# say passed or FAILED and exit with RC.
compose_teardown()
{
    local rc=$RC hook=${1:-} s
    trap - EXIT INT TERM
    if [ -n "$UP" ]; then
        dc ps >"$RUN_DIR/ps.txt" 2>&1
        [ -z "$hook" ] || "$hook" "$rc"
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
    run_verdict "$rc" "$RUN_DIR" container
    exit "$rc"
}

# compose_services: print the compose file's services, one a line; when it does
# not parse, say why and return 1 (call as `services=$(compose_services) || exit 2`).
compose_services()
{
    dc config --services 2>"$RUN_DIR/config.err" && return 0
    say "docker-compose.yml does not parse:"
    cat "$RUN_DIR/config.err" >&2
    return 1
}

# compose_pull_bases IMAGE...: pull each base image the engine does not have;
# exit 2 when one cannot be had.
compose_pull_bases()
{
    local base
    for base in "$@"; do
        docker image inspect "$base" >/dev/null 2>&1 && continue
        say "pulling $base (on a machine without a registry, run scripts/ci-container-images.sh first)"
        docker pull -q "$base" >/dev/null || { say "no image $base"; exit 2; }
    done
}

# compose_build TAG DOCKERFILE CONTEXT-DIR PATHS...: build TAG with a tar of only
# PATHS (below CONTEXT-DIR) as context, the log in RUN_DIR; exit 2 when it fails.
compose_build()
{
    local tag=$1 file=$2 dir=$3 t0=$SECONDS
    shift 3
    if ! tar -C "$dir" -c "$@" | docker build -f "$file" -t "$tag" - >"$RUN_DIR/build-${tag%%:*}.log" 2>&1; then
        tail -n 30 "$RUN_DIR/build-${tag%%:*}.log" >&2
        say "building $tag failed (log: $RUN_DIR/build-${tag%%:*}.log)"
        exit 2
    fi
    say "image $tag built in $((SECONDS - t0)) s"
}

# compose_start MESSAGE SERVICE...: remove the leftovers of an interrupted run,
# set UP, say MESSAGE, `up -d` the SERVICEs and wait until they are healthy;
# exit 2 when they do not come up.
compose_start()
{
    local t0
    dc down -v --remove-orphans >/dev/null 2>&1 # leftovers of an interrupted run
    UP=yes
    t0=$SECONDS
    say "$1"
    shift
    if ! dc up -d --no-build "$@" >"$RUN_DIR/up.log" 2>&1; then
        tail -n 30 "$RUN_DIR/up.log" >&2
        say "compose up failed"
        exit 2
    fi
    compose_wait_healthy 180 "$@"
    say "all $# containers healthy after $((SECONDS - t0)) s"
}

# compose_wait_healthy SECONDS SERVICE...: wait until every SERVICE's container
# is running and its healthcheck passes; exit 2 when one exits (its last log
# lines shown) or after SECONDS.
compose_wait_healthy()
{
    local secs=$1 deadline pending s id st
    shift
    deadline=$((SECONDS + secs))
    while :; do
        pending=
        for s in "$@"; do
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
        if [ $SECONDS -ge "$deadline" ]; then
            say "not healthy after $secs s:$pending"
            exit 2
        fi
        sleep 1
    done
}
