"""`sliceops backup / backups / restore` refuse a bad request with one line and exit 2 before
anything runs on the target; the schedule the deploy installs runs the agent's own command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from sliceops.inventory import load
from sliceops.paths import ROOT, TEMPLATES
from sliceops.backup_config import agent_config
from sliceops.tasks.backups import scheduled_command


def inventory(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump({"target": "@local", "instance": "unitbk", **sections,
                                    "slices": [{"id": 1}, {"id": 2}, {"id": 3, "status": "suspended"},
                                               {"id": 4, "status": "destroying"}]}))
    return path


def sliceops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sliceops.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("args", "message"), [
    (["backup"], "backup: name slice ids, --all or --gateway"),
    (["backup", "9"], "no slice with id '9'"),
    (["backup", "1", "--all"], "give slice ids or --all, not both"),
    (["backup", "4"], "slice 4 is marked destroying"),
    (["restore", "1", "--as", "2"], "slice 2 must be suspended"),
    (["restore", "1", "--as", "1"], "--as names the slice itself"),
    (["restore", "1", "2"], "name exactly one slice id"),
    (["restore", "1", "--at", "2026-12-01", "--from", "/y"], "--at and --from exclude each other"),
    # Refused by the CLI before the lock, the host key or any agent (the agent refused it, on the host).
    (["restore", "1", "--at", "x"], "restore: --at: 'x' is not a time (ISO 8601"),
    (["restore", "1", "--at", "2026-13-01T03:00"], "restore: --at: '2026-13-01T03:00' is not a time"),
    (["restore", "--gateway", "--at", "yesterday"], "restore: --at: 'yesterday' is not a time"),
    (["restore", "--gateway", "--as", "3"], "restore --gateway takes no slice id and no --as"),
    (["backups", "x"], "backups: argument ID: invalid int value: 'x'"),
    (["restore", "1", "--as"], "restore: argument --as: expected one argument"),
    (["drill", "9"], "no slice with id '9'"),
    (["drill", "4"], "slice 4 is marked destroying"),
    (["drill", "1", "2"], "drill: unrecognized arguments: 2"),
])
def test_a_bad_request_is_one_line_and_exit_2(tmp_path, args, message):
    proc = sliceops(*args, "-i", str(inventory(tmp_path)))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and proc.stderr.startswith("sliceops: ")
    assert proc.stdout == ""


def test_cron_entry_runs_the_scheduled_command_at_the_inventory_time(tmp_path):
    inv = load(inventory(tmp_path, backups={"schedule": "01:30"}))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined)
    hour, minute = inv.backups.hour_minute
    text = env.get_template("backup/sliceops-backup.cron.j2").render(
        instance=inv.instance, command=scheduled_command(inv), hour=hour, minute=minute, log_path="/var/log/x.log")
    entries = [line for line in text.splitlines() if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert entries == [f"30 1 * * * root {scheduled_command(inv)} >>/var/log/x.log 2>&1"]
    assert scheduled_command(inv).endswith("--config /etc/sliceops/unitbk/backup.json run --scheduled")
    timer = env.get_template("backup/sliceops-backup.timer.j2").render(
        instance=inv.instance, command=scheduled_command(inv), schedule=inv.backups.schedule)
    assert "OnCalendar=*-*-* 01:30:00" in timer


def test_agent_config_names_every_slice_and_its_lock(tmp_path):
    inv = load(inventory(tmp_path, backups={"dir": "/bk", "keep_daily": 3}))
    cfg = agent_config(inv)
    assert cfg["dir"] == "/bk/unitbk" and cfg["keep_daily"] == 3 and cfg["keep_weekly"] == 4
    assert [(s["id"], s["status"]) for s in cfg["slices"]] == [(1, "active"), (2, "active"), (3, "suspended"),
                                                              (4, "destroying")]
    assert cfg["slices"][0]["lock"] == inv.backup_lock(1) != inv.backup_lock(2)
    assert cfg["gateway"]["lock"] == inv.backup_lock(None)


def test_default_backup_dir_is_the_slice_defaults_one(tmp_path):
    inv = load(inventory(tmp_path, slice_defaults={"backup_dir": "/b2"}))
    assert inv.backup_dir == "/b2/unitbk" == agent_config(inv)["dir"]


def test_the_destroy_takes_the_slices_backup_lock_before_its_final_backup(tmp_path):
    from sliceops.operations.lifecycle import destroy_script

    inv = load(inventory(tmp_path))
    script = destroy_script(inv, 4, "20261201T000000Z").splitlines()
    lock = agent_config(inv)["slices"][3]["lock"]
    take = script.index(f"exec 9>{lock}")
    final = next(i for i, line in enumerate(script) if " final 4 --lock-held" in line)
    drop = next(i for i, line in enumerate(script) if "DROP DATABASE" in line)
    assert take < final < drop
    assert script[take + 1].startswith("flock -w 600 9 ||")


@pytest.mark.parametrize(("url", "problem"), [
    ("ssh://bk@vault.example:70000/srv/copies", "port 70000 is not a TCP port"),
    ("ssh://bk@vault.example/srv/../etc", "ssh://user@host[:port]/path"),  # no part starts with a dot
    ("ssh://vault.example/srv/copies", "ssh://user@host[:port]/path"),  # the user is required
    ("ssh://bk@vault.example/srv/$(touch x)", "ssh://user@host[:port]/path"),
    ("rsync://bk@vault.example/srv", "ssh://user@host[:port]/path"),
])
def test_a_bad_copy_to_is_one_line_naming_the_key(tmp_path, url, problem):
    proc = sliceops("check", "-i", str(inventory(tmp_path, backups={"copy_to": url})))
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.count("\n") == 1 and f"backups.copy_to: {url!r}" in proc.stderr, proc.stderr
    assert problem in proc.stderr


def test_copy_to_reaches_the_agent_with_the_deploys_key_and_known_hosts(tmp_path):
    inv = load(inventory(tmp_path, backups={"copy_to": "ssh://bk@vault.example:2222/srv/copies/host1"}))
    assert agent_config(inv)["copy"] == {
        "user": "bk", "host": "vault.example", "port": 2222, "path": "/srv/copies/host1/unitbk",
        "identity": "/etc/sliceops/unitbk/backup-ssh/id_ed25519",
        "known_hosts": "/etc/sliceops/unitbk/backup-ssh/known_hosts"}
    assert agent_config(load(inventory(tmp_path)))["copy"] is None


def test_the_deploy_refuses_a_copy_host_whose_key_is_not_recorded(tmp_path):
    from sliceops.hostkeys import HostKeyError, check_copy_host, recorded_lines

    known = tmp_path / "known_hosts"
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known.write_text(f"[other.example]:2222 ssh-ed25519 {key}\n")
    inv = load(inventory(tmp_path, ssh_known_hosts=str(known),
                         backups={"copy_to": "ssh://bk@vault.example:2222/srv/copies"}))
    with pytest.raises(HostKeyError, match=r"inv.yaml:\d+: backups.copy_to: no host key for \[vault.example\]:2222 in "):
        check_copy_host(inv)
    known.write_text(known.read_text() + f"[vault.example]:2222 ssh-ed25519 {key}\n")
    check_copy_host(inv)
    assert recorded_lines(str(known), "vault.example", 2222) == [f"[vault.example]:2222 ssh-ed25519 {key}"]
