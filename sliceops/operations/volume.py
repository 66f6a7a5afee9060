"""Per-slice disk quotas: one preallocated btrfs image per instance, loop-mounted on the
slices' data root, one subvolume per slice with a qgroup limit (`slice_defaults.disk`).

Why btrfs: the kernel must enforce the quota, and this is what it offers everywhere the
deploy runs. XFS project quotas and ext4 quotas need CONFIG_XFS_QUOTA / CONFIG_QFMT_V2,
which kernels built for VMs and CI runners often lack (this project's own runner: both
off); btrfs qgroups are part of btrfs itself. One image per instance keeps adding a slice
cheap (a subvolume and a limit, no mkfs); the image is preallocated (fallocate, mounted
`nodiscard` so freed blocks are not punched back out of it) so the disk it protects is
never over-committed. A write past a limit fails with EDQUOT inside the container.

A host converged before quotas has plain directories there: they are copied into the
volume (ownership, modes and times kept; compared before the originals are removed) with
the instance's containers stopped, which the container step then recreates on the volume.
A slice whose data is larger than its quota is refused, never truncated.
"""

from __future__ import annotations

from collections import Counter

from pyinfra import host
from pyinfra.api import operation

from sliceops import factcache, progress
from sliceops.errors import QuotaError
from sliceops.facts.volume import VOLUME, SliceVolume, VolumeState
from sliceops.inventory import DESTROYING, MIB, Inventory
from sliceops.operations.util import as_script, refuses
from sliceops.shell import command, quote

q = quote


def human(n: int) -> str:
    """33030144 -> '31.5 MiB (33030144 bytes)': readable, and exact for a quota's edge."""
    for unit, size in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def _refuse_what_cannot_fit(inv: Inventory, have: VolumeState, moving: dict[str, int]) -> None:
    """Every reason to change nothing, all found before any command runs."""
    mnt = inv.slices_data_dir
    problems = []
    if have.mounted and have.fstype != "btrfs":
        problems.append(f"{mnt} is already mounted ({have.mounted}, {have.fstype}) and is not the slice volume")
    elif have.mounted and have.image_size is None:
        problems.append(
            f"{mnt} is mounted ({have.mounted}) but its image {inv.volume_image} is gone: nothing written there "
            f"would survive a reboot; copy what must be kept, unmount it (umount {mnt}) and deploy again"
        )
    listed = {s.id: s for s in inv.slices}
    for name, used in sorted(moving.items()):
        s = listed.get(int(name)) if name.isdigit() else None
        if s is None:
            problems.append(
                f"{mnt}/{name} is not the data directory of a slice listed in {inv.path}: "
                "move it away so the slice volume can be mounted there"
            )
        elif used > s.disk_quota_bytes:
            problems.append(
                f"slice {s.id}'s data ({human(used)}, {mnt}/{name}) exceeds its disk quota {s.disk}: "
                "raise its disk quota; nothing was moved"
            )
    for s in inv.slices:
        sub = have.subvolumes.get(s.id)
        if sub and sub["limit"] != s.disk_quota_bytes and sub["used"] > s.disk_quota_bytes:
            problems.append(
                f"slice {s.id} uses {human(sub['used'])} of /data, more than the disk quota {s.disk} "
                "asked for it: the quota is left as it was; free space in the slice or ask for more"
            )
    grow = inv.volume_size - (have.image_size or 0)
    if grow > have.avail:
        problems.append(
            f"the slice volume {inv.volume_image} must grow by {human(grow)} to {human(inv.volume_size)} but its "
            f"filesystem has {human(have.avail)} free: lower the disk quotas or free space on the host"
        )
    if problems:
        raise QuotaError("; ".join(problems))


