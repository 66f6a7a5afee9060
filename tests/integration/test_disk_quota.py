"""Per-slice disk quotas on the real host: a converged instance that had plain data
directories is moved onto its btrfs volume with its data; a tenant writing past its quota
gets EDQUOT inside its container while the other slice and PostgreSQL keep writing; a
no-op deploy changes nothing; a quota below what a slice stores is refused with its size;
the boot script mounts the volume again after a (simulated) reboot; a destroyed slice's
subvolume and qgroup go with it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
import yaml

from tests.fix_deploy import run_deploy, teardown_instance

pytestmark = pytest.mark.integration

INSTANCE = "quota1"
PG_PORT = 5471
BASE = 6701
MNT = f"/srv/sliceops/{INSTANCE}/slices"
IMG = f"/srv/sliceops/{INSTANCE}/slices.img"
BOOT = f"/etc/init.d/sliceops-volume-{INSTANCE}"
MIB = 1024 * 1024
NAME = lambda sid: f"{INSTANCE}-wa-slice-{sid}"  # noqa: E731

# Writes `mib` MiB to /data/<name> as the tenant does (the image's python, uid 10001) and
# prints "ok" or the errno's name.
WRITE = """
import errno, os, sys
name, mib = sys.argv[1], int(sys.argv[2])
try:
    with open("/data/" + name, "wb") as f:
        for _ in range(mib):
            f.write(b"x" * 1048576)
            f.flush()
        os.fsync(f.fileno())
    print("ok")
except OSError as exc:
    print(errno.errorcode[exc.errno])
"""


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def write(sid: int, name: str, mib: int) -> str:
    return sh("docker", "exec", NAME(sid), "python3", "-c", WRITE, name, str(mib)).stdout.strip()


def qgroups() -> dict[str, tuple[int, str]]:
    """{subvolume path: (referenced bytes, limit)} as btrfs reports it."""
    subvols = {}
    for line in sh("btrfs", "subvolume", "list", "-o", MNT).stdout.splitlines():
        parts = line.split()
        subvols[parts[1]] = parts[-1]
    out = {}
    for line in sh("btrfs", "qgroup", "show", "-re", "--raw", "--sync", MNT).stdout.splitlines()[2:]:
        parts = line.split()
        sub = parts[0].split("/")[1]
        if sub in subvols:
            out[subvols[sub]] = (int(parts[1]), parts[3])
    return out


def wait_healthy(sid: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{BASE + 2 * (sid - 1)}/health", timeout=5) as resp:
                json.load(resp)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Fleet:
    def __init__(self, path):
        self.path = path

    def deploy(self, slices: list[dict], disk="20m"):
        self.path.write_text(yaml.safe_dump({
            "target": "@local", "instance": INSTANCE, "postgres": {"port": PG_PORT},
            "docker": {"subnet": "172.30.71.0/24"},
            "slice_defaults": {"port_base": BASE, "disk": disk}, "slices": slices,
        }, sort_keys=False))
        return run_deploy(self.path)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two slices converged the way hosts were before quotas (plain directories, a file in
    slice 1), then deployed with 20m quotas."""
    teardown_instance(INSTANCE)
    fleet = Fleet(tmp_path_factory.mktemp("inv") / f"{INSTANCE}.yaml")
    before = fleet.deploy([{"id": 1}, {"id": 2}], disk=False)
    assert before.returncode == 0, before.output[-4000:]
    assert not sh("findmnt", MNT, check=False).stdout
    sh("docker", "exec", NAME(1), "sh", "-c", "mkdir -p /data/notes && echo keep-me > /data/notes/a.txt")
    fleet.moved = fleet.deploy([{"id": 1}, {"id": 2}])
    assert fleet.moved.returncode == 0, fleet.moved.output[-4000:]
    yield fleet
    teardown_instance(INSTANCE)


def test_plain_data_moved_onto_the_volume_with_owner_and_content(fleet):
    assert "moved slice 1 data" in fleet.moved.output
    assert sh("findmnt", "-n", "-o", "FSTYPE", MNT).stdout.strip() == "btrfs"
    # Preallocated: every byte of the image is allocated on the host's disk.
    st = sh("stat", "-c", "%s %b %B", IMG).stdout.split()
    assert int(st[1]) * int(st[2]) >= int(st[0])
    assert sh("docker", "exec", NAME(1), "cat", "/data/notes/a.txt").stdout == "keep-me\n"
    assert sh("stat", "-c", "%u %a", f"{MNT}/1/notes/a.txt").stdout.split()[0] == "10001"
    assert set(qgroups()) == {"1", "2"} and all(limit == str(20 * MIB) for _, limit in qgroups().values())
    assert sh("test", "-e", f"{MNT}.plain", check=False).returncode != 0  # staging removed
    monitor = json.loads(open(f"/etc/sliceops/{INSTANCE}/monitor.json").read())
    assert [s["disk_quota_bytes"] for s in monitor["slices"]] == [20 * MIB, 20 * MIB]


