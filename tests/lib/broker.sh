#!/usr/bin/env bash
# broker.sh - run a private RabbitMQ node (Debian's rabbitmq-server, no systemd).
#
# As a command:
#   tests/lib/broker.sh start <dir> [amqp_port] [mgmt_port] [definitions.json]
#   tests/lib/broker.sh wait  <dir>          # block until AMQP + management answer
#   tests/lib/broker.sh stop  <dir>          # stop the node, leave no beam/epmd behind
#   tests/lib/broker.sh stop_app|start_app|restart_app <dir>   # fault injection
#   tests/lib/broker.sh ctl <dir> <rabbitmqctl args...>
#   tests/lib/broker.sh status <dir>         # exit 0 if the node answers
#
# As a library (`source tests/lib/broker.sh`) the same verbs are the functions
# broker_start, broker_wait, broker_stop, broker_stop_app, broker_start_app,
# broker_restart_app, broker_ctl, broker_status.
#
# Everything the node owns lives under <dir>: mnesia, logs, config, plugins file,
# pid file, feature flags, and the Erlang cookie (HOME=<dir>), so several nodes can
# run side by side.  The node also gets its own epmd port (ERL_EPMD_PORT), so
# stopping it never disturbs another Erlang node on the machine.  When run as root,
# <dir> is handed to the `rabbitmq` user and the node runs as that user.
#
# Environment knobs:
#   BROKER_DIST_PORT   Erlang distribution port (default amqp_port + 20000)
#   BROKER_EPMD_PORT   epmd port (default amqp_port + 21000)
#   BROKER_DEFINITIONS definitions file to load at boot (same as the 4th argument)
#   BROKER_EXTRA_CONF  a rabbitmq.conf fragment appended to the generated config
#   BROKER_WAIT_SECS   readiness timeout (default 60)

RABBITMQ_LIBEXEC=${RABBITMQ_LIBEXEC:-/usr/lib/rabbitmq/bin}

_broker_log() { echo "broker: $*" >&2; }

# _broker_as_owner CMD... - run CMD as the node's user, with the node's env.
_broker_as_owner()
{
    local dir=$1
    shift
    # shellcheck disable=SC1091
    . "$dir/broker.env"
    local envs=(
        HOME="$dir"
        ERL_EPMD_PORT="$BROKER_EPMD_PORT"
        ERL_EPMD_ADDRESS=127.0.0.1
        ERL_CRASH_DUMP="$dir/log/erl_crash.dump"
        RABBITMQ_NODENAME="$BROKER_NODE"
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
        RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        RABBITMQ_MNESIA_BASE="$dir/mnesia"
        RABBITMQ_LOG_BASE="$dir/log"
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
        RABBITMQ_FEATURE_FLAGS_FILE="$dir/feature_flags"
        RABBITMQ_DIST_PORT="$BROKER_DIST_PORT"
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        PATH="$PATH"
        LANG=C.UTF-8 LC_ALL=C.UTF-8
    )
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups env -i "${envs[@]}" "$@"
    else
        env -i "${envs[@]}" "$@"
    fi
}

