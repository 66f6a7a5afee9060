"""The path production takes: a fresh systemd host, converged over SSH from the project's own
inventory file, verified from outside with testinfra over SSH, converged again with no change."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sliceops_backup import store

from tests.fix_deploy import ROOT, remove_firewall, run_deploy

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "inventory" / "examples" / "e2e-systemd-host.yaml"
OFFSITE = "/var/backups/offsite"


@pytest.fixture(scope="module")
def inventory(systemd_host, tmp_path_factory):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["target"] = f"ssh://root@127.0.0.1:{systemd_host.port}"
    data["ssh_key"] = str(systemd_host.key_path)
    # The key of the host it built, read out of band: the deploy and verify check it strictly.
    data["ssh_known_hosts"] = str(systemd_host.known_hosts_path)
    # Backups copied off the host to the SSH host itself (a second machine is not at hand): the
    # same rsync over SSH, host key checked against the recorded one, a login by the agent's key.
    data.setdefault("backups", {})["copy_to"] = f"ssh://root@127.0.0.1:{systemd_host.port}{OFFSITE}"
    path = tmp_path_factory.mktemp("e2e") / "e2e.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    yield path
    # The host borrowed this machine's engine: its containers and network outlive it.
    subprocess.run(["sh", "-c", "docker rm -f $(docker ps -aq --filter label=sliceops.instance=e2e); "
                                "docker network rm sliceops-e2e; rm -rf /srv/sliceops/e2e"], capture_output=True)
    remove_firewall("e2e")  # the host shares this machine's network namespace: its rules are here


@pytest.fixture(scope="module")
def first_converge(inventory):
    started = time.monotonic()
    result = run_deploy(inventory, timeout=1800)
    print(f"first converge over SSH: {time.monotonic() - started:.1f}s")
    assert result.returncode == 0, result.output[-6000:]
    return result


def test_first_converge_installs_and_applies(first_converge):
    assert "applied 0001_gateway_schema.sql to wank_saas" in first_converge.output
    assert "created e2e-wa-slice-1" in first_converge.output


def test_the_host_runs_systemd_units(systemd_host, first_converge):
    for unit in ("postgresql@15-e2e", "sliceops-monitor-e2e"):
        out = systemd_host.run(f"systemctl is-active {unit}")
        state = out.stdout.decode().strip() if isinstance(out.stdout, bytes) else out.stdout.strip()
        assert state == "active", f"{unit} is {state!r}"
    assert systemd_host.run("systemctl is-enabled sliceops-monitor-e2e").returncode == 0


def test_testinfra_suite_passes_over_ssh(inventory, first_converge):
    # The monitor writes every 10 s here; give it two beats before asking for fresh telemetry.
    time.sleep(21)
    proc = subprocess.run(
        [sys.executable, "-m", "sliceops.cli", "verify", "--inventory", str(inventory)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_second_converge_changes_nothing(inventory, first_converge):
    again = run_deploy(inventory, timeout=1800)
    assert again.returncode == 0, again.output[-4000:]
    assert again.totals["changed"] == 0, again.changed_ops


def _plan(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sliceops.cli", "plan", "--inventory", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_plan_over_ssh_sees_the_converged_host_and_an_edit(inventory, first_converge, tmp_path):
    same = _plan(inventory)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.strip().splitlines() == ["plan: nothing would change"]
    data = yaml.safe_load(inventory.read_text())
    data["slices"][0]["memory"] = "320m"
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    drift = _plan(edited)
    assert drift.returncode == 3, drift.stdout + drift.stderr
    assert drift.stdout.strip().splitlines() == [
        "slice 1: container recreated: memory 256m -> 320m", "plan: 1 would change: 1 slice, 0 others",
    ]


def test_status_and_logs_over_ssh(inventory, first_converge):
    """One SSH connection carries status' psql session and its Docker call (dial-stdio)."""
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sliceops.cli", *args, "--inventory", str(inventory)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    # Healthy needs the monitor to have read each new backend's /health (every 10 s here).
    deadline = time.monotonic() + 60
    while True:
        status = run("status", "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        if doc["summary"]["healthy"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert doc["target"].startswith("ssh://") and doc["instance"] == "e2e"
    assert doc["summary"] == {"in_service": 2, "suspended": 1, "destroying": 0, "healthy": 2, "unhealthy": 0,
                              "orphans": 0}, doc["slices"]
    assert {r["id"]: r["database"]["migration"] for r in doc["slices"]} == {1: "current", 2: "current", 3: "current"}
    logs = run("logs", "1", "--tail", "50")
    assert logs.returncode == 0, logs.stderr
    assert "slice 1: listening" in logs.stdout or "GET /health" in logs.stdout


def test_report_over_ssh_charts_the_host_s_telemetry(inventory, first_converge, tmp_path):
    """`report` reads gateway.telemetry on the host over the same SSH road as status (psql by
    peer authentication there, nothing opened to the network) and writes the charts here."""
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "sliceops.cli", "report", "--out", str(out), "--since", "1h",
                           "--inventory", str(inventory)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{out}/index.html: 3 slices, 1h to now (UTC)"
    for name in ("fleet-memory", "fleet-whatsapp", "fleet-cpu", "fleet-disk", "server", "slice-1", "slice-2"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (out / "index.html").read_text()
    # Rows measured on the host: the slices in service have a peak memory share and a last state.
    cells = {int(re.sub(r"<[^>]+>", "", row[0])): row[1:] for row in re.findall(
        r"<tr[^>]*><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>.*?</td><td>.*?</td><td>(.*?)</td>", page)}
    assert set(cells) == {1, 2, 3}, page[:3000]
    for sid in (1, 2):
        status, peak, state = cells[sid]
        assert status == "active" and peak.endswith(" %") and state not in ("", "-"), cells[sid]


def _cli(inventory, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sliceops.cli", *args, "--inventory", str(inventory)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_timer_runs_a_command_that_backs_up_and_copies_off_the_host(systemd_host, inventory, first_converge):
    """The exact command of the systemd timer's unit, run by the test: verified backups of every
    slice and the gateway, sent over rsync/SSH and pruned there by the policy; then, with the
    agent's key no longer authorized there, a copy fails loudly and the local backup still counts."""
    host = systemd_host
    assert host.run("systemctl is-enabled sliceops-backup-e2e.timer").stdout.strip() == "enabled"
    shown = host.run("systemctl show -p ExecStart --value sliceops-backup-e2e.service", check=True).stdout
    command = re.search(r"argv\[\]=(.*?) ;", shown)[1]
    assert shlex.split(command)[-2:] == ["run", "--scheduled"], shown
    pub = host.run("cat /etc/sliceops/e2e/backup-ssh/id_ed25519.pub", check=True).stdout.strip()
    assert host.run("stat -c %a /etc/sliceops/e2e/backup-ssh/id_ed25519", check=True).stdout.strip() == "600"
    host.run(f"cp -p /root/.ssh/authorized_keys /root/.ssh/authorized_keys.e2e && "
             f"echo {shlex.quote(pub)} >> /root/.ssh/authorized_keys", check=True)
    # Copies already there: one a day for 30 days, and a destroyed slice's final backup (never pruned).
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    planted = [store.folder_name(now - dt.timedelta(days=d, hours=1), "scheduled") for d in range(1, 31)]
    final = store.folder_name(now - dt.timedelta(days=90), "final")
    there = f"{OFFSITE}/e2e/slice-1"
    host.run(" && ".join(f"mkdir -p {there}/{n} && echo {{}} > {there}/{n}/manifest.json" for n in planted + [final]),
             check=True)
    try:
        run = host.run(command, timeout=900)  # as root, exactly what the timer starts
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        assert re.search(r"slice 1: copied to ssh://root@127\.0\.0\.1:\d+/var/backups/offsite/e2e: 1 sent, \d+ pruned",
                         run.stdout), run.stdout
        state = json.loads(host.run("cat /var/lib/sliceops/e2e/backups.json", check=True).stdout)
        assert all(state["slices"][k]["copy"]["ok"] for k in ("1", "2", "3")) and state["gateway"]["copy"]["ok"], state
        good = state["slices"]["1"]["last_good"]
        assert good["verified"] and good["kind"] == "scheduled"
        # The copy is the backup: every file's sha256 there is the manifest's.
        name = good["path"].rsplit("/", 1)[1]
        manifest = json.loads(host.run(f"cat {there}/{name}/manifest.json", check=True).stdout)
        for f in manifest["files"]:
            digest = host.run(f"sha256sum {there}/{name}/{f['name']}", check=True).stdout.split()[0]
            assert digest == f["sha256"], f
        # Pruned there by the policy (7 daily, 4 weekly): what is left is exactly what it keeps.
        left = set(host.run(f"ls {there}", check=True).stdout.split())
        everything = [store.Backup(Path(n), store.manifest_from_name(n)) for n in planted + [final, name]]
        dropped = {b.path.name for b in store.to_prune(everything, 7, 4)}
        assert left == set(planted + [final, name]) - dropped and final in left and planted[-1] not in left, left
    finally:
        host.run("mv /root/.ssh/authorized_keys.e2e /root/.ssh/authorized_keys")
    # The agent's key is no longer authorized there: the copy fails, the local backup still counts.
    failed = _cli(inventory, "backup", "1")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert re.search(r"slice 1: backup \S+ verified", failed.stdout), failed.stdout
    assert "slice 1: copy to ssh://root@127.0.0.1:" in failed.stdout and "FAILED" in failed.stdout
    assert "(the local backup is good)" in failed.stdout
    state = json.loads(host.run("cat /var/lib/sliceops/e2e/backups.json", check=True).stdout)
    assert state["slices"]["1"]["copy"]["ok"] is False and state["slices"]["1"]["copy"]["error"]
    assert state["slices"]["1"]["last_good"]["path"] != good["path"]  # the new local backup is the last good one
    status = json.loads(_cli(inventory, "status", "--json", timeout=120).stdout)
    row = next(r for r in status["slices"] if r["id"] == 1)
    assert row["backup"]["copy_failed"] is True and "latest copy off the host failed" in row["problems"], row