def volume_plan(inv: Inventory, have: VolumeState) -> list[str]:
    """The shell lines that make the host's volume what the inventory says (empty: nothing
    to do). Raises QuotaError, naming each reason, when it must not be changed."""
    img, mnt, old = inv.volume_image, inv.slices_data_dir, inv.volume_staging_dir
    moving = {**(have.plain if not have.mounted else have.inner), **have.staged}
    _refuse_what_cannot_fit(inv, have, moving)
    size = inv.volume_size
    grow = have.image_size is not None and have.image_size < size
    lines: list[str] = []
    if not have.mounted:
        if have.image_size is None:
            tmp = f"{img}.new"
            lines += [
                f"mkdir -p {q(img.rsplit('/', 1)[0])}",
                f"rm -f {q(tmp)}",
                # fallocate: every block reserved now; a sparse image would promise disk it has not got.
                f"fallocate -l {size} {q(tmp)}",
                f"mkfs.btrfs -q {q(tmp)} >/dev/null",
                f"mv {q(tmp)} {q(img)}",
                f"echo {q(f'sliceops: created the slice volume {img}, preallocated: {human(size)}')}",
            ]
        elif grow:
            lines.append(f"fallocate -l {size} {q(img)}")
        if have.plain:
            # Nothing may write the directories while they are copied; the container step
            # recreates the containers on the volume (their spec names it).
            label = f"sliceops.instance={inv.instance}"
            lines += [
                f"docker ps -q --filter {q(label)} 2>/dev/null | xargs -r docker stop >/dev/null",
                f"mkdir -p {q(old)}",
            ]
            lines += [f"mv -T {q(f'{mnt}/{name}')} {q(f'{old}/{name}')}" for name in sorted(have.plain)]
        lines += [
            f"mkdir -p {q(mnt)}",
            # Immutable while nothing is mounted on it: a container started before the volume
            # (a boot that skipped it) fails instead of filling the host's disk.
            f"chattr +i {q(mnt)} 2>/dev/null || true",
            f"mount -t btrfs -o loop,nodiscard {q(img)} {q(mnt)}",
            f"btrfs quota enable {q(mnt)}",
        ]
        if grow:
            lines.append(f"btrfs filesystem resize max {q(mnt)} >/dev/null")
    elif grow:
        lines += [
            f"fallocate -l {size} {q(img)}",
            f"losetup -c {q(have.mounted)}",
            f"btrfs filesystem resize max {q(mnt)} >/dev/null",
            f"echo {q(f'sliceops: grew the slice volume {img} to {human(size)}')}",
        ]
    restarts: list[str] = []
    if have.mounted and have.inner:
        # A plain directory in the volume has no quota: it moves aside and into a subvolume.
        # Its container is stopped meanwhile and started again (on the subvolume) if it ran.
        lines.append(f"mkdir -p {q(old)}")
        for name in sorted(have.inner):
            container = q(inv.container_name(int(name))) if name.isdigit() else None
            if container:
                lines += [
                    f"ran_{name}=$(docker inspect -f '{{{{.State.Running}}}}' {container} 2>/dev/null || true)",
                    f"docker stop {container} >/dev/null 2>&1 || true",
                ]
                restarts.append(f"if [ \"$ran_{name}\" = true ]; then docker start {container} >/dev/null; fi")
            lines.append(f"mv -T {q(f'{mnt}/{name}')} {q(f'{old}/{name}')}")
    # Slices being destroyed keep what they have until the destroy step archives it.
    wanted = [s for s in inv.slices if s.status != DESTROYING or s.id in have.subvolumes or str(s.id) in moving]
    if not have.mounted and have.image_size is not None:
        # An existing image, unmounted (a reboot that skipped the boot script): what it holds
        # is only known once mounted, so the script checks each slice there.
        return lines + [_LIMIT_SLICE] + [line for s in wanted for line in _limit_after_mount(inv, s)] + _move_in(inv, moving)
    limited = [s for s in wanted
               if s.id not in have.subvolumes or have.subvolumes[s.id]["limit"] != s.disk_quota_bytes]
    for done, s in enumerate(limited, 1):
        path = f"{mnt}/{s.id}"
        if s.id not in have.subvolumes:
            lines.append(f"btrfs subvolume create {q(path)} >/dev/null")
        lines += [
            f"btrfs qgroup limit {s.disk_quota_bytes} {q(path)}",
            progress.shell("volume", done, len(limited), f"slice-{s.id}"),
        ]
    # A line per slice for a few; for a fleet's worth, one line naming a few.
    said = [[s] for s in limited] if len(limited) <= progress.SHOWN else [limited] if limited else []
    lines += [f"echo {q(_quotas_set(some))}" for some in said]
    return lines + _move_in(inv, moving) + restarts


def _quotas_set(limited: list) -> str:
    """`sliceops: slice 4 disk quota 64m`, or for many: `sliceops: disk quotas set for 500 slices
    (1, 2, 3, 4, 5 and 495 more): 64m` (each quota asked for, with its count when several)."""
    if len(limited) == 1:
        return f"sliceops: slice {limited[0].id} disk quota {limited[0].disk}"
    quotas = Counter(s.disk for s in limited)
    asked = quotas.most_common(1)[0][0] if len(quotas) == 1 else ", ".join(
        f"{disk} for {n}" for disk, n in sorted(quotas.items()))
    return f"sliceops: disk quotas set for {progress.listed([str(s.id) for s in limited], 'slices')}: {asked}"


# Shell function for a slice whose subvolume may or may not exist (an image found unmounted:
# the fact could not look inside): create it, or refuse a new limit below what it stores,
# then set the limit. Defined once, called per slice, so the script holds two command
# substitutions whatever the fleet's size. $1 path, $2 limit, $3 the refusal, $4 the mount.
_LIMIT_SLICE = """\
limit_slice() {
  if [ -d "$1" ]; then
    used=$(btrfs qgroup show -re --raw --sync "$4" | awk -v id="0/$(btrfs inspect-internal rootid "$1")" '$1 == id {print $2, $4}')
    set -- "$1" "$2" "$3" "$4" $used
    if [ "$6" != "$2" ] && [ "${5:-0}" -gt "$2" ]; then echo "$3" "($5 bytes)" >&2; exit 1; fi
  else btrfs subvolume create "$1" >/dev/null; fi
  btrfs qgroup limit "$2" "$1"
}"""


