"""Tenant backups on the real host: the agent the deploy ships, run by the `sliceops backup /
backups / restore` commands and by the exact command of the cron entry, against a real
PostgreSQL cluster, real containers and their data directories."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
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


def sliceops(inv: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sliceops.cli", *args, "-i", str(inv)], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})), timeout=900)


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


def test_a_restore_refuses_with_one_line_while_a_backup_holds_the_slices_lock(inv):
    import fcntl

    agent = ["python3", f"/usr/local/share/sliceops/{INSTANCE}/backup/sliceops-backup",
             "--config", f"/etc/sliceops/{INSTANCE}/backup.json", "--wait", "3"]
    before = contacts(1)
    with open(f"/run/lock/sliceops-{INSTANCE}-backup-1.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running backup of slice 1 holds it
        started = time.monotonic()
        busy = sh(*agent, "restore", "1", check=False)
        waited = time.monotonic() - started
    assert busy.returncode == 1 and 3 <= waited < 30, (busy, waited)
    assert "waiting for slice 1: a destroy, restore or backup holds" in busy.stderr
    assert busy.stderr.splitlines()[-1] == (
        f"sliceops-backup: slice 1 is busy (a destroy, restore or backup holds /run/lock/sliceops-{INSTANCE}-backup-1.lock); "
        "gave up after 3s, nothing changed")
    assert contacts(1) == before
    # Released: the same command proceeds (a backup: no deploy needed after it).
    assert sh(*agent, "run", "1", check=False).returncode == 0


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


class Watch:
    """One psql session on the gateway database, polled from a thread: when each monitor row arrived."""

    def __init__(self, period: float = 0.5):
        self.period = period
        self.seen: list[tuple[float, int]] = []  # (monotonic time, newest server_telemetry id then)
        self.stop = threading.Event()
        self.session = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(PG_PORT),
             "-d", "wank_saas"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.stop.is_set():
            self.session.stdin.write("SELECT coalesce(max(id), 0) FROM gateway.server_telemetry;\n")
            self.session.stdin.flush()
            newest = int(self.session.stdout.readline())
            self.seen.append((time.monotonic(), newest))
            self.stop.wait(self.period)

    def arrivals(self) -> list[tuple[float, int]]:
        """(when, id): each new row, when it was first seen (to within the polling period)."""
        out, last = [], None
        for at, newest in list(self.seen):
            if last is not None and newest > last:
                out.append((at, newest))
            last = newest
        return out

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.session.stdin.close()
        self.session.wait(10)


def test_the_monitor_writes_telemetry_every_cycle_while_backups_run(inv):
    """Real backups of every slice and the gateway run back to back for four monitor intervals
    (slice 2 holds 300,000 contacts: each run dumps, counts, lists and checksums them, gently
    niced); meanwhile a server row and a row per in-service slice arrive every interval (5 s
    here), none missed, none late by more than half an interval."""
    interval = SECTIONS["monitor"]["interval"]
    su("wa_slice_2", "INSERT INTO public.verification (id, identifier, value, \"expiresAt\") "
                     "SELECT 'bulk-' || i, 'contact', md5(i::text) || md5((-i)::text), now() "
                     "FROM generate_series(1, 300000) i")
    watch = Watch()
    try:
        deadline = time.monotonic() + 3 * interval
        while not watch.arrivals():
            assert time.monotonic() < deadline, "the monitor wrote no row before the backups"
            time.sleep(0.2)
        began = time.monotonic()
        runs = []
        while time.monotonic() - began < 4 * interval:
            t0 = time.monotonic()
            done = sliceops(inv, "backup", "--all", "--gateway")
            assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
            runs.append(time.monotonic() - t0)
        ended = time.monotonic()
        deadline = ended + 3 * interval
        while watch.arrivals()[-1][0] <= ended:
            assert time.monotonic() < deadline, f"no monitor row within {3 * interval} s after the backups"
            time.sleep(0.2)
    finally:
        watch.close()
        su("wa_slice_2", "DELETE FROM public.verification WHERE id LIKE 'bulk-%'")
    assert any("slice 2: backup" in line for line in done.stdout.splitlines()), done.stdout
    # From the last row before the backups to the first after them, consecutive rows.
    arrived = watch.arrivals()
    first = max(i for i, (at, _) in enumerate(arrived) if at <= began)
    last = min(i for i, (at, _) in enumerate(arrived) if at > ended)
    window = arrived[first:last + 1]
    gaps = [round(b[0] - a[0], 1) for a, b in zip(window, window[1:])]
    assert len(gaps) >= 4 and max(gaps) <= 1.5 * interval, (gaps, runs)
    # One row each time (none held back and written late in a bunch), and each of those cycles
    # wrote a row for every in-service slice too (slices 1 and 2, at the cycle's collection time).
    lo, hi = window[0][1], window[-1][1]
    counts = su("wank_saas", f"""
        WITH server AS (SELECT "timestamp" FROM gateway.server_telemetry WHERE id BETWEEN {lo} AND {hi})
        SELECT (SELECT count(*) FROM server) || ' ' || string_agg(n::text, ' ' ORDER BY slice_id)
        FROM (SELECT slice_id, count(*) AS n FROM gateway.telemetry
              WHERE "timestamp" IN (SELECT "timestamp" FROM server) GROUP BY slice_id) per_slice""")
    assert counts == " ".join([str(len(window))] * 3), (counts, gaps)


def test_a_destroy_waits_for_the_slices_lock_and_proceeds_once_it_is_released(inv):
    """Slice 2 is gone afterwards (the next test brings it back from this final backup)."""
    import fcntl

    lock = f"/run/lock/sliceops-{INSTANCE}-backup-2.lock"
    add_rows(2, ("k@c.us", "Kept"))
    data_file(2).write_text("kept\n")
    doc = yaml.safe_load(inv.read_text())
    doc["slices"] = [{"id": 1}, {"id": 2, "status": "destroying"}, {"id": 3, "status": "suspended"}]
    inv.write_text(yaml.safe_dump(doc))
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running backup or restore of slice 2 holds it
        deploy = subprocess.Popen([sys.executable, "-m", "sliceops.cli", "deploy", "-i", str(inv)], cwd=ROOT,
                                  env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 600
            while not waiting_on(lock):  # the destroy's `flock -w 600 9` on this very file
                assert deploy.poll() is None, deploy.stdout.read()[-4000:]
                assert time.monotonic() < deadline, "the destroy never reached the slice's lock"
                time.sleep(0.5)
            time.sleep(3)
            assert deploy.poll() is None
            assert su("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'wa_slice_2'") == "1"
        except BaseException:
            deploy.kill()
            raise
    output = deploy.communicate(timeout=600)[0]
    assert deploy.returncode == 0, output[-4000:]
    assert su("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'wa_slice_2'") == "0"
    finals = [b for b in json.loads(sliceops(inv, "backups", "2", "--json").stdout) if b["kind"] == "final"]
    assert finals and finals[-1]["verified"]



def test_a_destroyed_slice_comes_back_from_its_final_backup_migrated_forward(inv, tmp_path):
    """Last in this module. Slice 2 is added to the inventory again while the schema moved on
    (one slice migration more than its final backup has, in a copy of sql/ the deploys use):
    the deploy recreates it empty at the new level, `restore --from` its final backup brings
    its rows and files back, and the restore's deploy migrates that older database forward."""
    sql = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", sql)
    newest = sorted(p.name for p in (sql / "slice").glob("[0-9]*.sql"))[-1]
    step = f"{int(newest[:4]) + 1:04d}_after_the_backup.sql"
    (sql / "slice" / step).write_text("COMMENT ON TABLE public.verification IS 'migrated after the backup';\n")
    env = {"SLICEOPS_SQL_DIR": str(sql)}
    final = [b for b in json.loads(sliceops(inv, "backups", "2", "--json").stdout) if b["kind"] == "final"][-1]
    assert json.loads(Path(final["path"], "manifest.json").read_text())["migration"].startswith(newest[:4])
    doc = yaml.safe_load(inv.read_text())
    doc["slices"] = [{"id": 1}, {"id": 2}, {"id": 3, "status": "suspended"}]
    inv.write_text(yaml.safe_dump(doc))
    back = run_deploy(inv, env=env)
    assert back.returncode == 0, back.output[-4000:]
    assert contacts(2) == [] and not data_file(2).exists()

    done = sliceops(inv, "restore", "2", "--from", final["path"], env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    output = done.stdout + done.stderr
    assert f"applied {step} to wa_slice_2" in output, output[-4000:]
    assert f"applied {step} to wa_slice_1" not in output  # the live slice was at the new level already
    assert "k@c.us=Kept" in contacts(2)  # written before the destroy
    assert data_file(2).read_text() == "kept\n"
    assert su("wa_slice_2", "SELECT max(version) || ' ' || obj_description('public.verification'::regclass) "
                            "FROM sliceops.schema_migrations") == f"{step[:4]} migrated after the backup"
    assert health(2)["db"] == "ok"

def waiting_on(lock: str) -> bool:
    """A `flock` process whose descriptor 9 is this lock file (the destroy script's)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"flock") and os.readlink(proc / "fd" / "9") == lock:
                return True
        except OSError:
            continue
    return False
