#!/usr/bin/env bash
# ci-docker.sh - the seed suite through docker compose, on a machine where no
# Docker engine runs and no registry can be reached (CI here).  .ci/run calls
# it after the native tests.
#
#   1. installs docker.io, docker-compose and debootstrap from Debian's
#      packages (--no-install-recommends) when missing;
#   2. starts a private dockerd in the background: data root, exec root, pid
#      file and API socket under one temp dir (DOCKER_HOST points at it), so it
#      neither needs nor touches a system engine;
#   3. builds the stand-in base images (scripts/ci-container-images.sh);
#   4. runs `make test-integration-sidecar DOCKER=1` (run-compose.sh: images,
#      compose up, pytest in the tester container, kill-a-runtime and
#      broker-restart checks, `down -v`);
#   5. runs `make test-integration-gateway DOCKER=1` (its run-compose.sh:
#      PostgreSQL, RabbitMQ, asya-gateway, the actors and end actors, pytest in
#      a tester container, the gateway and PostgreSQL restarted mid-traffic,
#      `down -v`);
#   6. runs the compose/ demo pipeline (`up --exit-code-from client`: the
#      client checks every message's fate), then `down -v`;
#   7. the demo's gateway: `up -d` of the demo stack, compose/gateway-check.sh
#      (the tool demo_pipeline called with curl, its SSE stream followed to the
#      final event, the job Succeeded with the pipeline's result), `down -v`;
#   8. always: removes whatever containers, networks and volumes are left,
#      stops dockerd (and its containerd), deletes the temp dir, and removes
#      the docker0 bridge and iptables chains when this script created them,
#      and the compose networks' br-* bridges and the rules naming them (also
#      at start, when an earlier killed run left them: with the gateway suite's
#      fixed subnet they would make every container's connection time out).
#
# Environment: ASYA_LOG_LEVEL, ASYA_TEST_AMQP_PORT, ASYA_TEST_MGMT_PORT (see
# the run-compose.sh scripts), ASYA_CI_DEMO_AMQP_PORT/ASYA_CI_DEMO_MGMT_PORT/
# ASYA_CI_DEMO_GATEWAY_PORT (demo, default 5690/15690/18690).  Prints the time
# each step took.  Exit status: the first failing step's.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

say() { echo "ci-docker: $*" >&2; }
t_all=$SECONDS
[ "$(id -u)" = 0 ] || { say "needs root (apt-get, dockerd, debootstrap)"; exit 2; }

# ---- 1. packages -------------------------------------------------------------------
t0=$SECONDS
PACKAGES=(docker.io docker-compose debootstrap)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d: the package must not start the system's docker service.
    rm_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        rm_policy=yes
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$rm_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
say "packages ready in $((SECONDS - t0)) s"

# ---- 2. a private dockerd ------------------------------------------------------------
DK=$(mktemp -d /tmp/asya-ci-docker.XXXXXX)
mkdir -p "$DK/bin"
# Debian's client matches the engine (another docker CLI may come first on PATH).
ln -s /usr/bin/docker "$DK/bin/docker"
export PATH=$DK/bin:$PATH
export DOCKER_HOST=unix://$DK/docker.sock
HAD_DOCKER0=
ip link show docker0 >/dev/null 2>&1 && HAD_DOCKER0=yes
HAD_CHAINS=
iptables -t nat -S 2>/dev/null | grep -q '^-N DOCKER' && HAD_CHAINS=yes
# dockerd turns on IP forwarding and sets the FORWARD policy to DROP: put both back.
FORWARD_POLICY=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')
IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || true)
DOCKERD_PID=

iptables_delete_rules()
{
    # Delete, in the nat and filter tables, every rule whose `iptables -S` line
    # matches the ERE $1; with $2, log each one under that reason.
    local pattern=$1 why=${2:-} t rule
    command -v iptables >/dev/null || return 0
    for t in nat filter; do
        # grep finding nothing is not a failure (the script runs under -e and pipefail).
        iptables -t "$t" -S 2>/dev/null | { grep -E "$pattern" || true; } |
            sed 's/^-A /-D /' | while read -r rule; do
            [ -z "$why" ] || say "$why: iptables -t $t $rule"
            # shellcheck disable=SC2086
            iptables -t "$t" $rule 2>/dev/null || true
        done
    done
}

