#!/usr/bin/env bash
# ci-fresh-root.sh - run commands from this repository inside a fresh, minimal
# Debian 12 root, as a new user on a new machine would: nothing is installed
# but what `debootstrap --variant=minbase bookworm` brings, so a package that
# scripts/install-deps.sh forgets makes the commands fail here (and in CI).
#
#   scripts/ci-fresh-root.sh [-n NAME] 'CMD' ['CMD'...]
#
# Each argument is one phase, run with bash -c in a copy of the working tree
# (tracked and untracked, not ignored files: what a clone of it would hold) at
# /work/asya inside the root, one after the other; its time is printed.  The
# first failing phase stops the run.  -n NAME labels the root.  The debootstrap
# itself is made once into $ASYA_CI_ROOT_DIR/base (never changed, only copied),
# so several roots of one CI run cost one debootstrap; remove the folder to
# debootstrap again.
#
# The root gets this machine's apt sources (sources.list, sources.list.d,
# their keyrings, any proxy setting, its local CA certificates), /etc/hosts and
# resolv.conf, and /proc,
# /sys, /dev, /dev/pts and /dev/shm mounted.  It shares this machine's network
# (the tests' private brokers listen on 127.0.0.1 as they do natively).
# Always, even on failure or interrupt: processes still running in the root
# are killed, everything is unmounted and the root is removed.
#
# Environment:
#   ASYA_CI_ROOT_DIR   where roots are made (default /var/tmp/asya-ci-roots)
#   DEBIAN_MIRROR      debootstrap's mirror (default: this machine's first bookworm source)
# Exit status: the failing phase's, 2 when the root could not be made.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAME=root
if [ "${1:-}" = -n ]; then NAME=$2; shift 2; fi
[ $# -gt 0 ] || { echo "usage: ci-fresh-root.sh [-n NAME] 'CMD' ['CMD'...]" >&2; exit 2; }

say() { echo "fresh-root[$NAME]: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, mount, chroot)"; exit 2; }

DIR=${ASYA_CI_ROOT_DIR:-/var/tmp/asya-ci-roots}
mkdir -p "$DIR"
R=$(mktemp -d "$DIR/$NAME.XXXXXX")
CLEANED=

# ---- cleanup: kill, unmount, remove ------------------------------------------------
procs_in_root()
{
    local p link
    for p in /proc/[0-9]*; do
        link=$(readlink "$p/root" 2>/dev/null) || continue
        case "$link" in "$R" | "$R"/*) echo "${p#/proc/}" ;; esac
    done
}

mounts_under_root()
{
    # Deepest first, so nested mounts (/dev/pts in /dev) go before their parents.
    awk -v r="$R" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts | sort -r
}

cleanup()
{
    local rc=$?
    [ -n "$CLEANED" ] && return
    CLEANED=1
    trap - EXIT INT TERM
    local pids
    pids=$(procs_in_root)
    if [ -n "$pids" ]; then
        say "killing processes left in the root: $(echo $pids)"
        kill -TERM $pids 2>/dev/null || true
        sleep 2
        pids=$(procs_in_root)
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
        sleep 0.5
    fi
    local m
    for _ in 1 2 3; do
        for m in $(mounts_under_root); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
        [ -z "$(mounts_under_root)" ] && break
        sleep 1
    done
    if [ -n "$(mounts_under_root)" ]; then
        say "still mounted, NOT removing $R: $(mounts_under_root | tr '\n' ' ')"
    else
        rm -rf --one-file-system "$R"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT
trap 'say terminated; exit 143' TERM

# ---- 1. the base: debootstrap once, copied for each root ---------------------------
mirror()
{
    [ -n "${DEBIAN_MIRROR:-}" ] && { echo "$DEBIAN_MIRROR"; return; }
    local f
    # deb822 files: the URIs of the first stanza whose Suites has bookworm.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ {
                 if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s = substr($0, RSTART, RLENGTH);
                     sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$f"
    done | head -n 1 | grep . && return
    awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1
}

BASE=$DIR/base
t0=$SECONDS
# Roots made side by side (.ci/run) wait for the one debootstrap instead of racing it.
mkdir -p "$DIR"
exec 9>"$DIR/base.lock"
flock 9
if [ ! -f "$BASE/.complete" ]; then
    command -v debootstrap >/dev/null || {
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
    }
    rm -rf --one-file-system "$BASE"
    MIRROR=$(mirror || true)
    say "debootstrap --variant=minbase bookworm ${MIRROR:-(the default mirror)}"
    if ! debootstrap --variant=minbase bookworm "$BASE" ${MIRROR:+"$MIRROR"} >"$R.debootstrap.log" 2>&1; then
        tail -n 30 "$R.debootstrap.log" >&2
        say "debootstrap failed"
        rm -rf --one-file-system "$BASE"
        exit 2
    fi
    rm -f "$R.debootstrap.log"
    # This machine's apt sources and keyrings; only they are known to be reachable.
    rm -f "$BASE/etc/apt/sources.list"
    [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$BASE/etc/apt/"
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && cp "$f" "$BASE/etc/apt/sources.list.d/"
    done
    cp -a /usr/share/keyrings/. "$BASE/usr/share/keyrings/" 2>/dev/null || true
    cp -a /etc/apt/trusted.gpg.d/. "$BASE/etc/apt/trusted.gpg.d/" 2>/dev/null || true
    for f in /etc/apt/apt.conf.d/*; do
        [ -f "$f" ] && grep -qi 'proxy' "$f" && cp "$f" "$BASE/etc/apt/apt.conf.d/"
    done
    touch "$BASE/.complete"
    say "base made in $((SECONDS - t0)) s"
fi
cp -a "$BASE/." "$R/"
exec 9>&-
rm -f "$R/.complete"
cp /etc/hosts "$R/etc/hosts"
cp -L /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
# This machine's own CA certificates (a TLS-inspecting egress proxy's, say): part of
# its network, like the apt proxy.  Debian's ca-certificates, when install-deps pulls
# it in, adds them to the bundle that node/npm (the MCP SDK from npm) read.
if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$R/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$R/usr/local/share/ca-certificates/"
fi
say "root $R ready in $((SECONDS - t0)) s"

# ---- 2. mounts and the working tree ------------------------------------------------
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --bind /dev "$R/dev"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts" 2>/dev/null ||
    mount --bind /dev/pts "$R/dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mkdir -p "$R/work/asya"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
    tar --null -T - -cf - 2>/dev/null) | tar -xf - -C "$R/work/asya"

# ---- 3. the phases -----------------------------------------------------------------
for cmd in "$@"; do
    say "\$ $cmd"
    t=$SECONDS
    rc=0
    chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" CI="${CI:-}" ${ASYA_LOG_LEVEL:+ASYA_LOG_LEVEL="$ASYA_LOG_LEVEL"} \
        /bin/bash -c "cd /work/asya && $cmd" </dev/null || rc=$?
    say "'$cmd' took $((SECONDS - t)) s, exit $rc"
    [ "$rc" = 0 ] || exit "$rc"
done
