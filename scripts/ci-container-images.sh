#!/usr/bin/env bash
# ci-container-images.sh - local stand-ins for the upstream images the compose
# files use, for machines that can reach Debian's package mirror but no
# container registry (CI here).  With these in the engine's image store the
# compose files stay exactly what a user runs against Docker Hub.
#
#   scripts/ci-container-images.sh            build what is missing
#   ASYA_IMAGES_FORCE=1 scripts/ci-container-images.sh   rebuild both
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
#
# Needs: root (debootstrap), debootstrap, a running Docker engine.
# Environment: DEBIAN_MIRROR (default: debootstrap's), ASYA_IMAGES_FORCE.
set -euo pipefail

say() { echo "ci-container-images: $*" >&2; }

BASE_TAG=debian:bookworm-slim
RABBIT_TAG=rabbitmq:3-management
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
