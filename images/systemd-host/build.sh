#!/usr/bin/env bash
# Build the Docker image `sliceops/systemd-host:bookworm`: a Debian 12 host that
# boots systemd as PID 1 and is reached over SSH, so end-to-end tests converge
# and verify it exactly like a production server (tests/e2e/fix_systemd_host.py).
#
# No container registry is reachable here, so the root filesystem is made with
# debootstrap from the Debian mirror this machine's apt already uses, then
# `docker import`ed.
#
# Usage: images/systemd-host/build.sh [--force]
#   Environment: DEBIAN_MIRROR (default: the first bookworm source of /etc/apt),
#   SLICEOPS_SYSTEMD_HOST_IMAGE (default sliceops/systemd-host:bookworm).
#   Exits at once when the image exists and was built by this very script
#   (label org.sliceops.recipe-sha256); rebuilds when the script changed or
#   with --force.
#
# Contract with whoever runs the image (the fixture does all of this):
#   docker run --cap-add SYS_ADMIN --tmpfs /run --tmpfs /run/lock \
#       -v /sys/fs/cgroup:/sys/fs/cgroup:ro ... sliceops/systemd-host:bookworm
#   sshd listens on the address and port in /etc/ssh/sshd_config.d/10-listen.conf
#   (image default: 127.0.0.1:2222, never 22, because tests run the container
#   with --network host). Root logs in by key only; /root/.ssh/authorized_keys
#   is empty in the image. SSH host keys are generated at each container's
#   first boot, never baked into the image.
set -euo pipefail

IMAGE="${SLICEOPS_SYSTEMD_HOST_IMAGE:-sliceops/systemd-host:bookworm}"
SUITE=bookworm
SSH_PORT_DEFAULT=2222
INCLUDE="systemd,systemd-sysv,dbus,openssh-server,python3,iproute2,ca-certificates,procps,sudo,curl,gnupg,less,rsync"
# Units that cannot work, or only make noise, inside a container. Masking (a
# link to /dev/null) rather than removing keeps the packages production-like.
MASK_UNITS=(
    getty.target console-getty.service getty@.service serial-getty@.service
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
    systemd-udev-trigger.service systemd-udev-settle.service
    systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service
    systemd-remount-fs.service systemd-firstboot.service
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
    sys-fs-fuse-connections.mount dev-hugepages.mount
    # Background apt runs would take the dpkg lock while a test converges the host.
    apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service
)

RECIPE_SHA="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"

