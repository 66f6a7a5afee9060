"""Tenant backups on the real host: the agent the deploy ships, run by the `sliceops backup /
backups / restore` commands and by the exact command of the cron entry, against a real
PostgreSQL cluster, real containers and their data directories."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fix_deploy import ROOT, run_deploy, teardown_instance

pytestmark = pytest.mark.integration

INSTANCE = "itbk"
PG_PORT = 5446
BASE = 6501
METRICS_PORT = 9646
SECTIONS = dict(postgres={"port": PG_PORT}, docker={"subnet": "172.30.46.0/24"}, slice_defaults={"port_base": BASE},
                monitor={"interval": 5, "metrics_port": METRICS_PORT})
BACKUPS = Path(f"/var/backups/sliceops/{INSTANCE}")
STATE = Path(f"/var/lib/sliceops/{INSTANCE}/backups.json")


def sh(*cmd: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def su(db: str, sql: str) -> str:
    return sh("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(PG_PORT),
              "-d", db, "-c", sql).stdout.strip()


def sliceops(inv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sliceops.cli", *args, "-i", str(inv)], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=900)


def contacts(sid: int) -> list[str]:
    """Rows of a slice table with no foreign key (seed 004's verification), as id=value."""
    return su(f"wa_slice_{sid}", "SELECT id || '=' || value FROM public.verification ORDER BY id").splitlines()


def add_rows(sid: int, *rows: tuple[str, str]) -> None:
    values = ", ".join(f"('{i}', 'contact', '{v}', now())" for i, v in rows)
    su(f"wa_slice_{sid}", f'INSERT INTO public.verification (id, identifier, value, "expiresAt") VALUES {values}')


def data_file(sid: int) -> Path:
    return Path(f"/srv/sliceops/{INSTANCE}/slices/{sid}/note")


def health(sid: int) -> dict:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{BASE + 2 * (sid - 1)}/health", timeout=5) as resp:
                return json.load(resp)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture(scope="module")
def inv(tmp_path_factory):
    """Slices 1 and 2 in service, 3 suspended (the --as target), converged once."""
    path = tmp_path_factory.mktemp("inv") / f"{INSTANCE}.yaml"
    path.write_text(yaml.safe_dump({"target": "@local", "instance": INSTANCE, **SECTIONS,
                                    "slices": [{"id": 1}, {"id": 2}, {"id": 3, "status": "suspended"}]}))
    first = run_deploy(path)
    assert first.returncode == 0, first.output[-4000:]
    yield path
    if os.environ.get("SLICEOPS_KEEP_TEST_INSTANCES") != "1":
        teardown_instance(INSTANCE)


def test_restore_brings_back_the_rows_and_files_a_backup_holds(inv):
    add_rows(1, ("1@c.us", "Ada"), ("2@c.us", "Bob"))
    data_file(1).write_text("before\n")
    taken = sliceops(inv, "backup", "1")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert re.search(r"slice 1: backup \S+ verified", taken.stdout)
    su("wa_slice_1", "UPDATE public.verification SET value = 'Mallory' WHERE id = '1@c.us'")
    su("wa_slice_1", "DELETE FROM public.verification WHERE id = '2@c.us'")
    data_file(1).write_text("after\n")

    done = sliceops(inv, "restore", "1")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert contacts(1) == ["1@c.us=Ada", "2@c.us=Bob"]
    assert data_file(1).read_text() == "before\n"
    # The tenant's own credentials work again (the container's /health opens the database).
    assert health(1)["db"] == "ok"
    # The state before the restore was kept too: nothing is lost by a restore.
    listed = json.loads(sliceops(inv, "backups", "1", "--json").stdout)
    pre = [b for b in listed if b["kind"] == "pre-restore"]
    assert pre and pre[-1]["verified"]
    manifest = json.loads(Path(pre[-1]["path"], "manifest.json").read_text())
    assert manifest["tables"]["public.verification"] == 1
    # Stamped again by the deploy that followed: the next deploy has nothing to do.
    again = run_deploy(inv)
    assert again.returncode == 0 and again.totals["changed"] == 0, again.changed_ops


def test_restore_as_another_slice_leaves_the_live_one_untouched(inv):
    add_rows(1, ("3@c.us", "Cy"))
    live = contacts(1)
    done = sliceops(inv, "restore", "1", "--as", "3")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert contacts(3) == ["1@c.us=Ada", "2@c.us=Bob"]  # the latest verified backup of slice 1
    assert contacts(1) == live
    # Slice 3's own tenant role reads it; slice 1's cannot even connect.
    grants = su("wa_slice_3", "SELECT has_table_privilege('wa_slice_3', 'public.verification', 'SELECT'), "
                              "has_database_privilege('wa_slice_1', 'wa_slice_3', 'CONNECT')")
    assert grants == "t|f"
    assert sh("docker", "inspect", "-f", "{{.State.Running}}", f"{INSTANCE}-wa-slice-3", check=False).stdout.strip() != "true"


def test_a_corrupted_backup_is_refused_and_nothing_changes(inv):
    listed = json.loads(sliceops(inv, "backups", "2", "--json").stdout)
    good = [b for b in listed if b["verified"]]
    if not good:
        assert sliceops(inv, "backup", "2").returncode == 0
        good = [b for b in json.loads(sliceops(inv, "backups", "2", "--json").stdout) if b["verified"]]
    folder = Path(good[-1]["path"])
    dump = folder / "wa_slice_2.dump"
    raw = bytearray(dump.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    dump.write_bytes(bytes(raw))
    add_rows(2, ("9@c.us", "Live"))
    refused = sliceops(inv, "restore", "2", "--from", str(folder))
    assert refused.returncode != 0
    assert "checksum does not match the manifest" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert contacts(2) == ["9@c.us=Live"]
    assert health(2)["db"] == "ok"


def test_the_cron_entry_runs_a_command_that_takes_verified_backups(inv):
    entry = Path(f"/etc/cron.d/sliceops-backup-{INSTANCE}")
    if not entry.exists():
        pytest.skip("systemd host: the timer runs the same command (checked by the e2e test)")
    line = next(x for x in entry.read_text().splitlines() if re.match(r"^\d+ \d+ \* \* \* root ", x))
    command = line.split(" root ", 1)[1].split(" >>", 1)[0]
    assert shlex.split(command)[-2:] == ["run", "--scheduled"]
    before = {p for p in BACKUPS.glob("*/*")}
    run = sh("sh", "-c", command, check=False)  # exactly what cron runs, as root
    assert run.returncode == 0, run.stdout + run.stderr
    new = sorted(p for p in BACKUPS.glob("*/*") if p not in before)
    owners = {p.parent.name for p in new}
    assert owners == {"slice-1", "slice-2", "slice-3", "gateway"}, new  # suspended slices too
    for folder in new:
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["verified"] and manifest["kind"] == "scheduled", manifest
        for f in manifest["files"]:
            mode = (folder / f["name"]).stat().st_mode
            assert stat.S_IMODE(mode) == 0o600, (f, oct(mode))
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(BACKUPS.stat().st_mode) == 0o700
    # The results are readable without the backups: the state file (the monitor's group).
    state = json.loads(STATE.read_text())
    assert state["last_run"]["ok"] and state["last_run"]["kind"] == "scheduled"
    assert state["slices"]["2"]["last_good"]["verified"]
    # The first scheduled run is due a drill: a restore into a scratch database, counts compared.
    assert state["last_drill"]["ok"], state["last_drill"]


def latest_good(sid: int, inv: Path) -> Path:
    listed = json.loads(sliceops(inv, "backups", str(sid), "--json").stdout)
    return Path([b for b in listed if b["verified"] and b["kind"] != "pre-restore"][-1]["path"])


def test_drill_on_demand_compares_row_counts_and_fails_on_a_mismatch(inv):
    passed = sliceops(inv, "drill", "2")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    folder = latest_good(2, inv)
    assert f"drill: slice 2: backup {folder} (taken " in passed.stdout
    rows = {line.split()[0]: line.split()[1:] for line in passed.stdout.splitlines() if line.startswith("  public.")}
    assert rows["public.verification"] == ["1", "1", "ok"], passed.stdout  # the row written before the backup
    assert "drill: slice 2: PASS: row counts of" in passed.stdout
    # The manifest says one row more than the dump holds: the drill must notice.
    manifest = folder / "manifest.json"
    original = manifest.read_text()
    doc = json.loads(original)
    doc["tables"]["public.verification"] += 1
    manifest.write_text(json.dumps(doc))
    try:
        failed = sliceops(inv, "drill", "2")
    finally:
        manifest.write_text(original)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert re.search(r"public\.verification\s+1\s+2\s+MISMATCH", failed.stdout), failed.stdout
    assert "drill: slice 2: FAIL: public.verification: 1 rows restored, manifest 2" in failed.stdout
    assert json.loads(STATE.read_text())["last_drill"]["ok"] is False


def test_the_monitor_serves_each_slices_last_good_backup_time(inv):
    state = json.loads(STATE.read_text())
    want = {sid: state["slices"][str(sid)]["last_good"]["at"] for sid in (1, 2, 3)}
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            if "sliceops_slice_backup_last_success_timestamp_seconds" in text:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the monitor served no backup metric within 60 s"
        time.sleep(1)
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    got = {int(s.labels["slice"]): s.value for s in samples
           if s.name == "sliceops_slice_backup_last_success_timestamp_seconds"}
    # Read by the monitor's own user (the file is 0640 root:sliceops-monitor), suspended slice 3 too.
    assert got == {sid: datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() for sid, at in want.items()}
    assert re.search(r"^sliceops_gateway_backup_last_success_timestamp_seconds [1-9]", text, re.M)


def test_the_gateway_database_restores_and_gets_its_grants_back(inv):
    assert sliceops(inv, "backup", "--gateway").returncode == 0
    before = su("wank_saas", "SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM gateway.slices")
    su("wank_saas", "DELETE FROM gateway.telemetry; UPDATE gateway.slices SET wa_phone = 'tampered'")
    done = sliceops(inv, "restore", "--gateway")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert su("wank_saas", "SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM gateway.slices") == before
    assert su("wank_saas", "SELECT count(*) FROM gateway.slices WHERE wa_phone = 'tampered'") == "0"
    # The monitor's grants are the deploy's, re-applied after the restore.
    assert su("wank_saas", "SELECT has_table_privilege('sliceops_monitor', 'gateway.telemetry', 'INSERT')") == "t"

