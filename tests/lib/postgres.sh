#!/usr/bin/env bash
# postgres.sh - run a private PostgreSQL server (Debian's postgresql-15, no systemd).
#
# As a command:
#   tests/lib/postgres.sh start   <dir> [port]   # initdb (first time only), start, wait
#   tests/lib/postgres.sh wait    <dir>          # block until the server accepts queries
#   tests/lib/postgres.sh stop    <dir>          # fast shutdown, leave no process behind
#   tests/lib/postgres.sh restart <dir>          # stop + start (the data stays)
#   tests/lib/postgres.sh kill    <dir>          # SIGKILL the postmaster and its backends (crash)
#   tests/lib/postgres.sh url     <dir> [db]     # postgres://asya:asya@127.0.0.1:PORT/asya
#   tests/lib/postgres.sh psql    <dir> [psql args...]   # superuser psql over the private socket
#   tests/lib/postgres.sh status  <dir>          # exit 0 if the server answers
#
# As a library (`source tests/lib/postgres.sh`) the same verbs are the functions
# pg_start, pg_wait, pg_stop, pg_restart, pg_kill, pg_url, pg_psql, pg_status.
#
# Everything the server owns lives under <dir>: the cluster (data/), the unix
# socket (sock/, so keep <dir> short: socket paths are limited to 107 bytes),
# the server log (postgres.log) and pg.env (port, paths).  The server listens
# on 127.0.0.1:<port> only, with fsync on (crash tests need real durability).
# initdb runs once per <dir>: a later start reuses the cluster, so a suite pays
# for it once.  A role `asya` (password `asya`) owns a database `asya`; TCP
# clients authenticate with scram-sha-256, the socket trusts the superuser.
# When run as root, <dir> is handed to the `postgres` user and the server runs
# as that user (PostgreSQL refuses to run as root).
#
# Environment knobs:
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   PG_WAIT_SECS  readiness timeout (default 30)
#   PG_EXTRA_CONF extra postgresql.conf lines, appended at initdb time

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

_pg_log() { echo "postgres: $*" >&2; }

# _pg_as_owner CMD... - run CMD as the server's user.
_pg_as_owner()
{
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- env LANG=C.UTF-8 LC_ALL=C.UTF-8 "$@"
    else
        env LANG=C.UTF-8 LC_ALL=C.UTF-8 "$@"
    fi
}