def test_a_tenant_past_its_quota_gets_an_error_while_the_others_keep_writing(fleet):
    wait_healthy(1)
    assert write(1, "big", 30) == "EDQUOT"
    assert write(2, "fine", 5) == "ok"
    # PostgreSQL (on the host's disk) still writes.
    out = sh("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-p", str(PG_PORT), "-d", "postgres", "-c",
             "CREATE TEMP TABLE t AS SELECT repeat('x', 1000) FROM generate_series(1, 10000); SELECT 'wrote'")
    assert out.stdout.strip() == "wrote"
    used = qgroups()["1"][0]
    assert 15 * MIB < used <= 20 * MIB
    sh("docker", "exec", NAME(1), "rm", "-f", "/data/big")
    sh("docker", "exec", NAME(2), "rm", "-f", "/data/fine")


def test_a_second_deploy_changes_nothing(fleet):
    again = fleet.deploy([{"id": 1}, {"id": 2}])
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed_ops == [], again.changed_ops


def test_a_quota_below_what_the_slice_stores_is_refused_naming_its_size(fleet):
    assert write(2, "ten", 10) == "ok"
    refused = fleet.deploy([{"id": 1}, {"id": 2, "disk": "5m"}])
    assert refused.returncode != 0
    line = next(ln for ln in refused.output.splitlines() if "slice 2 uses" in ln)
    assert "more than the disk quota 5m" in line and "MiB (" in line
    assert qgroups()["2"][1] == str(20 * MIB)  # untouched
    assert sh("docker", "exec", NAME(2), "stat", "-c", "%s", "/data/ten").stdout.strip() == str(10 * MIB)
    sh("docker", "exec", NAME(2), "rm", "-f", "/data/ten")


def test_the_boot_script_mounts_the_volume_again_after_a_reboot(fleet):
    assert sh("sh", "-c", f"ls /etc/rcS.d/S??sliceops-volume-{INSTANCE}").returncode == 0
    sh("docker", "stop", NAME(1), NAME(2))
    sh(BOOT, "stop")  # what shutdown does: unmounted, and the loop device detached with it
    assert not sh("findmnt", MNT, check=False).stdout
    assert sh("losetup", "-j", IMG).stdout.strip() == ""
    # Unmounted, the mount point takes no files: nothing lands on the host's disk instead.
    assert sh("touch", f"{MNT}/x", check=False).returncode != 0
    assert sh(BOOT, "status", check=False).returncode == 3
    sh(BOOT, "start")
    assert sh(BOOT, "status", check=False).returncode == 0
    assert sh("findmnt", "-n", "-o", "FSTYPE", MNT).stdout.strip() == "btrfs"
    sh("docker", "start", NAME(1), NAME(2))
    wait_healthy(1)
    assert sh("docker", "exec", NAME(1), "cat", "/data/notes/a.txt").stdout == "keep-me\n"
    assert write(1, "big", 30) == "EDQUOT"  # the quota came back with the mount
    sh("docker", "exec", NAME(1), "rm", "-f", "/data/big")


def test_a_plain_directory_swapped_into_the_volume_gets_its_quota_back(fleet):
    # What a restore does (backup agent): a fresh plain directory renamed over the slice's.
    d = f"{MNT}/1"
    sh("docker", "stop", NAME(1))  # the agent stops the slice; the deploy after it starts it
    sh("sh", "-c", f"mkdir {d}.restoring && cp -a {d}/. {d}.restoring/ && mv {d} {d}.replaced "
                   f"&& mv {d}.restoring {d} && rm -rf {d}.replaced")
    assert sh("stat", "-c", "%i", d).stdout.strip() != "256"  # not a subvolume: no quota
    again = fleet.deploy([{"id": 1}, {"id": 2}])
    assert again.returncode == 0, again.output[-4000:]
    assert sh("stat", "-c", "%i", d).stdout.strip() == "256"
    assert qgroups()["1"][1] == str(20 * MIB)
    wait_healthy(1)
    assert sh("docker", "exec", NAME(1), "cat", "/data/notes/a.txt").stdout == "keep-me\n"
    assert write(1, "big", 30) == "EDQUOT"
    sh("docker", "exec", NAME(1), "rm", "-f", "/data/big")


def test_a_destroyed_slice_takes_its_subvolume_and_quota_with_it(fleet):
    gone = fleet.deploy([{"id": 1}, {"id": 2, "status": "destroying"}])
    assert gone.returncode == 0, gone.output[-4000:]
    assert "destroyed slice 2" in gone.output
    assert set(qgroups()) == {"1"}
    ids = {line.split()[0] for line in sh("btrfs", "qgroup", "show", "--raw", MNT).stdout.splitlines()[2:]}
    assert ids == {"0/5", f"0/{sh('btrfs', 'inspect-internal', 'rootid', f'{MNT}/1').stdout.strip()}"}
