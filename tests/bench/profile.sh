#!/usr/bin/env bash
# profile.sh - where the sidecar's time goes (docs/performance.md).
#
#   tests/bench/profile.sh [messages] [sidecar settings...]
#
# Private broker on 5698/15698; preloads <messages> (default 5000) envelopes
# into bench-echo, runs asya-runtime (echo_handler) and asya-sidecar under
# valgrind --tool=callgrind until happy-end holds them all, then prints
# callgrind_annotate's inclusive and exclusive top functions, and the sidecar's
# instructions per message.  A second pass
# without valgrind reads the CPU time (utime+stime from /proc) that the
# sidecar, the runtime supervisor, its worker and the broker spent per 1000
# messages.  Everything it starts is stopped on exit.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${ASYA_BUILD_DIR:-$ROOT/build}
N=${1:-5000}
shift || true
SETTINGS=("$@")
PORT=${PROFILE_AMQP_PORT:-5698}
MGMT=${PROFILE_MGMT_PORT:-15698}
URL=amqp://guest:guest@127.0.0.1:$PORT/
B=$BUILD/bench/asya-bench
DIR=$(mktemp -d /tmp/asya-profile-XXXXXX)
chmod 755 "$DIR"
PIDS=()

cleanup()
{
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    "$ROOT/tests/lib/broker.sh" stop "$DIR/broker" >/dev/null 2>&1
    echo "profile: outputs kept in $DIR (callgrind.out, logs)" >&2
    rm -rf "$DIR/broker"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$ROOT/tests/lib/broker.sh" start "$DIR/broker" "$PORT" "$MGMT" || exit 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
beam_pid() { pgrep -u rabbitmq -f "beam.smp.*-home $DIR/broker" | head -1; }

start_runtime()
{
    rm -f "$DIR/rt.ready" "$DIR/rt.sock"
    ASYA_HANDLER=$BUILD/lib/asya/test_handlers.so:echo_handler ASYA_SOCKET_PATH=$DIR/rt.sock \
        ASYA_READY_FILE=$DIR/rt.ready ASYA_LOG_LEVEL=WARNING "$BUILD/bin/asya-runtime" \
        >>"$DIR/runtime.log" 2>&1 &
    RT=$!
    PIDS+=("$RT")
    for _ in $(seq 100); do [ -e "$DIR/rt.ready" ] && break; sleep 0.05; done
}

start_sidecar()
{ # $1 = wrapper (empty or valgrind command)
    env "${SETTINGS[@]}" ASYA_ACTOR_NAME=bench-echo ASYA_RABBITMQ_URL="$URL" \
        ASYA_SOCKET_PATH="$DIR/rt.sock" ASYA_METRICS_ENABLED=false ASYA_LOG_LEVEL=WARNING \
        $1 "$BUILD/bin/asya-sidecar" >>"$DIR/sidecar.log" 2>&1 &
    SC=$!
    PIDS+=("$SC")
}

stop_pair()
{
    kill -TERM "$SC" 2>/dev/null
    wait "$SC" 2>/dev/null
    kill -TERM "$RT" 2>/dev/null
    wait "$RT" 2>/dev/null
    PIDS=()
}

# The drain starts before the sidecar, as in run.py: its first poll must see the
# full input queue.  (Started after it, a drain counted from a sink the sidecar
# had already half filled and waited for N more: a "stall" at N minus what it
# missed, for the full timeout.)
start_drain()
{ # $1 = timeout (s), $2 = output file
    "$B" drain "$URL" bench-echo happy-end "$N" "$1" >"$2" &
    DR=$!
    PIDS+=("$DR")
    sleep 0.05
}

# ---- pass 1: CPU time per process, no instrumentation -------------------------
"$B" declare "$URL" bench-echo happy-end >/dev/null
"$B" preload "$URL" bench-echo "$N" bench-echo >/dev/null
start_runtime
WK=$(cat "/proc/$RT/task/$RT/children" 2>/dev/null | awk '{print $1}')
BEAM=$(beam_pid)
declare -A T0
for p in "$RT" "$WK" "$BEAM"; do T0[$p]=$(cpu_ticks "$p"); done
start_drain 120 "$DIR/drain1.out"
start_sidecar ""
T0[$SC]=0 # a new process: its own start-up is counted
wait "$DR"
HZ=$(getconf CLK_TCK)
echo "== CPU time per 1000 messages (settings: ${SETTINGS[*]:-defaults}; drain $(cut -d' ' -f1 "$DIR/drain1.out") s for $N)"
for pair in "sidecar:$SC" "runtime supervisor:$RT" "runtime worker:$WK" "broker (beam):$BEAM"; do
    name=${pair%%:*}
    p=${pair##*:}
    t1=$(cpu_ticks "$p")
    awk -v n="$N" -v a="${T0[$p]}" -v b="$t1" -v hz="$HZ" -v name="$name" \
        'BEGIN { printf "  %-20s %7.1f ms\n", name, (b - a) * 1000 / hz / n * 1000 }'
done
stop_pair

# ---- pass 2: callgrind on the sidecar -------------------------------------------
"$B" declare "$URL" bench-echo happy-end >/dev/null
"$B" preload "$URL" bench-echo "$N" bench-echo >/dev/null
start_runtime
start_drain 300 "$DIR/drain2.out"
start_sidecar "valgrind --tool=callgrind --callgrind-out-file=$DIR/callgrind.out"
wait "$DR"
stop_pair
echo "== callgrind: asya-sidecar relaying $N messages (drain under valgrind: $(cut -d' ' -f1 "$DIR/drain2.out") s)"
IR=$(grep -m1 -E '^(summary|totals):' "$DIR/callgrind.out" | awk '{print $2}')
[ -n "$IR" ] && echo "   $IR instructions (Ir), $((IR / N)) per message, start-up included" \
    "(make bench row (i) subtracts start-up and counts the runtime too)"
callgrind_annotate "$DIR/callgrind.out" 2>/dev/null | head -45
echo "== inclusive"
callgrind_annotate --inclusive=yes "$DIR/callgrind.out" 2>/dev/null | sed -n '1,60p' | tail -40