def _limit_after_mount(inv: Inventory, s) -> list[str]:
    """Shell for a slice whose subvolume may or may not exist (see _LIMIT_SLICE)."""
    refusal = (f"sliceops: slice {s.id} stores more than the disk quota {s.disk} asked for it: "
               "the quota is left as it was; free space in the slice or ask for more")
    return [command("limit_slice", inv.slice_data_dir(s.id), s.disk_quota_bytes, refusal, inv.slices_data_dir)]


def _move_in(inv: Inventory, moving: dict[str, int]) -> list[str]:
    """Copy each staged plain directory into its subvolume, compare, then remove the original."""
    mnt, old = inv.slices_data_dir, inv.volume_staging_dir
    lines = []
    for name in sorted(moving):
        src, dest = f"{old}/{name}", f"{mnt}/{name}"
        lines += [
            f"cp -a {q(src + '/.')} {q(dest + '/')}",
            f"diff -r --no-dereference {q(src)} {q(dest)} >/dev/null",
            f"rm -rf {q(src)}",
            f"echo {q(f'sliceops: moved slice {name} data into the slice volume: {human(moving[name])}')}",
        ]
    if moving:
        lines.append(f"rmdir {q(old)}")
    return lines


def _have(inv: Inventory, init: str, reads=frozenset({VOLUME})) -> VolumeState:
    return factcache.get(  # one read for the check and the step, again only after a change
        SliceVolume, reads=reads, image=inv.volume_image, mountpoint=inv.slices_data_dir,
        staging=inv.volume_staging_dir, service=inv.volume_service, init=init,
    )


@operation(is_idempotent=True)
@refuses
def quotas_fit(inv: Inventory, init: str):
    """Refuse, before anything on the host changes, quotas that cannot hold what the slices
    already store and a volume the host has no room for."""
    have = _have(inv, init)
    volume_plan(inv, have)
    host.noop("every slice's data fits its disk quota; the host has room for the slice volume")
    return
    yield  # an operation is a generator


@operation(is_idempotent=True)
@refuses
def volume(inv: Inventory, init: str):
    """The instance's slice volume exists, is mounted, holds every slice's subvolume and
    limits them to their quotas."""
    have = _have(inv, init)
    lines = volume_plan(inv, have)
    if not lines:
        host.noop(
            f"slice volume {inv.slices_data_dir} mounted ({human(have.image_size or 0)}); "
            f"{len(have.subvolumes)} slice quota(s) as listed"
        )
        return
    factcache.touches(VOLUME)  # subvolumes, quotas, the image: nothing PostgreSQL or Docker report
    # A file, not one `sh -c` argument: 500 slices' lines outgrow what one argument may hold.
    yield from as_script(inv.share_dir, "volume", "\n".join(["set -e", *lines]))


@operation(is_idempotent=True)
def mounted_at_boot(inv: Inventory, init: str):
    """The boot script (LSB: in rcS, so before every runlevel service such as the engine) or
    unit (systemd: Before=docker.service) is enabled."""
    # Only whether it starts at boot is read here, which the volume step (subvolumes, quotas,
    # the image) never changes: its growing the volume does not make this read it all again.
    have = _have(inv, init, reads=frozenset())
    if have.at_boot:
        host.noop(f"{inv.volume_service} mounts the slice volume at boot")
        return
    if init == "systemd":
        yield f"systemctl daemon-reload && systemctl enable --quiet {q(inv.volume_service + '.service')}"
    else:
        yield f"update-rc.d {q(inv.volume_service)} defaults >/dev/null"


def remove_data(inv: Inventory, slice_id: int) -> str:
    """Shell that removes a slice's data directory: a subvolume with its qgroup (recent kernels
    drop the qgroup with the subvolume, older ones keep it: destroyed here), or a plain directory."""
    path = q(inv.slice_data_dir(slice_id))
    if not inv.quota_enabled:
        return f"rm -rf {path}"
    mnt = q(inv.slices_data_dir)
    return (
        f"if [ -d {path} ] && id=$(btrfs inspect-internal rootid {path} 2>/dev/null) && [ \"$id\" != 5 ]; then "
        f"btrfs subvolume delete -c {path} >/dev/null && btrfs subvolume sync {mnt} \"$id\" && "
        f"{{ btrfs qgroup destroy \"0/$id\" {mnt} >/dev/null 2>&1 || true; }}; "
        f"else rm -rf {path}; fi"
    )
