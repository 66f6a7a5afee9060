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
from sliceops.tasks.backups import agent_config, scheduled_command


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
    (["restore", "1", "--at", "x", "--from", "/y"], "--at and --from exclude each other"),
    (["restore", "--gateway", "--as", "3"], "restore --gateway takes no slice id and no --as"),
    (["backups", "x"], "backups: argument ID: invalid int value: 'x'"),
    (["restore", "1", "--as"], "restore: argument --as: expected one argument"),
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
