"""Run the real deploy against this machine, and clean up the instances tests create.

Tests that converge use their own `instance` (own cluster, port, containers, network,
directories), so they never disturb the default deployment `make deploy` created.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SLICEOPS = [sys.executable, "-m", "sliceops.cli"]
PYINFRA = [sys.executable, "-m", "pyinfra", "-y", str(ROOT / "inventory" / "hosts.py"), str(ROOT / "deploy.py")]
_TOTAL = re.compile(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)")


@dataclass
class DeployResult:
    returncode: int
    output: str

    @property
    def totals(self) -> dict:
        m = _TOTAL.search(self.output)
        assert m, f"no pyinfra results table in the output:\n{self.output[-3000:]}"
        as_int = lambda s: 0 if s == "-" else int(s)  # noqa: E731
        return {"ops": int(m[1]), "changed": as_int(m[2]), "errors": as_int(m[3]), "unchanged": as_int(m[4])}

    @property
    def changed_ops(self) -> list[str]:
        """Names of operations that executed commands (pyinfra's Success column)."""
        rows = []
        for line in self.output.splitlines():
            # Operation, then its Hosts, Success, Error and No Change counts ("-" for none).
            m = re.match(r"^\s{4}(\S.*?)\s{2,}(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", line)
            if m and m[3].isdigit() and int(m[3]) > 0 and m[1] != "Grand total":
                rows.append(m[1])
        return rows


def run_deploy(inventory: Path | str, plain: bool = False, env: dict | None = None, timeout: float = 900) -> DeployResult:
    full_env = dict(os.environ, SLICEOPS_INVENTORY=str(inventory), PYTHONPATH=str(ROOT), **(env or {}))
    cmd = PYINFRA if plain else SLICEOPS + ["deploy", "--inventory", str(inventory)]
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    return DeployResult(proc.returncode, proc.stdout + proc.stderr)


def teardown_instance(instance: str, pg_version: int = 15) -> None:
    """Remove everything a test instance created (never used on `main`)."""
    assert instance != "main", "tests never tear down the main instance"
    sh = lambda cmd: subprocess.run(["sh", "-c", cmd], capture_output=True)  # noqa: E731
    sh(f"/etc/init.d/sliceops-monitor-{instance} stop; systemctl stop sliceops-monitor-{instance}")
    sh(f"rm -f /etc/init.d/sliceops-monitor-{instance}; update-rc.d sliceops-monitor-{instance} remove")
    sh(f"rm -f /run/sliceops-monitor-{instance}.pid /var/log/sliceops/sliceops-monitor-{instance}.log*")
    sh(f"rm -rf /var/log/sliceops/sliceops-monitor-{instance}")
    # Backups: the schedule (cron entry or systemd timer), its log, its results and locks.
    sh(f"systemctl disable --now sliceops-backup-{instance}.timer; "
       f"rm -f /etc/systemd/system/sliceops-backup-{instance}.service /etc/systemd/system/sliceops-backup-{instance}.timer")
    sh(f"rm -f /etc/cron.d/sliceops-backup-{instance} /var/log/sliceops-backup-{instance}.log "
       f"/run/lock/sliceops-{instance}-backup-*.lock")
    sh(f"docker rm -f $(docker ps -aq --filter label=sliceops.instance={instance})")
    sh(f"docker network rm sliceops-{instance}")
    # The slice volume: unmounted (its loop device goes with it), boot links and script removed.
    # Lazy: a process still finishing in it (a walk, an exec) must not leave it mounted while
    # the tree below is removed (that would delete the image under a live mount).
    sh(f"umount -l /srv/sliceops/{instance}/slices; chattr -i /srv/sliceops/{instance}/slices")
    sh(f"update-rc.d sliceops-volume-{instance} remove; rm -f /etc/init.d/sliceops-volume-{instance}")
    remove_firewall(instance)
    sh(f"pg_dropcluster --stop {pg_version} {instance}")
    for path in (f"/etc/sliceops/{instance}", f"/srv/sliceops/{instance}", f"/usr/local/share/sliceops/{instance}",
                 f"/var/backups/sliceops/{instance}", f"/opt/sliceops/{instance}", f"/var/lib/sliceops/{instance}"):
        shutil.rmtree(path, ignore_errors=True)


def remove_firewall(instance: str, unit: bool = True) -> None:
    """Take an instance's slice network firewall out of this machine: its rules and, unless
    unit is False (what a reboot looks like to the rules), its boot unit (never on `main`)."""
    assert instance != "main", "tests never tear down the main instance"
    script = f"""
        set -f
        for pair in INPUT:SLICEOPS-IN-{instance} DOCKER-USER:SLICEOPS-FW-{instance}; do
            chain=${{pair%%:*}}; target=${{pair#*:}}
            iptables -w -S "$chain" 2>/dev/null | grep -e " -j $target\\$" | sed 's/^-A /-D /' |
                while read -r rule; do iptables -w $rule; done
            iptables -w -F "$target" 2>/dev/null; iptables -w -X "$target" 2>/dev/null
        done
    """
    if unit:
        script += f"""
        systemctl disable --now sliceops-firewall-{instance} 2>/dev/null
        rm -f /etc/systemd/system/sliceops-firewall-{instance}.service
        update-rc.d -f sliceops-firewall-{instance} remove >/dev/null 2>&1
        rm -f /etc/init.d/sliceops-firewall-{instance}
        """
    subprocess.run(["sh", "-c", script], capture_output=True)


@pytest.fixture
def make_inventory(tmp_path):
    """Write an inventory for a test instance; everything it created is removed afterwards."""
    created: list[str] = []

    def make(instance: str, slices: list[dict], **sections) -> Path:
        if instance not in created:
            created.append(instance)
        data = {"target": "@local", "instance": instance, **sections, "slices": slices}
        path = tmp_path / f"{instance}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    yield make
    if os.environ.get("SLICEOPS_KEEP_TEST_INSTANCES") != "1":
        for instance in created:
            teardown_instance(instance)
