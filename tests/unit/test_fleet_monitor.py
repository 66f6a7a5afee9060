"""Each host's monitor (issue 14): its configuration names the host it runs on and lists only
the slices running there; its server row carries that name."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sliceops.inventory import DEFAULT_INVENTORY, load
from sliceops.tasks import monitor
from sliceops_monitor import config as monitor_config
from sliceops_monitor import database
from sliceops_monitor.samples import CycleBatch, ServerSample

FLEET = Path(__file__).parent / "data" / "good" / "fleet.yaml"


def test_each_host_s_monitor_watches_its_own_slices_and_labels_its_rows():
    inv = load(FLEET)
    assert {h.name: [s["id"] for s in monitor.config(inv, h.name)["slices"]] for h in inv.hosts} == {
        "db1": [4], "app1": [1, 3], "app2": [2],
    }
    assert monitor.config(inv, "app2")["host"] == "app2"


def test_the_database_host_s_monitor_serves_the_dump_of_every_slice_elsewhere():
    """Its agent dumps every slice's database: a failed dump of slice 1 (on app1) shows in its
    backup metric there, as its data part does on app1's."""
    inv = load(FLEET)  # 1, 3 on app1; 2 on app2; 4 on db1
    doc = monitor.config(inv.for_host("db1"), "db1", inv)  # as deploy.py calls it: this host's view, the fleet
    assert doc["backup_dumps"] == [{"id": i, "container": inv.container_name(i)} for i in (1, 2, 3)]
    assert [s["id"] for s in doc["slices"]] == [4]
    assert doc == monitor.config(inv, "db1")
    assert [d.id for d in monitor_config.parse(doc).backup_dumps] == [1, 2, 3]
    assert all("backup_dumps" not in monitor.config(inv, h) for h in ("app1", "app2"))


def _backup_series(doc: dict) -> list[int]:
    """The slices whose backup time the monitor configured by `doc` serves, as it reads them."""
    parsed = monitor_config.parse(doc)
    return sorted([s.id for s in parsed.slices if s.backup] + [d.id for d in parsed.backup_dumps + parsed.backup_data])


def test_a_pending_or_failed_moves_backup_metric_is_served_by_its_old_host_not_the_new_one():
    """Slice 1 moves from app2 (its gateway row) to app1 (the file), the move pending or failed:
    app2's agent keeps its data part, so app2's monitor serves its backup time and app1's does
    not (it would serve 0 at once: SliceBackupMissing for a slice whose backups are fine). The
    database host still serves every slice's dump."""
    inv = load(FLEET)  # 1, 3 on app1; 2 on app2; 4 on db1
    rows = {1: {"host": "app2"}, 2: {"host": "app2"}, 3: {"host": "app1"}, 4: {"host": "db1"}}
    docs = {h: monitor.config(inv.for_host(h), h, inv, rows) for h in ("db1", "app1", "app2")}  # as deploy.py calls it
    assert docs["app2"]["backup_data"] == [{"id": 1, "container": inv.container_name(1)}]
    assert [s["id"] for s in docs["app2"]["slices"]] == [2]  # its container is not watched there
    assert [(s["id"], s.get("backup", True)) for s in docs["app1"]["slices"]] == [(1, False), (3, True)]
    assert "backup_data" not in docs["app1"] and "backup_data" not in docs["db1"]
    assert {h: _backup_series(doc) for h, doc in docs.items()} == {"db1": [1, 2, 3, 4], "app1": [3], "app2": [1, 2]}
    assert docs["db1"] == monitor.config(inv, "db1")  # the database host's is as without the move


def test_moves_from_and_to_the_database_host_keep_its_dump_series():
    """Slice 1 moving from db1 to app1: db1 keeps both parts (its dump series serves them), app1
    serves none for it. Slice 4 moving from app1 to db1: db1 still serves its dump, app1 its data part."""
    inv = load(FLEET)
    rows = {1: {"host": "db1"}, 4: {"host": "app1"}}
    docs = {h: monitor.config(inv.for_host(h), h, inv, rows) for h in ("db1", "app1", "app2")}
    assert {h: _backup_series(doc) for h, doc in docs.items()} == {"db1": [1, 2, 3, 4], "app1": [3, 4], "app2": [2]}
    assert docs["app1"]["backup_data"] == [{"id": 4, "container": inv.container_name(4)}]
    assert docs["db1"] == monitor.config(inv, "db1")


def test_without_a_move_each_monitors_configuration_is_unchanged_by_the_rows():
    """Settled rows, no rows (a fresh fleet), and rows without a host: the same configuration
    as before (no key added, so no reload)."""
    inv = load(FLEET)
    settled = {1: {"host": "app1"}, 2: {"host": "app2"}, 3: {"host": "app1"}, 4: {"host": "db1"}}
    for h in ("db1", "app1", "app2"):
        before = monitor.config(inv.for_host(h), h, inv)
        for rows in (settled, {}, {1: {"host": None}}):
            assert monitor.config(inv.for_host(h), h, inv, rows) == before
        assert "backup_data" not in before and all("backup" not in s for s in before["slices"])
    assert {h: _backup_series(monitor.config(inv, h, inv, settled)) for h in ("db1", "app1", "app2")} == \
        {"db1": [1, 2, 3, 4], "app1": [1, 3], "app2": [2]}


def test_a_single_host_monitor_watches_every_slice_as_before_and_the_file_it_renders_loads():
    inv = load(DEFAULT_INVENTORY)
    doc = monitor.config(inv)
    assert doc["host"] == "local" and "backup_dumps" not in doc
    assert [s["id"] for s in doc["slices"]] == [1, 2, 3]
    assert monitor_config.parse(doc).host == "local"


class _Cursor:
    def __init__(self):
        self.executed = []

    def execute(self, query, params=None):
        self.executed.append((query, params))

    def fetchone(self):
        return (0, 3)

    def fetchall(self):
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Conn:
    def __init__(self):
        self.cur = _Cursor()

    def transaction(self):
        return self.cur

    def cursor(self):
        return self.cur


def test_the_server_row_is_written_with_the_host_label():
    db = database.Database(monitor_config.DatabaseConfig())
    conn = _Conn()
    db._connection = lambda: conn
    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    batch = CycleBatch(1, at, [], ServerSample(1, 2, 0, 0, 5.0, 10, 20, host="app1"))
    db._write_once(batch)
    (query, params), = conn.cur.executed
    columns = query.split("(", 1)[1].split(")", 1)[0].replace('"', "").split(",")
    named = dict(zip([c.strip() for c in columns], params))
    assert named["host"] == "app1" and named["timestamp"] == at and named["disk_total_bytes"] == 20


def test_a_target_hostname_with_an_underscore_is_a_label_the_monitor_accepts(tmp_path):
    path = tmp_path / "slices.yaml"
    path.write_text('target: "ssh://root@Build_Host.example.net"\nslices:\n  - id: 1\n')
    doc = monitor.config(load(path))
    assert doc["host"] == "build_host.example.net"
    assert monitor_config.parse(doc).host == "build_host.example.net"
