#!/usr/bin/env bash
# ci-container-images.sh - local stand-ins for the upstream images the compose
# files use, for machines that can reach Debian's package mirror but no
# container registry (CI here).  With these in the engine's image store the
# compose files stay exactly what a user runs against Docker Hub.
#
#   scripts/ci-container-images.sh            build what is missing
#   ASYA_IMAGES_FORCE=1 scripts/ci-container-images.sh   rebuild all three
#
# Builds, talking to the engine named by DOCKER_HOST (or the default socket):
#
#   debian:bookworm-slim    `debootstrap --variant=minbase bookworm` + `docker import`
#                           (apt sources copied from this machine, apt lists and
#                           caches removed like the official slim image)
#   rabbitmq:3-management   FROM that base: Debian's rabbitmq-server (3.10) with the
#                           management plugin, following the official image's
#                           conventions the compose files rely on:
#                             - /etc/rabbitmq/rabbitmq.conf is the main config
#                               (mount yours there) and /etc/rabbitmq/conf.d/*.conf
#                               are read after it; 10-defaults.conf holds the
#                               official defaults (guest allowed from other hosts,
#                               console logging); ports 5672/15672 on every
#                               interface unless your config says otherwise
#                             - data in /var/lib/rabbitmq (a volume), node name
#                               rabbit@<container hostname>, runs as user rabbitmq
#                             - rabbitmq-server, rabbitmqctl, rabbitmq-diagnostics
#                               and rabbitmq-plugins on PATH (healthchecks use
#                               `rabbitmq-diagnostics -q check_port_connectivity`)
#                             - RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS are
#                               honoured by the server itself
#   postgres:15             FROM that base: Debian's postgresql-15 (no cluster made
#                           at install), following the official image's conventions
#                           the compose files rely on:
#                             - POSTGRES_PASSWORD (required), POSTGRES_USER (default
#                               postgres) and POSTGRES_DB (default: the user) are
#                               honoured when the data folder is empty: initdb, the
#                               user as superuser with that password, the database
#                               created; a data folder with a cluster is used as is
#                             - data in /var/lib/postgresql/data (PGDATA, a volume)
#                             - listens on 5432 on every interface; other hosts log
#                               in with a password (scram-sha-256), the local socket
#                               (/var/run/postgresql) is trusted
#                             - pg_isready, psql and the server programs on PATH
#                               (healthchecks use `pg_isready -U <user> -d <db>`)
#                             - runs as user postgres, logs to stderr; STOPSIGNAL
#                               SIGINT as in the official image, so `docker stop`
#                               is PostgreSQL's fast shutdown (its SIGTERM is the
#                               smart shutdown, which waits for every client)
#                           (not here: /docker-entrypoint-initdb.d,
#                           POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD)
#
# Needs: root (debootstrap), debootstrap, a running Docker engine.
# Environment: DEBIAN_MIRROR (default: debootstrap's), ASYA_IMAGES_FORCE.
set -euo pipefail

say() { echo "ci-container-images: $*" >&2; }

BASE_TAG=debian:bookworm-slim
RABBIT_TAG=rabbitmq:3-management
PG_TAG=postgres:15
FORCE=${ASYA_IMAGES_FORCE:-}

