#!/bin/sh
# ensure.sh - node_modules for client.mjs, from package-lock.json (npm ci).
# Offline-safe: when node_modules was installed from this very lock file (its sha256 is
# stamped inside), nothing runs and no registry is asked; otherwise `npm ci` (which needs
# the npm registry or a warm npm cache) installs exactly what the lock file pins.
set -eu
cd "$(dirname "$0")"
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.asya-lock-sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    [ -f node_modules/@modelcontextprotocol/sdk/package.json ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "ensure.sh: npm not found (scripts/install-deps.sh installs nodejs and npm)" >&2
    exit 1
fi
echo "ensure.sh: npm ci in $(pwd)" >&2
npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2
echo "$want" >"$stamp"