_broker_port_busy()
{
    # True when something listens on 127.0.0.1:<port>.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# broker_ctl DIR ARGS... - rabbitmqctl against the node of DIR.
broker_ctl()
{
    local dir=${1:?dir}
    shift
    _broker_as_owner "$dir" "$RABBITMQ_LIBEXEC/rabbitmqctl" -n "$(_broker_node "$dir")" "$@"
}

_broker_node() { (. "$1/broker.env" && echo "$BROKER_NODE"); }

# broker_start DIR [AMQP_PORT] [MGMT_PORT] [DEFINITIONS] - start a node and wait for it.
broker_start()
{
    local dir=${1:?usage: broker_start <dir> [amqp_port] [mgmt_port] [definitions]}
    local amqp=${2:-5673} mgmt=${3:-15673} defs=${4:-${BROKER_DEFINITIONS:-}}
    local dist=${BROKER_DIST_PORT:-$((amqp + 20000))}
    local epmd=${BROKER_EPMD_PORT:-$((amqp + 21000))}
    local node="asya-test-$amqp@localhost"

    if [ ! -x "$RABBITMQ_LIBEXEC/rabbitmq-server" ]; then
        _broker_log "rabbitmq-server not found in $RABBITMQ_LIBEXEC (apt-get install rabbitmq-server)"
        return 1
    fi
    local p
    for p in "$amqp" "$mgmt" "$dist" "$epmd"; do
        if _broker_port_busy "$p"; then
            _broker_log "port $p on 127.0.0.1 is already in use (another broker running?)"
            return 1
        fi
    done

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    rm -rf "$dir/mnesia" "$dir/log"
    mkdir -p "$dir/mnesia" "$dir/log"
    : >"$dir/rabbitmq-env.conf"
    echo "[rabbitmq_management]." >"$dir/enabled_plugins"
    {
        echo "listeners.tcp.default = 127.0.0.1:$amqp"
        echo "management.tcp.ip = 127.0.0.1"
        echo "management.tcp.port = $mgmt"
        echo "loopback_users = none"
        echo "log.file.level = info"
        echo "log.console = false"
    } >"$dir/rabbitmq.conf"
    if [ -n "${BROKER_EXTRA_CONF:-}" ]; then
        { echo "# ---- from $BROKER_EXTRA_CONF"; cat "$BROKER_EXTRA_CONF"; } >>"$dir/rabbitmq.conf" || return 1
    fi
    if [ -n "$defs" ]; then
        cp "$defs" "$dir/definitions.json"
        echo "management.load_definitions = $dir/definitions.json" >>"$dir/rabbitmq.conf"
    fi
    cat >"$dir/broker.env" <<EOF
BROKER_DIR='$dir'
BROKER_NODE='$node'
BROKER_AMQP_PORT=$amqp
BROKER_MGMT_PORT=$mgmt
BROKER_DIST_PORT=$dist
BROKER_EPMD_PORT=$epmd
EOF
    if [ "$(id -u)" = 0 ]; then
        chown -R rabbitmq:rabbitmq "$dir"
    fi
    chmod 0750 "$dir"

    _broker_log "starting $node (amqp 127.0.0.1:$amqp, mgmt 127.0.0.1:$mgmt, dir $dir)"
    # setsid: the node lives in its own session, so a Ctrl-C aimed at the caller's
    # process group doesn't kill it half-way; broker_stop ends it cleanly.
    (cd "$dir" && _broker_as_owner "$dir" setsid "$RABBITMQ_LIBEXEC/rabbitmq-server") \
        >"$dir/log/startup.log" 2>&1 </dev/null &
    echo $! >"$dir/launcher.pid"
    broker_wait "$dir"
}

_broker_log_tail()
{
    local dir=$1 f
    for f in "$dir/log/startup.log" "$dir"/log/*@localhost.log; do
        [ -f "$f" ] || continue
        echo "---- tail of $f" >&2
        tail -n 40 "$f" >&2
    done
}

# broker_wait DIR - wait until AMQP accepts connections and the management API
# answers an authenticated request (which implies definitions are loaded).
broker_wait()
{
    local dir=${1:?dir}
    # shellcheck disable=SC1091
    . "$dir/broker.env" || return 1
    local limit=${BROKER_WAIT_SECS:-60} start=$SECONDS
    local launcher
    launcher=$(cat "$dir/launcher.pid" 2>/dev/null)
    while :; do
        if _broker_port_busy "$BROKER_AMQP_PORT" &&
            curl -fsS -u guest:guest -o /dev/null \
                "http://127.0.0.1:$BROKER_MGMT_PORT/api/overview" 2>/dev/null; then
            _broker_log "$BROKER_NODE ready after $((SECONDS - start))s"
            return 0
        fi
        if [ -n "$launcher" ] && ! kill -0 "$launcher" 2>/dev/null; then
            _broker_log "$BROKER_NODE exited during start-up"
            _broker_log_tail "$dir"
            return 1
        fi
        if ((SECONDS - start >= limit)); then
            _broker_log "$BROKER_NODE not ready after ${limit}s"
            _broker_log_tail "$dir"
            return 1
        fi
        sleep 0.5
    done
}

# broker_status DIR - 0 if the node answers rabbitmqctl.
broker_status()
{
    broker_ctl "$1" -q status >/dev/null 2>&1
}

# _broker_env_pids VAR=VALUE [COMM] - pids whose environment holds VAR=VALUE
# (and whose command name is COMM, if given).  The 3.10 beam command line does not
# carry the node name, but its environment does.
_broker_env_pids()
{
    local want=$1 comm=${2:-} d pid
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [ "$pid" = "$$" ] && continue
        if [ -n "$comm" ]; then
            [ "$(cat "$d/comm" 2>/dev/null)" = "$comm" ] || continue
        fi
        { tr '\0' '\n' <"$d/environ"; } 2>/dev/null | grep -qxF -- "$want" && echo "$pid"
    done
    return 0
}

# _broker_node_pids DIR - pids of the node's beam and helpers (not epmd).
_broker_node_pids()
{
    # shellcheck disable=SC1091
    . "$1/broker.env"
    _broker_env_pids "RABBITMQ_NODENAME=$BROKER_NODE" | while read -r p; do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = epmd ] || echo "$p"
    done
}

# broker_stop DIR - stop the node; make sure none of its processes remain.
broker_stop()
{
    local dir=${1:?dir}
    [ -f "$dir/broker.env" ] || { _broker_log "nothing to stop in $dir"; return 0; }
    # shellcheck disable=SC1091
    . "$dir/broker.env"
    _broker_log "stopping $BROKER_NODE"
    _broker_as_owner "$dir" timeout 60 "$RABBITMQ_LIBEXEC/rabbitmqctl" -n "$BROKER_NODE" -q stop \
        >/dev/null 2>&1 || _broker_log "rabbitmqctl stop failed; killing the node"
    # Wait for the beam to exit, then kill anything left.
    local pids
    for _ in $(seq 1 40); do
        pids=$(_broker_node_pids "$dir")
        [ -z "$pids" ] && break
        sleep 0.25
    done
    if [ -n "$pids" ]; then
        _broker_log "killing leftover node processes: $pids"
        kill -TERM $pids 2>/dev/null
        sleep 1
        kill -KILL $pids 2>/dev/null
    fi
    # The private epmd: stop it once no node is registered with it any more.
    if ERL_EPMD_PORT=$BROKER_EPMD_PORT epmd -names 2>/dev/null | grep -q '^name '; then
        _broker_log "epmd on port $BROKER_EPMD_PORT still has nodes; leaving it running"
    else
        ERL_EPMD_PORT=$BROKER_EPMD_PORT epmd -kill >/dev/null 2>&1
        for _ in $(seq 1 20); do
            pids=$(_broker_env_pids "ERL_EPMD_PORT=$BROKER_EPMD_PORT" epmd)
            [ -z "$pids" ] && break
            sleep 0.1
        done
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    fi
    local launcher
    launcher=$(cat "$dir/launcher.pid" 2>/dev/null)
    [ -n "$launcher" ] && kill -0 "$launcher" 2>/dev/null && kill -KILL "$launcher" 2>/dev/null
    rm -f "$dir/launcher.pid"
    return 0
}

# broker_stop_app DIR / broker_start_app DIR - stop/start the RabbitMQ application
# (the Erlang node stays up): clients see the broker vanish and come back.
broker_stop_app() { broker_ctl "${1:?dir}" -q stop_app; }

broker_start_app()
{
    broker_ctl "${1:?dir}" -q start_app && broker_wait "$1"
}

broker_restart_app()
{
    broker_stop_app "${1:?dir}" && sleep "${2:-1}" && broker_start_app "$1"
}

# ---- CLI -------------------------------------------------------------------
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cmd=${1:-}
    shift || true
    case "$cmd" in
    start) broker_start "$@" ;;
    wait) broker_wait "$@" ;;
    stop) broker_stop "$@" ;;
    status) broker_status "$@" ;;
    stop_app) broker_stop_app "$@" ;;
    start_app) broker_start_app "$@" ;;
    restart_app) broker_restart_app "$@" ;;
    ctl) broker_ctl "$@" ;;
    *)
        echo "usage: $0 start <dir> [amqp_port] [mgmt_port] [definitions.json]" >&2
        echo "       $0 wait|stop|status|stop_app|start_app|restart_app <dir>" >&2
        echo "       $0 ctl <dir> <rabbitmqctl args...>" >&2
        exit 2
        ;;
    esac
fi