docker info >/dev/null 2>&1 || { say "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-default})"; exit 2; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

WORK=$(mktemp -d /tmp/asya-ci-images.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# ---- debian:bookworm-slim -----------------------------------------------------
if [ -z "$FORCE" ] && have_image "$BASE_TAG"; then
    say "$BASE_TAG present"
else
    command -v debootstrap >/dev/null || { say "debootstrap is not installed"; exit 2; }
    [ "$(id -u)" = 0 ] || { say "debootstrap needs root"; exit 2; }
    t0=$SECONDS
    say "debootstrap --variant=minbase bookworm (log: $WORK/debootstrap.log)"
    if ! debootstrap --variant=minbase bookworm "$WORK/rootfs" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} \
        >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" >&2
        say "debootstrap failed"
        exit 1
    fi
    R=$WORK/rootfs
    # Same apt sources as this machine (main, updates, security) when it uses
    # the deb822 file the official image also ships.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$R/etc/apt/sources.list.d/debian.sources"
        rm -f "$R/etc/apt/sources.list"
    fi
    # Like the official slim image: no caches or lists, no docs/man pages.
    cat >"$R/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    cat >"$R/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    rm -rf "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* \
        "$R"/var/log/* "$R"/tmp/* "$R"/usr/share/man/* "$R"/usr/share/info/*
    find "$R/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    : >"$R/etc/hostname"
    tar -C "$R" --numeric-owner -c . |
        docker import --change 'CMD ["bash"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$BASE_TAG" >/dev/null
    rm -rf "$R"
    say "$BASE_TAG imported in $((SECONDS - t0)) s ($(docker image inspect -f '{{.Size}}' "$BASE_TAG" | awk '{printf "%d MB", $1/1e6}'))"
fi

# ---- rabbitmq:3-management ----------------------------------------------------
if [ -z "$FORCE" ] && have_image "$RABBIT_TAG"; then
    say "$RABBIT_TAG present"
else
    t0=$SECONDS
    mkdir -p "$WORK/rabbitmq"
    cat >"$WORK/rabbitmq/10-defaults.conf" <<'EOF'
## DEFAULT SETTINGS ARE NOT MEANT TO BE TAKEN STRAIGHT INTO PRODUCTION
## (the official image's conf.d/10-defaults.conf; the ports stay 5672/15672
## unless /etc/rabbitmq/rabbitmq.conf says otherwise)
loopback_users.guest = false
log.console = true
EOF
    cat >"$WORK/rabbitmq/Dockerfile" <<'EOF'
FROM debian:bookworm-slim
# policy-rc.d: the package must not try to start a service during the build.
RUN set -eux; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    mkdir -p /etc/rabbitmq/conf.d /var/lib/rabbitmq /var/log/rabbitmq; \
    echo '[rabbitmq_management].' > /etc/rabbitmq/enabled_plugins; \
    : > /etc/rabbitmq/rabbitmq.conf; \
    chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
COPY 10-defaults.conf /etc/rabbitmq/conf.d/10-defaults.conf
# The real scripts first on PATH (Debian's /usr/sbin wrappers would send the
# server's output to /var/log/rabbitmq/startup_log instead of the console).
ENV PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/var/lib/rabbitmq \
    RABBITMQ_CONFIG_FILE=/etc/rabbitmq/rabbitmq \
    LANG=C.UTF-8
WORKDIR /var/lib/rabbitmq
VOLUME /var/lib/rabbitmq
USER rabbitmq
EXPOSE 4369 5671 5672 15671 15672 25672
CMD ["rabbitmq-server"]
EOF
    say "building $RABBIT_TAG (log: $WORK/rabbitmq-build.log)"
    if ! DOCKER_BUILDKIT=0 docker build -t "$RABBIT_TAG" "$WORK/rabbitmq" >"$WORK/rabbitmq-build.log" 2>&1; then
        tail -n 40 "$WORK/rabbitmq-build.log" >&2
        say "building $RABBIT_TAG failed"
        exit 1
    fi
    say "$RABBIT_TAG built in $((SECONDS - t0)) s"
fi

# ---- postgres:15 --------------------------------------------------------------
if [ -z "$FORCE" ] && have_image "$PG_TAG"; then
    say "$PG_TAG present"
else
    t0=$SECONDS
    mkdir -p "$WORK/postgres"
    cat >"$WORK/postgres/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# The official image's start-up, the part the compose files use: on an empty
# PGDATA, initdb with POSTGRES_USER / POSTGRES_PASSWORD and POSTGRES_DB created
# (in single-user mode: nothing listens before the real server starts); then the
# server, listening on every interface.
set -euo pipefail
if [ "${1:-postgres}" != postgres ]; then exec "$@"; fi
shift || true
: "${PGDATA:=/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "docker-entrypoint.sh: the data folder is empty and POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >&2
    rm -f "$pwfile"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \"${db//\"/\"\"}\" OWNER \"${user//\"/\"\"}\";" |
            postgres --single -j -D "$PGDATA" postgres >/dev/null
    fi
    echo "docker-entrypoint.sh: initialized $PGDATA (user $user, database $db)" >&2
fi
exec postgres -D "$PGDATA" "$@"
EOF
    cat >"$WORK/postgres/Dockerfile" <<'EOF'
FROM debian:bookworm-slim
# No cluster at install (the entrypoint makes one in PGDATA); policy-rc.d: the
# package must not try to start a service during the build.
RUN set -eux; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common; \
    sed -ri 's/#? *create_main_cluster *=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    mkdir -p /var/lib/postgresql/data /var/run/postgresql; \
    chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql; \
    chmod 0700 /var/lib/postgresql/data; chmod 2775 /var/run/postgresql
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
USER postgres
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
    say "building $PG_TAG (log: $WORK/postgres-build.log)"
    if ! DOCKER_BUILDKIT=0 docker build -t "$PG_TAG" "$WORK/postgres" >"$WORK/postgres-build.log" 2>&1; then
        tail -n 40 "$WORK/postgres-build.log" >&2
        say "building $PG_TAG failed"
        exit 1
    fi
    say "$PG_TAG built in $((SECONDS - t0)) s"
fi
