"""The slice volume's planning: given what the host has (the SliceVolume fact), exactly these
shell lines, nothing when it is converged, and a refusal naming sizes when a quota cannot
hold what a slice already stores."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import replace

import pytest
import yaml

from sliceops.errors import InventoryError, QuotaError
from sliceops.facts.volume import SliceVolume, VolumeState
from sliceops.inventory import MIB, load
from sliceops import progress, shell
from sliceops.operations.volume import _LIMIT_SLICE, remove_data, volume_plan

GIB = 1024 * MIB
ROOT = "/srv/sliceops/main/slices"
IMG = "/srv/sliceops/main/slices.img"
PLENTY = 500 * GIB


def inventory(tmp_path, slices=None, **sections):
    data = {"target": "@local", **sections, "slices": slices or [{"id": 1}, {"id": 2}]}
    path = tmp_path / f"inv-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load(path)


def said(line: str) -> bool:
    """A line that only tells the operator something (a sentence, a progress line)."""
    return line.startswith("echo ") or progress.PREFIX in line


def converged(inv, used: dict[int, int] | None = None) -> VolumeState:
    """The host as the deploy leaves it: image of the wanted size, mounted, a subvolume per slice."""
    used = used or {}
    return VolumeState(
        image_size=inv.volume_size, avail=PLENTY, mounted="/dev/loop3", fstype="btrfs", at_boot=True,
        subvolumes={s.id: {"id": 255 + s.id, "used": used.get(s.id, 16384), "limit": s.disk_quota_bytes} for s in inv.slices},
    )


def test_the_image_holds_every_quota_plus_metadata_room(tmp_path):
    inv = inventory(tmp_path)  # two slices at the default 2g
    assert inv.volume_size == 4 * GIB + 256 * MIB + GIB // 2
    inv = inventory(tmp_path, slices=[{"id": 1, "disk": "20m"}, {"id": 2, "disk": "20m"}])
    assert inv.volume_size == 40 * MIB + 256 * MIB + 5 * MIB


def test_fresh_host_creates_a_preallocated_image_then_a_limited_subvolume_per_slice(tmp_path):
    inv = inventory(tmp_path, slices=[{"id": 1}, {"id": 2, "disk": "512m"}])
    size = inv.volume_size
    lines = volume_plan(inv, VolumeState(avail=PLENTY))
    assert [line for line in lines if not said(line)] == [
        "mkdir -p /srv/sliceops/main",
        f"rm -f {IMG}.new",
        f"fallocate -l {size} {IMG}.new",
        f"mkfs.btrfs -q {IMG}.new >/dev/null",
        f"mv {IMG}.new {IMG}",
        f"mkdir -p {ROOT}",
        f"chattr +i {ROOT} 2>/dev/null || true",
        f"mount -t btrfs -o loop,nodiscard {IMG} {ROOT}",
        f"btrfs quota enable {ROOT}",
        f"btrfs subvolume create {ROOT}/1 >/dev/null",
        f"btrfs qgroup limit {2 * GIB} {ROOT}/1",
        f"btrfs subvolume create {ROOT}/2 >/dev/null",
        f"btrfs qgroup limit {512 * MIB} {ROOT}/2",
    ]


def test_converged_host_needs_nothing(tmp_path):
    inv = inventory(tmp_path)
    assert volume_plan(inv, converged(inv)) == []


def test_after_a_reboot_without_the_boot_script_the_image_is_only_mounted_again(tmp_path):
    inv = inventory(tmp_path)
    have = converged(inv)
    have.mounted = have.fstype = None
    have.subvolumes = {}  # not visible while unmounted
    lines = volume_plan(inv, have)
    assert f"mount -t btrfs -o loop,nodiscard {IMG} {ROOT}" in lines
    assert not any("fallocate" in line or "mkfs" in line or "docker stop" in line for line in lines)
    # What the subvolumes hold is seen only once mounted: created if missing, a lower limit
    # checked against what the slice stores there, in the script.
    # One shell function does it, called once per slice (no substitution per slice).
    assert lines.count(_LIMIT_SLICE) == 1
    refusal = ("sliceops: slice 1 stores more than the disk quota 2g asked for it: the quota is left as it "
               "was; free space in the slice or ask for more")
    assert shell.command("limit_slice", f"{ROOT}/1", 2 * GIB, refusal, ROOT) in lines


@pytest.mark.parametrize(("exists", "used", "limit", "refused"), [
    (False, None, None, False),          # no subvolume: created, then limited
    (True, 50 * MIB, 2 * GIB, False),    # under the new limit: limited
    (True, 3 * GIB, 2 * GIB, True),      # stores more than a new, lower limit: refused
    (True, 3 * GIB, 1 * GIB, False),     # the same limit as set already: left, not refused
])
def test_the_limit_function_checks_what_the_slice_stores(tmp_path, exists, used, limit, refused):
    """_LIMIT_SLICE run by sh, btrfs a stub printing `qgroup show` as btrfs would."""
    mnt = tmp_path / "slices"
    (mnt / "1").mkdir(parents=True) if exists else mnt.mkdir()
    log = tmp_path / "btrfs.log"
    stub = tmp_path / "bin" / "btrfs"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\n"
                    f"echo \"$*\" >>{log}\n"
                    "case \"$1 $2\" in\n"
                    "  'inspect-internal rootid') echo 257 ;;\n"
                    f"  'qgroup show') echo '0/257 {used or 0} 0 {limit or 0} none' ;;\n"
                    "esac\n")
    stub.chmod(0o755)
    script = _LIMIT_SLICE + "\n" + shell.command("limit_slice", f"{mnt}/1", 1 * GIB, "sliceops: refused", mnt)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{stub.parent}:/usr/bin:/bin"})
    calls = log.read_text().splitlines()
    if refused:
        assert out.returncode == 1 and out.stderr == f"sliceops: refused ({used} bytes)\n"
        assert not any(c.startswith("qgroup limit") for c in calls)
    else:
        assert out.returncode == 0, out.stderr
        assert calls[-1] == f"qgroup limit {GIB} {mnt}/1"
        assert (f"subvolume create {mnt}/1" in calls) == (not exists)


def test_a_new_slice_costs_a_subvolume_and_a_limit_and_grows_the_image(tmp_path):
    before = inventory(tmp_path)
    after = inventory(tmp_path, slices=[{"id": 1}, {"id": 2}, {"id": 3}])
    lines = volume_plan(after, converged(before))
    assert [line for line in lines if not said(line)] == [
        f"fallocate -l {after.volume_size} {IMG}",
        "losetup -c /dev/loop3",
        f"btrfs filesystem resize max {ROOT} >/dev/null",
        f"btrfs subvolume create {ROOT}/3 >/dev/null",
        f"btrfs qgroup limit {2 * GIB} {ROOT}/3",
    ]
    assert not any("mkfs" in line for line in lines)


def test_a_lowered_quota_above_usage_is_a_new_limit_and_the_image_never_shrinks(tmp_path):
    before = inventory(tmp_path)
    after = inventory(tmp_path, slices=[{"id": 1, "disk": "100m"}, {"id": 2}])
    lines = volume_plan(after, converged(before, used={1: 50 * MIB}))
    assert [line for line in lines if not said(line)] == [f"btrfs qgroup limit {100 * MIB} {ROOT}/1"]


def test_a_quota_below_what_the_slice_stores_is_refused_naming_the_size(tmp_path):
    before = inventory(tmp_path)
    after = inventory(tmp_path, slices=[{"id": 1, "disk": "20m"}, {"id": 2}])
    with pytest.raises(QuotaError) as exc:
        volume_plan(after, converged(before, used={1: 33030144}))
    message = str(exc.value)
    assert "slice 1 uses 31.5 MiB (33030144 bytes)" in message and "20m" in message
    assert "\n" not in message


def test_a_slice_already_over_its_quota_stays_refused_until_the_quota_is_enough(tmp_path):
    # The limit was set when the data still fit; the slice is at its limit now: nothing to do.
    inv = inventory(tmp_path, slices=[{"id": 1, "disk": "20m"}])
    assert volume_plan(inv, converged(inv, used={1: 20 * MIB})) == []


def test_plain_directories_move_into_the_volume_with_the_containers_stopped(tmp_path):
    inv = inventory(tmp_path, slices=[{"id": 1}, {"id": 2}, {"id": 3, "status": "suspended"}])
    have = VolumeState(avail=PLENTY, plain={"1": 5 * MIB, "3": 4096})
    lines = [line for line in volume_plan(inv, have) if not said(line)]
    stop = lines.index("docker ps -q --filter sliceops.instance=main 2>/dev/null | xargs -r docker stop >/dev/null")
    mount = lines.index(f"mount -t btrfs -o loop,nodiscard {IMG} {ROOT}")
    assert lines.index(f"mkfs.btrfs -q {IMG}.new >/dev/null") < stop < lines.index(f"mv -T {ROOT}/1 {ROOT}.plain/1") < mount
    tail = lines[lines.index(f"cp -a {ROOT}.plain/1/. {ROOT}/1/"):]
    assert tail == [
        f"cp -a {ROOT}.plain/1/. {ROOT}/1/",
        f"diff -r --no-dereference {ROOT}.plain/1 {ROOT}/1 >/dev/null",
        f"rm -rf {ROOT}.plain/1",
        f"cp -a {ROOT}.plain/3/. {ROOT}/3/",
        f"diff -r --no-dereference {ROOT}.plain/3 {ROOT}/3 >/dev/null",
        f"rm -rf {ROOT}.plain/3",
        f"rmdir {ROOT}.plain",
    ]


def test_an_interrupted_move_is_finished_by_the_next_deploy(tmp_path):
    inv = inventory(tmp_path)
    have = converged(inv)
    have.staged = {"2": MIB}
    lines = volume_plan(inv, have)
    assert [line for line in lines if not said(line)] == [
        f"cp -a {ROOT}.plain/2/. {ROOT}/2/",
        f"diff -r --no-dereference {ROOT}.plain/2 {ROOT}/2 >/dev/null",
        f"rm -rf {ROOT}.plain/2",
        f"rmdir {ROOT}.plain",
    ]


def test_plain_data_larger_than_its_quota_is_refused_and_nothing_moves(tmp_path):
    inv = inventory(tmp_path, slices=[{"id": 1, "disk": "20m"}, {"id": 2, "disk": "20m"}])
    with pytest.raises(QuotaError) as exc:
        volume_plan(inv, VolumeState(avail=PLENTY, plain={"1": 25 * MIB, "2": MIB}))
    message = str(exc.value)
    assert f"slice 1's data (25.0 MiB ({25 * MIB} bytes), {ROOT}/1) exceeds its disk quota 20m" in message
    assert "slice 2" not in message


def test_an_unlisted_directory_under_the_data_root_is_refused(tmp_path):
    inv = inventory(tmp_path)
    with pytest.raises(QuotaError, match=f"{ROOT}/7 is not the data directory of a slice listed"):
        volume_plan(inv, VolumeState(avail=PLENTY, plain={"1": MIB, "7": MIB}))
    with pytest.raises(QuotaError, match=f"{ROOT}/notes.txt is not the data directory"):
        volume_plan(inv, VolumeState(avail=PLENTY, plain={"notes.txt": 4096}))


def test_an_image_the_host_has_no_room_for_is_refused(tmp_path):
    inv = inventory(tmp_path)
    with pytest.raises(QuotaError, match=r"must grow by 4\.8 GiB .* but its filesystem has 1\.0 GiB"):
        volume_plan(inv, VolumeState(avail=GIB))


def test_something_else_mounted_on_the_data_root_is_refused(tmp_path):
    inv = inventory(tmp_path)
    with pytest.raises(QuotaError, match="already mounted .*ext4.* is not the slice volume"):
        volume_plan(inv, VolumeState(avail=PLENTY, image_size=inv.volume_size, mounted="/dev/vdb", fstype="ext4"))


def test_a_destroying_slice_gets_no_new_subvolume(tmp_path):
    inv = inventory(tmp_path, slices=[{"id": 1}, {"id": 2, "status": "destroying"}])
    have = converged(inventory(tmp_path, slices=[{"id": 1}]))
    have.image_size = inv.volume_size
    assert volume_plan(inv, have) == []


def test_hostile_paths_arrive_as_one_argument(tmp_path):
    # The model refuses such paths (helper "harden"); the commands must not depend on it.
    base = inventory(tmp_path)
    inv = replace(base, slice_defaults=replace(base.slice_defaults, data_dir="/srv/x $(touch /tmp/p);`id`"))
    lines = volume_plan(inv, VolumeState(avail=PLENTY))
    assert "mount -t btrfs -o loop,nodiscard '/srv/x $(touch /tmp/p);`id`/main/slices.img' " \
           "'/srv/x $(touch /tmp/p);`id`/main/slices'" in lines
    assert remove_data(inv, 1).startswith("if [ -d '/srv/x $(touch /tmp/p);`id`/main/slices/1' ]")


def test_removing_a_slice_drops_its_subvolume_and_qgroup(tmp_path):
    script = remove_data(inventory(tmp_path), 2)
    assert f"btrfs subvolume delete -c {ROOT}/2" in script
    assert f'btrfs qgroup destroy "0/$id" {ROOT}' in script
    assert remove_data(inventory(tmp_path, slice_defaults={"disk": False}), 2) == f"rm -rf {ROOT}/2"


def test_the_fact_joins_subvolumes_with_their_qgroups():
    lines = [
        "image 5100273664",
        "avail 83000000000",
        "mount /dev/loop0 btrfs",
        "subvol 256 1",
        "subvol 257 2",
        "qgroup 0/5 16384 none",
        "qgroup 0/256 20955136 20971520",
        "qgroup 0/257 16384 none",
        "staged 4096 3",
        "boot",
    ]
    st = SliceVolume.parse(lines)
    assert st.image_size == 5100273664 and st.avail == 83000000000
    assert (st.mounted, st.fstype, st.at_boot) == ("/dev/loop0", "btrfs", True)
    assert st.subvolumes == {
        1: {"id": 256, "used": 20955136, "limit": 20971520},
        2: {"id": 257, "used": 16384, "limit": None},
    }
    assert st.staged == {"3": 4096} and st.plain == {}
    assert SliceVolume.parse(["avail 10", "plain 8192 1"]).plain == {"1": 8192}


@pytest.mark.parametrize(("section", "slices", "message"), [
    ({"disk": True}, [{"id": 1}], "slice_defaults.disk: true is not valid"),
    ({"disk": "0m"}, [{"id": 1}], "slice_defaults.disk: '0m' is below the smallest quota"),
    ({"disk": "2t"}, [{"id": 1}], "slice_defaults.disk: '2t' is not valid"),
    ({}, [{"id": 1, "disk": "0g"}], "slices[0].disk: '0g' is below the smallest quota"),
    ({"disk": False}, [{"id": 1, "disk": "1g"}], "slices[0].disk: '1g' needs slice_defaults.disk"),
])
def test_bad_disk_quotas_are_refused_naming_key_and_value(tmp_path, section, slices, message):
    with pytest.raises(InventoryError) as exc:
        inventory(tmp_path, slices=slices, slice_defaults=section)
    assert any(message in line for line in exc.value.problems), exc.value.problems


def test_quotas_off_leaves_slices_without_one(tmp_path):
    inv = inventory(tmp_path, slice_defaults={"disk": False})
    assert not inv.quota_enabled and inv.slice(1).disk_quota_bytes is None
    inv = inventory(tmp_path, slices=[{"id": 1, "disk": "300m"}, {"id": 2}], slice_defaults={"disk": "1g"})
    assert inv.quota_enabled and (inv.slice(1).disk_quota_bytes, inv.slice(2).disk_quota_bytes) == (300 * MIB, GIB)


def test_a_plain_directory_inside_the_volume_becomes_a_subvolume_again(tmp_path):
    # A restore swaps the data directory for a fresh one: a plain directory, without a quota.
    inv = inventory(tmp_path)
    have = converged(inv)
    del have.subvolumes[2]
    have.inner = {"2": 3 * MIB}
    lines = [line for line in volume_plan(inv, have) if not said(line)]
    assert lines == [
        f"mkdir -p {ROOT}.plain",
        "ran_2=$(docker inspect -f '{{.State.Running}}' wa-slice-2 2>/dev/null || true)",
        "docker stop wa-slice-2 >/dev/null 2>&1 || true",
        f"mv -T {ROOT}/2 {ROOT}.plain/2",
        f"btrfs subvolume create {ROOT}/2 >/dev/null",
        f"btrfs qgroup limit {2 * GIB} {ROOT}/2",
        f"cp -a {ROOT}.plain/2/. {ROOT}/2/",
        f"diff -r --no-dereference {ROOT}.plain/2 {ROOT}/2 >/dev/null",
        f"rm -rf {ROOT}.plain/2",
        f"rmdir {ROOT}.plain",
        'if [ "$ran_2" = true ]; then docker start wa-slice-2 >/dev/null; fi',
    ]
    have.inner = {"2": 3 * GIB}
    with pytest.raises(QuotaError, match="slice 2's data .* exceeds its disk quota 2g"):
        volume_plan(inv, have)
    assert SliceVolume.parse(["mount /dev/loop0 btrfs", "inner 4096 2"]).inner == {"2": 4096}


def test_a_mounted_volume_whose_image_was_deleted_is_refused(tmp_path):
    inv = inventory(tmp_path)
    have = converged(inv)
    have.image_size = None
    with pytest.raises(QuotaError, match=f"{ROOT} is mounted .* but its image {IMG} is gone"):
        volume_plan(inv, have)


def test_the_quotas_are_said_as_progress_per_slice_and_one_line_for_the_step(tmp_path):
    """500 slices' quotas write 500 progress lines (the relay shows a dozen) and one summary."""
    inv = inventory(tmp_path, slices=[{"id": i, "disk": "8m"} for i in range(1, 501)], docker={"subnet": "172.30.0.0/22"})
    lines = volume_plan(inv, replace(converged(inv), subvolumes={}))
    steps = [progress.parse(shlex.split(line)[2]) for line in lines if progress.PREFIX in line]
    assert steps[0] == ("volume", 1, 500, "slice-1") and steps[-1] == ("volume", 500, 500, "slice-500")
    assert len(steps) == 500
    assert [line for line in lines if line.startswith("echo ")] == [
        "echo 'sliceops: disk quotas set for 500 slices (1, 2, 3, 4, 5 and 495 more): 8m'"]


def test_one_new_slice_s_quota_is_said_by_its_id(tmp_path):
    inv = inventory(tmp_path, slices=[{"id": 1}, {"id": 2}, {"id": 3, "disk": "64m"}])
    have = converged(inv)
    lines = volume_plan(inv, replace(have, subvolumes={k: v for k, v in have.subvolumes.items() if k != 3}))
    assert [line for line in lines if line.startswith("echo ")] == ["echo 'sliceops: slice 3 disk quota 64m'"]
