#!/usr/bin/env bash
# Make a Debian bookworm base image available to `docker build`, with or without a registry.
#
#   1. $BASE_IMAGE (default debian:bookworm-slim) is already in the engine: use it.
#   2. The image this script built before ($OFFLINE_IMAGE) is there: reuse it.
#   3. `docker pull $BASE_IMAGE` succeeds within $PULL_TIMEOUT seconds: use it.
#   4. Otherwise build $OFFLINE_IMAGE once from Debian's packages: debootstrap (minbase,
#      plus python3, python3-psycopg and ca-certificates) from the mirror this machine's
#      apt already uses, then `docker import`.
#
# The last line on stdout is the image to pass as --build-arg BASE_IMAGE=...; everything
# else goes to stderr. Idempotent; concurrent runs serialise on a lock; must run as root
# when it has to build (debootstrap needs it).
#
# Environment: BASE_IMAGE, OFFLINE_IMAGE (default sliceops/bookworm-base:1),
# DEBIAN_MIRROR (default: the first bookworm source of /etc/apt), PULL_TIMEOUT (default 20).
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
OFFLINE_IMAGE="${OFFLINE_IMAGE:-sliceops/bookworm-base:1}"
PULL_TIMEOUT="${PULL_TIMEOUT:-20}"
SUITE=bookworm
INCLUDE=python3,python3-psycopg,ca-certificates

log() { printf 'images/base/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
have() { docker image inspect "$1" >/dev/null 2>&1; }
use() { log "using $1"; printf '%s\n' "$1"; exit 0; }

docker info >/dev/null 2>&1 || die "the Docker engine does not answer ('docker info' fails)"

have "$BASE_IMAGE" && use "$BASE_IMAGE"
have "$OFFLINE_IMAGE" && use "$OFFLINE_IMAGE"

# Two deploys starting at once must not debootstrap twice.
exec 9>/var/lock/sliceops-base-image.lock
flock 9
have "$OFFLINE_IMAGE" && use "$OFFLINE_IMAGE"

if timeout "$PULL_TIMEOUT" docker pull --quiet "$BASE_IMAGE" >/dev/null 2>&1; then
    use "$BASE_IMAGE"
fi
log "cannot pull $BASE_IMAGE (no registry within ${PULL_TIMEOUT}s): building $OFFLINE_IMAGE with debootstrap"

[[ $EUID -eq 0 ]] || die "building $OFFLINE_IMAGE needs root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

# apt prints the URI of every index it would fetch, whatever the format of its source files
# (one-line .list or deb822 .sources); the suite's own InRelease names the mirror.
mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    mirror="$(apt-get update --print-uris 2>/dev/null \
        | sed -n "s|^'\(.*\)/dists/$SUITE/InRelease'.*|\1|p" | head -n1)" || true
fi
[[ -n "$mirror" ]] || die "no apt source for suite $SUITE in /etc/apt (set DEBIAN_MIRROR)"

start=$SECONDS
work="$(mktemp -d /var/tmp/sliceops-base.XXXXXX)"
rootfs="$work/rootfs"
cleanup() {
    # debootstrap mounts proc and sys inside the target and leaves them if it fails;
    # never remove across a mount.
    local m
    while read -r m; do umount -l "$m" 2>/dev/null || true; done \
        < <(awk -v r="$rootfs" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

log "debootstrap --variant=minbase --include=$INCLUDE $SUITE from $mirror"
if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die "debootstrap failed"
fi
log "debootstrap done in $((SECONDS - start))s"

# What a registry's debian image leaves out too: downloaded packages and index files.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" --numeric-owner -c . \
    | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$OFFLINE_IMAGE" >/dev/null
log "imported $OFFLINE_IMAGE in $((SECONDS - start))s"
use "$OFFLINE_IMAGE"