log() { printf 'images/systemd-host/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $arg (usage: $0 [--force])" ;;
    esac
done

docker info >/dev/null 2>&1 || die "the Docker engine is not reachable: 'docker info' fails"

image_is_current() {
    local sha
    sha="$(docker image inspect --format '{{ index .Config.Labels "org.sliceops.recipe-sha256" }}' "$IMAGE" 2>/dev/null)" || return 1
    [[ "$sha" == "$RECIPE_SHA" ]]
}

if [[ $force -eq 0 ]] && image_is_current; then
    log "$IMAGE is up to date; nothing to do (use --force to rebuild)"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "building $IMAGE needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

# Two test sessions starting at once must not build twice.
exec 9>"/var/lock/sliceops-systemd-host-build.lock"
flock 9
if [[ $force -eq 0 ]] && image_is_current; then
    log "$IMAGE was built by another process meanwhile"
    exit 0
fi

# Active apt source files on this machine: apt reads only these names.
source_files() {
    if [[ -s /etc/apt/sources.list ]]; then echo /etc/apt/sources.list; fi
    find /etc/apt/sources.list.d -maxdepth 1 -type f \( -name '*.list' -o -name '*.sources' \) 2>/dev/null | sort
}

# apt prints the URI of every index it would fetch, whatever the format of its
# source files (one-line .list or deb822 .sources); the suite's own InRelease
# names the mirror (same method as images/base/build.sh).
MIRROR="${DEBIAN_MIRROR:-}"
if [[ -z "$MIRROR" ]]; then
    MIRROR="$(apt-get update --print-uris 2>/dev/null \
        | sed -n "s|^'\(.*\)/dists/$SUITE/InRelease'.*|\1|p" | head -n1)" || true
fi
[[ -n "$MIRROR" ]] || die "no apt source for suite $SUITE in /etc/apt (set DEBIAN_MIRROR)"

start=$SECONDS
WORK="$(mktemp -d /var/tmp/sliceops-systemd-host.XXXXXX)"
ROOTFS="$WORK/rootfs"

cleanup() {
    # debootstrap mounts proc/sys inside the target; never rm -rf across a mount.
    local m
    while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(awk -v r="$ROOTFS" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 40 "$WORK/debootstrap.log" >&2; tail -n 40 "$ROOTFS/debootstrap/debootstrap.log" >&2 2>/dev/null || true; die "debootstrap failed"; }
log "debootstrap done in $((SECONDS - start))s"

in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# --- apt: the same sources and fetch settings as this machine -----------------
rm -f "$ROOTFS/etc/apt/sources.list"
while read -r f; do
    install -D -m 0644 "$f" "$ROOTFS$f"
    # Keyrings named by Signed-By must exist inside too.
    while read -r key; do
        if [[ -f "$key" && ! -e "$ROOTFS$key" ]]; then install -D -m 0644 "$key" "$ROOTFS$key"; fi
    done < <(grep -oE '(signed-by=|Signed-By:[[:space:]]*)/[^] ,]+' "$f" | sed -E 's/^(signed-by=|Signed-By:[[:space:]]*)//')
done < <(source_files)
# Proxy and release-date checks decide whether apt can fetch at all (a dated
# snapshot mirror fails Valid-Until otherwise); carry over only those.
apt-config dump 2>/dev/null | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy|Retries) ' \
    >"$ROOTFS/etc/apt/apt.conf.d/90sliceops-host" || true
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*

# --- systemd ------------------------------------------------------------------
in_root systemctl set-default multi-user.target >/dev/null 2>&1
in_root systemctl mask "${MASK_UNITS[@]}" >/dev/null 2>&1 \
    || for u in "${MASK_UNITS[@]}"; do ln -sfn /dev/null "$ROOTFS/etc/systemd/system/$u"; done
# Each container gets its own machine-id at boot (empty file = "not yet set").
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
# C.UTF-8 ships with libc: SSH sessions (pam_env) and services get a UTF-8
# locale, so e.g. pg_createcluster picks UTF8 like on a real server.
echo 'LANG=C.UTF-8' >"$ROOTFS/etc/default/locale"

# --- sshd ---------------------------------------------------------------------
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
mkdir -p "$ROOTFS/etc/systemd/system/ssh.service.d"
cat >"$ROOTFS/etc/systemd/system/ssh.service.d/10-sliceops-host-keys.conf" <<'UNIT'
# Host keys are per container, made on first boot; the unit's own `sshd -t`
# must run after them, hence the reset and re-list. Only ed25519 (see
# 50-sliceops.conf): an RSA key takes seconds on a busy CI machine.
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -e /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
ExecStartPre=/usr/sbin/sshd -t
UNIT
cat >"$ROOTFS/etc/ssh/sshd_config.d/10-listen.conf" <<CONF
# Replaced per container by the e2e fixture before boot. Never port 22: the
# container shares the network of the machine that runs it.
ListenAddress 127.0.0.1
Port $SSH_PORT_DEFAULT
CONF
cat >"$ROOTFS/etc/ssh/sshd_config.d/50-sliceops.conf" <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF
install -d -m 0700 "$ROOTFS/root/.ssh"
install -m 0600 /dev/null "$ROOTFS/root/.ssh/authorized_keys"
in_root passwd -l root >/dev/null

# --- pack ---------------------------------------------------------------------
log "importing $IMAGE"
# `docker import --change` (engine 20.10) refuses STOPSIGNAL, so the metadata
# comes from a small `docker build` on top of the imported root filesystem
# (FROM a local image needs no registry). SIGRTMIN+3 is what makes systemd, as
# PID 1, shut down cleanly on `docker stop` (SIGTERM would only re-exec it).
ROOTFS_IMAGE="$IMAGE-rootfs"
previous="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null)" || previous=""
tar -C "$ROOTFS" --numeric-owner --xattrs -c . | docker import - "$ROOTFS_IMAGE" >/dev/null
# The client warns that the legacy builder is deprecated; show its output only on failure.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" - >"$WORK/build.log" 2>&1 <<DOCKERFILE || { cat "$WORK/build.log" >&2; die "docker build failed"; }
FROM $ROOTFS_IMAGE
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL org.sliceops.recipe-sha256=$RECIPE_SHA
CMD ["/sbin/init"]
DOCKERFILE
docker image rm "$ROOTFS_IMAGE" >/dev/null
# The image this one replaces, unless a container still uses it.
if [[ -n "$previous" ]]; then docker image rm "$previous" >/dev/null 2>&1 || true; fi

log "built $IMAGE in $((SECONDS - start))s"