# _pg_alive PID - true while PID runs (a zombie waiting for its reaper does not count).
_pg_alive()
{
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

_pg_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_pg_load_env()
{
    local dir=${1:?dir}
    [ -f "$dir/pg.env" ] || { _pg_log "no server in $dir (pg.env missing; run start first)"; return 1; }
    # shellcheck disable=SC1091
    . "$dir/pg.env"
}

# _pg_postmaster_pid DIR - the postmaster's pid from postmaster.pid (if alive).
_pg_postmaster_pid()
{
    local pid
    pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && _pg_alive "$pid" && echo "$pid"
}

# _pg_children PID - direct children of PID (the backends and auxiliary processes).
_pg_children()
{
    ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '
    return 0
}

# pg_start DIR [PORT] - create the cluster if needed, start the server, wait for it.
pg_start()
{
    local dir=${1:?usage: pg_start <dir> [port]} port=${2:-}
    mkdir -p "$dir" || return 1
    dir=$(cd "$dir" && pwd)
    if [ -z "$port" ]; then
        if [ -f "$dir/pg.env" ]; then
            port=$(. "$dir/pg.env" && echo "$PG_PORT")
        else
            port=55799
        fi
    fi
    if [ ! -x "$PG_BIN/pg_ctl" ]; then
        _pg_log "pg_ctl not found in $PG_BIN (apt-get install postgresql-15)"
        return 1
    fi
    if _pg_postmaster_pid "$dir" >/dev/null; then
        _pg_log "a server is already running in $dir"
        return 1
    fi
    # After a crash (pg_kill) the dead postmaster may linger as a zombie until its
    # reaper collects it; the server would take that for a running postmaster.
    local old
    old=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)
    if [ -n "$old" ]; then
        for _ in $(seq 1 200); do
            kill -0 "$old" 2>/dev/null || break
            sleep 0.05
        done
    fi
    if _pg_port_busy "$port"; then
        _pg_log "port $port on 127.0.0.1 is already in use (another server running?)"
        return 1
    fi
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$dir"
    fi
    chmod 0700 "$dir"
    cat >"$dir/pg.env" <<EOF
PG_DIR='$dir'
PG_PORT=$port
PG_DATA='$dir/data'
PG_SOCK='$dir/sock'
EOF
    local fresh=
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        fresh=yes
        rm -rf "$dir/data"
        _pg_as_owner mkdir -p "$dir/data" "$dir/sock" || return 1
        _pg_log "initdb in $dir/data"
        if ! _pg_as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1; then
            _pg_log "initdb failed:"
            tail -n 20 "$dir/initdb.log" >&2
            return 1
        fi
        {
            echo "# ---- asya test server (tests/lib/postgres.sh)"
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$dir/sock'"
            echo "fsync = on"
            echo "synchronous_commit = on"
            echo "full_page_writes = on"
            echo "max_connections = 200"
            echo "shared_buffers = 32MB"
            echo "logging_collector = off"
            echo "log_min_messages = warning"
            echo "log_connections = off"
            echo "log_line_prefix = '%m [%p] %d '"
            echo "password_encryption = 'scram-sha-256'"
            [ -n "${PG_EXTRA_CONF:-}" ] && printf '%s\n' "$PG_EXTRA_CONF"
        } >>"$dir/data/postgresql.conf"
    fi
    mkdir -p "$dir/sock"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/sock"
    : >>"$dir/postgres.log"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/postgres.log"
    _pg_log "starting on 127.0.0.1:$port (dir $dir)"
    # setsid: the server lives in its own session, so a Ctrl-C aimed at the
    # caller's process group doesn't kill it half-way; pg_stop ends it cleanly.
    if ! _pg_as_owner setsid "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -k $dir/sock" start >"$dir/pg_ctl.log" 2>&1 </dev/null; then
        _pg_log "pg_ctl start failed:"
        tail -n 20 "$dir/pg_ctl.log" "$dir/postgres.log" >&2
        return 1
    fi
    pg_wait "$dir" || return 1
    if [ -n "$fresh" ]; then
        if ! pg_psql "$dir" -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'; then
CREATE ROLE asya LOGIN PASSWORD 'asya' CREATEDB;
CREATE DATABASE asya OWNER asya;
SQL
            _pg_log "creating role/database asya failed"
            return 1
        fi
    fi
    return 0
}

# pg_wait DIR - wait until the server accepts a query over TCP as asya (or, before
# the role exists, over the socket).
pg_wait()
{
    local dir=${1:?dir}
    _pg_load_env "$dir" || return 1
    local limit=${PG_WAIT_SECS:-30} start=$SECONDS
    while :; do
        if "$PG_BIN/pg_isready" -q -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -t 2 &&
            pg_psql "$dir" -qAt -c 'select 1' >/dev/null 2>&1; then
            _pg_log "ready after $((SECONDS - start))s"
            return 0
        fi
        if ! _pg_postmaster_pid "$dir" >/dev/null; then
            _pg_log "the server is not running"
            tail -n 20 "$dir/postgres.log" >&2
            return 1
        fi
        if ((SECONDS - start >= limit)); then
            _pg_log "not ready after ${limit}s"
            tail -n 20 "$dir/postgres.log" >&2
            return 1
        fi
        sleep 0.1
    done
}

# pg_status DIR - 0 if the server answers a query.
pg_status()
{
    _pg_load_env "${1:?dir}" 2>/dev/null || return 1
    pg_psql "$1" -qAt -c 'select 1' >/dev/null 2>&1
}

