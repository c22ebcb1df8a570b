#!/usr/bin/env bash
# Install what building and testing Asya needs, from Debian 12's packages.
# Safe to run again: apt-get only installs what is missing.  Runs apt-get
# through sudo when not root.
set -euo pipefail

# Everything the demo, the tests, the benchmarks and the docs' commands use that a
# minimal Debian 12 (debootstrap --variant=minbase) lacks.  .ci/run proves the list:
# it runs the README's commands in such a fresh root (scripts/ci-fresh-root.sh).
PACKAGES=(
    # build: the programs, handlers (C, C++) and unit tests
    build-essential pkg-config g++
    libjansson-dev libev-dev librabbitmq-dev libcmocka-dev libmicrohttpd-dev
    # the Rust example handler (handlers/examples/rust, no outside crates)
    cargo
    # tests: private RabbitMQ nodes, waited for over the management API with curl
    rabbitmq-server curl
    python3 python3-pytest python3-pika python3-requests python3-prometheus-client
    # make valgrind, make test-asan, make fuzz, make clang; bench's profile (callgrind, pgrep)
    valgrind clang libclang-rt-14-dev procps
    # make deb and its tests (dpkg-deb, the man pages read back with man)
    dpkg-dev man-db
    # make format-check, make lint, make coverage
    clang-format clang-tidy cppcheck lcov
    # the sidecar's reports to the gateway: libcurl's multi interface on the loop
    # (the OpenSSL flavour, as librabbitmq's TLS)
    libcurl4-openssl-dev
    # the gateway: libpq (job store), libyaml (route config)
    libpq-dev libyaml-dev
    # gateway tests and make bench-gateway: private PostgreSQL servers (initdb, pg_ctl,
    # postgres; on Debian 12 pgbench ships in postgresql-15, not in the client package)
    # and psql
    postgresql-15 postgresql-client-15
    # tests/gateway/mcp: the official MCP SDK client runs on Node.js (npm: see below);
    # npm fetches it over HTTPS, which needs the CA bundle (not pulled in without
    # recommends)
    nodejs ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm is not in the list on purpose: nodejs may come from NodeSource (whose package
# bundles npm and Conflicts: with Debian's npm) or from Debian (whose nodejs has no
# npm).  Ask for Debian's npm only when nodejs is (being) installed without an npm
# command; with NodeSource's nodejs the npm command is already there.
if ! command -v npm >/dev/null 2>&1; then
    if command -v node >/dev/null 2>&1; then
        missing+=(npm)
    else
        NEED_NPM_CHECK=1
    fi
fi
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the distribution's rabbitmq-server service from starting:
# tests and the demo run their own private nodes.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# nodejs just installed: only now is it known whether it brought npm (see above).
if [ -n "${NEED_NPM_CHECK:-}" ] && ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: nodejs came without npm; installing Debian's npm"
    $SUDO apt-get install -y -qq --no-install-recommends npm
fi
# A distribution node started anyway would hold epmd and port 5672; stop it.
$SUDO rabbitmqctl stop >/dev/null 2>&1 || true
# Likewise the distribution's PostgreSQL cluster: tests run their own servers.
if command -v pg_ctlcluster >/dev/null 2>&1; then
    $SUDO pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
fi
echo "install-deps: done"