iptables_cleanup()
{
    # Remove the rules and chains dockerd added (only when there were none before).
    local t c
    [ -z "$HAD_CHAINS" ] || return 0
    command -v iptables >/dev/null || return 0
    iptables_delete_rules '^-A (PREROUTING|INPUT|OUTPUT|FORWARD|POSTROUTING) .*(DOCKER|docker0)'
    for t in nat filter; do
        for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
            iptables -t "$t" -F "$c" 2>/dev/null || true
        done
        for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
            iptables -t "$t" -X "$c" 2>/dev/null || true
        done
    done
    [ -z "$FORWARD_POLICY" ] || iptables -P FORWARD "$FORWARD_POLICY" 2>/dev/null || true
    [ -z "$IP_FORWARD" ] || echo "$IP_FORWARD" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
}

compose_bridges_cleanup()
{
    # dockerd names a compose network's bridge br-<12 hex> and adds FORWARD and
    # MASQUERADE rules naming it.  A run killed before its cleanup leaves them
    # behind; the next engine then makes the same fixed subnet (the gateway
    # suite's 172.29.79.0/24) on a new bridge while the old route still wins,
    # and every container's connection times out.  With no engine of anyone
    # else's running (no DOCKER chains at start), all of them are ours or stale.
    local why=$1 b
    [ -z "$HAD_CHAINS" ] || return 0
    iptables_delete_rules '^-A .*br-[0-9a-f]{12}' "$why"
    for b in $(ip -o link show type bridge 2>/dev/null |
        { grep -oE '^[0-9]+: br-[0-9a-f]{12}[@:]' || true; } | sed -E 's/^[0-9]+: //; s/[@:]$//'); do
        say "$why: deleting bridge $b"
        ip link delete "$b" 2>/dev/null || true
    done
}
compose_bridges_cleanup "left by an earlier run"