# pg_psql DIR [ARGS...] - psql as the superuser over the private socket (db postgres
# unless ARGS say otherwise, e.g. -d asya).
pg_psql()
{
    local dir=${1:?dir}
    shift
    _pg_load_env "$dir" || return 1
    _pg_as_owner "$PG_BIN/psql" -X -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres "$@"
}

# pg_url DIR [DB] - the client URL (role asya over TCP).
pg_url()
{
    local dir=${1:?dir}
    _pg_load_env "$dir" || return 1
    echo "postgres://asya:asya@127.0.0.1:$PG_PORT/${2:-asya}"
}

# pg_stop DIR - fast shutdown; make sure no server process remains.
pg_stop()
{
    local dir=${1:?dir}
    [ -f "$dir/pg.env" ] || { _pg_log "nothing to stop in $dir"; return 0; }
    _pg_load_env "$dir" || return 1
    local pm kids
    pm=$(_pg_postmaster_pid "$dir") || { _pg_log "not running"; return 0; }
    kids=$(_pg_children "$pm")
    _pg_log "stopping (postmaster $pm)"
    _pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >>"$dir/pg_ctl.log" 2>&1 ||
        _pg_log "pg_ctl stop failed; killing the server"
    local p
    for _ in $(seq 1 40); do
        _pg_alive "$pm" || break
        sleep 0.05
    done
    if _pg_alive "$pm"; then
        _pg_log "postmaster $pm still running; SIGKILL"
        kill -KILL "$pm" 2>/dev/null
    fi
    for p in $kids; do
        _pg_alive "$p" && kill -KILL "$p" 2>/dev/null
    done
    return 0
}

# pg_kill DIR - a crash: SIGKILL the postmaster, then its backends (as a power
# cut would); the next start runs crash recovery from the WAL.
pg_kill()
{
    local dir=${1:?dir}
    _pg_load_env "$dir" || return 1
    local pm kids p
    pm=$(_pg_postmaster_pid "$dir") || { _pg_log "not running"; return 0; }
    kids=$(_pg_children "$pm")
    _pg_log "SIGKILL postmaster $pm and its ${kids:+$(echo "$kids" | wc -w) }children"
    kill -KILL "$pm" 2>/dev/null
    for p in $kids; do kill -KILL "$p" 2>/dev/null; done
    for _ in $(seq 1 200); do
        local alive=
        # Gone from the process table, not only dead: a zombie postmaster still
        # holds postmaster.pid for the next start's kill(pid, 0) check.
        kill -0 "$pm" 2>/dev/null && alive=yes
        for p in $kids; do kill -0 "$p" 2>/dev/null && alive=yes; done
        [ -z "$alive" ] && return 0
        sleep 0.05
    done
    _pg_log "processes still alive after SIGKILL"
    return 1
}

# pg_restart DIR - stop and start again on the same port (data kept).
pg_restart()
{
    local dir=${1:?dir}
    _pg_load_env "$dir" || return 1
    pg_stop "$dir" && pg_start "$dir" "$PG_PORT"
}

# ---- CLI -------------------------------------------------------------------
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cmd=${1:-}
    shift || true
    case "$cmd" in
    start) pg_start "$@" ;;
    wait) pg_wait "$@" ;;
    stop) pg_stop "$@" ;;
    restart) pg_restart "$@" ;;
    kill) pg_kill "$@" ;;
    url) pg_url "$@" ;;
    psql) pg_psql "$@" ;;
    status) pg_status "$@" ;;
    *)
        echo "usage: $0 start <dir> [port]" >&2
        echo "       $0 wait|stop|restart|kill|status <dir>" >&2
        echo "       $0 url <dir> [db]" >&2
        echo "       $0 psql <dir> [psql args...]" >&2
        exit 2
        ;;
    esac
fi