cleanup()
{
    local rc=$? t0=$SECONDS left i
    trap - EXIT INT TERM
    set +e +o pipefail # every step below runs, whatever the one before did
    if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        # run-compose.sh already ran `down -v`; anything left is removed here.
        left=$(docker ps -aq 2>/dev/null || true)
        if [ -n "$left" ]; then
            say "removing leftover containers: $(tr "\n" " " <<<"$left")"
            # shellcheck disable=SC2086
            docker rm -f -v $left >/dev/null 2>&1 || true
        fi
        docker network prune -f >/dev/null 2>&1 || true
        docker volume prune -f >/dev/null 2>&1 || true
        kill -TERM "$DOCKERD_PID" 2>/dev/null || true
        for i in $(seq 1 300); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            say "dockerd ignored SIGTERM for 30 s; killing it"
            kill -KILL "$DOCKERD_PID" 2>/dev/null || true
        fi
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    # dockerd's own containerd (its config lives in our exec root).
    for i in $(seq 1 50); do
        left=$(pgrep -f "containerd --config $DK/exec/" || true)
        [ -z "$left" ] && break
        # shellcheck disable=SC2086
        [ "$i" = 20 ] && kill -TERM $left 2>/dev/null
        # shellcheck disable=SC2086
        [ "$i" = 45 ] && kill -KILL $left 2>/dev/null
        sleep 0.1
    done
    # Mounts left under the temp dir (overlay layers, shm) would stop rm -rf.
    grep -o " $DK/[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$DK"
    [ -n "$HAD_DOCKER0" ] || ip link delete docker0 2>/dev/null || true
    compose_bridges_cleanup "cleanup"
    iptables_cleanup
    say "engine stopped and cleaned up in $((SECONDS - t0)) s"
    say "total $((SECONDS - t_all)) s, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
dockerd --data-root "$DK/data" --exec-root "$DK/exec" --pidfile "$DK/dockerd.pid" \
    -H "$DOCKER_HOST" >"$DK/dockerd.log" 2>&1 </dev/null &
DOCKERD_PID=$!
for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
done
if ! docker info >/dev/null 2>&1; then
    tail -n 30 "$DK/dockerd.log" >&2
    say "dockerd did not come up"
    exit 2
fi
say "dockerd $(docker version -f '{{.Server.Version}}') up in $((SECONDS - t0)) s (storage $(docker info -f '{{.Driver}}'), root $DK)"

# ---- 3. stand-ins for the upstream images ----------------------------------------
t0=$SECONDS
scripts/ci-container-images.sh
say "base images ready in $((SECONDS - t0)) s"

# ---- 4. the seed suite through compose ---------------------------------------------
t0=$SECONDS
set +e
make --no-print-directory test-integration-sidecar DOCKER=1
rc=$?
set -e
say "compose seed suite: exit $rc in $((SECONDS - t0)) s"

# ---- 5. the gateway suite through compose --------------------------------------------
t0=$SECONDS
set +e
make --no-print-directory test-integration-gateway DOCKER=1
gw_rc=$?
set -e
say "compose gateway suite: exit $gw_rc in $((SECONDS - t0)) s"
[ "$rc" -ne 0 ] || rc=$gw_rc

# ---- 6. the compose/ demo pipeline, as `docker compose up` runs it -----------------
# Reuses the asya-runtime/asya-sidecar/asya-gateway images steps 4 and 5 built;
# the client prints each message's fate and exits, which stops the rest
# (--exit-code-from).
t0=$SECONDS
DEMO=(docker-compose -p asya-ci-demo -f compose/docker-compose.yml --project-directory compose)
demo_log=$(mktemp /tmp/asya-ci-demo.XXXXXX.log)
demo_rc=0
export ASYA_AMQP_PORT=${ASYA_CI_DEMO_AMQP_PORT:-5690} ASYA_MGMT_PORT=${ASYA_CI_DEMO_MGMT_PORT:-15690} \
    ASYA_GATEWAY_PORT=${ASYA_CI_DEMO_GATEWAY_PORT:-18690}
if ! docker image inspect asya-runtime:local asya-sidecar:local asya-gateway:local >/dev/null 2>&1; then
    say "demo: no asya-runtime/asya-sidecar/asya-gateway image (step 4 or 5 failed early); skipped"
    demo_rc=1
elif ! tar -c demo/client.py compose/Dockerfile.client |
    DOCKER_BUILDKIT=0 docker build -q -f compose/Dockerfile.client -t asya-demo-client:local - >"$demo_log" 2>&1; then
    cat "$demo_log" >&2
    say "demo: building the client image failed"
    demo_rc=1
else
    "${DEMO[@]}" up --no-build --no-color --exit-code-from client >"$demo_log" 2>&1 || demo_rc=$?
    # The client's lines: where each message ended up.
    sed -n 's/^[^|]*client[-_]1 *| \{0,1\}/   demo: /p' "$demo_log"
    [ "$demo_rc" -eq 0 ] || { tail -n 40 "$demo_log" >&2; say "demo: exit $demo_rc"; }
    "${DEMO[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
fi
say "compose demo pipeline: exit $demo_rc in $((SECONDS - t0)) s"
[ "$rc" -ne 0 ] || rc=$demo_rc

# ---- 7. the demo's gateway: a tool call with curl, its SSE stream to the end -------
t0=$SECONDS
check_rc=0
if [ "$demo_rc" -ne 0 ]; then
    say "demo gateway: skipped (the demo failed)"
    check_rc=1
else
    # Everything but the client (its round ran in step 6).
    services=$("${DEMO[@]}" config --services | grep -vx client | tr '\n' ' ')
    # shellcheck disable=SC2086
    if ! "${DEMO[@]}" up -d --no-build --no-color $services >"$demo_log" 2>&1; then
        cat "$demo_log" >&2
        check_rc=1
    elif ! compose/gateway-check.sh Ada 1 >"$demo_log" 2>&1; then
        cat "$demo_log" >&2
        "${DEMO[@]}" logs --no-color --tail 30 gateway greeter-sidecar happy-end-sidecar >&2 2>&1 || true
        check_rc=1
    else
        sed 's/^/   demo gateway: /' "$demo_log"
    fi
    "${DEMO[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
fi
rm -f "$demo_log"
say "compose demo gateway check: exit $check_rc in $((SECONDS - t0)) s"
[ "$rc" -ne 0 ] || rc=$check_rc
exit "$rc"
