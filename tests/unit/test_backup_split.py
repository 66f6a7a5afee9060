"""Backups in a fleet (issue 14): the database host's agent dumps every slice's database and
the gateway, each slice host's agent archives the data directories of the slices that run
there. The configuration each host gets, and the agent's data-only part run for real on this
machine's tar (no PostgreSQL: a pure slice host has none)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from sliceops.inventory import load
from sliceops.backup_config import agent_config
from sliceops_backup import __main__ as agent_cli
from sliceops_backup import agent, store

DATA = Path(__file__).parent / "data"


def _parts(cfg: dict) -> dict:
    return {s["id"]: (s["database"], s["data_dir"], s["container"]) for s in cfg["slices"]}


def test_each_host_keeps_its_part_of_every_slices_backup():
    inv = load(DATA / "good" / "fleet.yaml")  # slices 1 and 3 on app1, 2 on app2, 4 on db1 (the database host)
    db = agent_config(inv, "db1")
    assert db == agent_config(inv)  # the default is the database host
    assert db["cluster"] is not None and db["gateway"]["database"] == inv.gateway.database
    assert _parts(db) == {
        1: ("wa_slice_1", None, None), 2: ("wa_slice_2", None, None), 3: ("wa_slice_3", None, None),
        4: ("wa_slice_4", inv.slice_data_dir(4), inv.container_name(4)),
    }
    app1 = agent_config(inv, "app1")
    assert app1["cluster"] is None and app1["gateway"] is None
    assert _parts(app1) == {1: (None, inv.slice_data_dir(1), inv.container_name(1)),
                            3: (None, inv.slice_data_dir(3), inv.container_name(3))}
    assert _parts(agent_config(inv, "app2")) == {2: (None, inv.slice_data_dir(2), inv.container_name(2))}
    # The same lock names on every host: each host's destroy takes its own agent's lock.
    assert [s["lock"] for s in app1["slices"]] == [inv.backup_lock(1), inv.backup_lock(3)]
    assert {k: v for k, v in app1.items() if k not in ("cluster", "gateway", "slices")} == \
        {k: v for k, v in db.items() if k not in ("cluster", "gateway", "slices")}


def test_a_target_file_keeps_both_parts_on_its_one_host(tmp_path):
    path = tmp_path / "inv.yaml"
    path.write_text("target: '@local'\ninstance: unitsp\nslices:\n  - {id: 1}\n  - {id: 2, status: suspended}\n")
    inv = load(path)
    cfg = agent_config(inv, inv.database_host.name)
    assert cfg["cluster"] is not None and cfg["gateway"] is not None
    assert _parts(cfg) == {i: (f"wa_slice_{i}", inv.slice_data_dir(i), inv.container_name(i)) for i in (1, 2)}


def test_each_hosts_copies_go_to_a_folder_of_its_own(tmp_path):
    """The far side prunes by what is in the folder: a slice host's data parts must never count
    against the database host's dumps of the same slice (one a day would be kept)."""
    text = (DATA / "good" / "fleet.yaml").read_text() + "backups: {copy_to: 'ssh://bk@vault.example/srv/c'}\n"
    (tmp_path / "fleet.yaml").write_text(text)
    inv = load(tmp_path / "fleet.yaml")
    paths = {h: agent_config(inv, h)["copy"]["path"] for h in ("db1", "app1", "app2")}
    assert paths == {"db1": "/srv/c/main", "app1": "/srv/c/main-app1", "app2": "/srv/c/main-app2"}


def _slice_host_config(tmp_path: Path) -> agent.Config:
    """A pure slice host's agent configuration, as agent_config writes it (no cluster, no gateway)."""
    inv = load(DATA / "good" / "fleet.yaml")
    data = agent_config(inv, "app1")
    data.update(dir=str(tmp_path / "bk"), state_file=str(tmp_path / "state.json"), state_group="root")
    for s in data["slices"]:
        s.update(data_dir=str(tmp_path / f"data-{s['id']}"), lock=str(tmp_path / f"{s['id']}.lock"), container=None)
        Path(s["data_dir"]).mkdir()
        (Path(s["data_dir"]) / "media.bin").write_bytes(os.urandom(2048))
    return agent.Config(data)


def test_a_slice_hosts_run_archives_its_data_directories_verified_without_a_database(tmp_path):
    cfg = _slice_host_config(tmp_path)
    lines: list[str] = []
    assert agent.run(cfg, cfg.backed_up(), "manual", out=lines.append)
    assert [t.slice_id for t in cfg.backed_up()] == [1, 3]
    for sid in (1, 3):
        (b,) = store.listing(cfg.root, sid)
        assert b.verified and b.manifest["database"] is None and b.manifest["tables"] == {}
        assert [f["role"] for f in b.manifest["files"]] == ["data"]
        assert b.manifest["data_entries"] == 2  # "./" and media.bin
        assert store.checksum_problems(b) == []
    assert any("slice 1: backup" in line and "verified (data directory only: 2 entries" in line for line in lines)
    state = json.loads(cfg.state_file.read_text())
    assert state["slices"]["3"]["last_good"]["verified"] is True and "gateway" not in state
    assert state["gateway_here"] is False  # its monitor leaves the gateway's metric out


def test_a_slice_hosts_final_backup_without_its_data_directory_is_not_verified(tmp_path):
    cfg = _slice_host_config(tmp_path)
    target = cfg.slice(1)
    os.rename(target.data_dir, target.data_dir + ".gone")
    b = agent.backup(cfg, target, "final")
    assert not b.verified and b.manifest["error"] == "no data directory to back up"


def test_a_slice_hosts_restore_puts_the_data_back_after_saving_the_current_state(tmp_path):
    cfg = _slice_host_config(tmp_path)
    target = cfg.slice(3)
    before = (Path(target.data_dir) / "media.bin").read_bytes()
    assert agent.run(cfg, [target], "manual", out=lambda line: None)
    (Path(target.data_dir) / "media.bin").write_bytes(b"changed")
    (Path(target.data_dir) / "new.txt").write_text("written later\n")
    b = agent.restore(cfg, target, target, out=lambda line: None)
    assert b.manifest["kind"] == "manual"
    assert sorted(p.name for p in Path(target.data_dir).iterdir()) == ["media.bin"]
    assert (Path(target.data_dir) / "media.bin").read_bytes() == before
    kinds = sorted(x.kind for x in store.listing(cfg.root, 3))
    assert kinds == ["manual", "pre-restore"]  # what was there is kept too


@pytest.mark.parametrize(("command", "args", "message"), [
    (agent_cli.cmd_run, dict(ids=[], all=False, gateway=True, scheduled=False, wait=1),
     "the gateway database is backed up on the database host"),
    (agent_cli.cmd_drill, dict(id=None), "drills restore database dumps: run them on the database host"),
    (agent_cli.cmd_restore, dict(id=None, gateway=True, as_id=None, at=None, from_path=None, wait=1),
     "the gateway database is restored on the database host"),
])
def test_a_slice_host_refuses_what_only_the_database_host_keeps(tmp_path, command, args, message):
    with pytest.raises(agent_cli.BadRequest, match=message):
        command(_slice_host_config(tmp_path), argparse.Namespace(**args))


def test_a_scheduled_run_on_a_slice_host_backs_up_its_slices_and_no_gateway(tmp_path, monkeypatch):
    cfg = _slice_host_config(tmp_path)
    seen = []
    monkeypatch.setattr(agent, "run", lambda cfg, targets, kind, **kw: seen.append([t.key for t in targets]) or True)
    args = argparse.Namespace(ids=[], all=False, gateway=False, scheduled=True, wait=1)
    assert agent_cli.cmd_run(cfg, args) == 0
    assert seen == [["1", "3"]]


@pytest.mark.parametrize("how", [dict(all=False, scheduled=True), dict(all=True, scheduled=False)])
def test_a_slice_host_with_nothing_in_service_runs_its_schedule_and_all_without_failing(tmp_path, monkeypatch,
                                                                                       capsys, how):
    cfg = _slice_host_config(tmp_path)
    # Their final backups are the destroy's.
    cfg.slices = {k: dataclasses.replace(t, status="destroying") for k, t in cfg.slices.items()}
    monkeypatch.setattr(agent, "run", lambda *a, **kw: pytest.fail("nothing should run"))
    args = argparse.Namespace(ids=[], gateway=False, wait=1, **how)
    assert agent_cli.cmd_run(cfg, args) == 0
    assert "nothing to back up on this host" in capsys.readouterr().out
    with pytest.raises(agent_cli.BadRequest, match="name slice ids"):  # asking for nothing still is an error
        agent_cli.cmd_run(cfg, argparse.Namespace(ids=[], all=False, gateway=False, scheduled=False, wait=1))


def _calls(monkeypatch) -> list[tuple[str, list[str]]]:
    """(host address, agent arguments) of each agent the CLI runs, in order; none runs."""
    from sliceops import backups

    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(backups, "gateway_hosts", lambda inv: {})  # no move pending

    def call(argv):
        remote = argv[-1].split("backup.json ", 1)[1]
        calls.append((argv[-2].split("@")[1], remote.split()))
        return 0

    monkeypatch.setattr(backups.subprocess, "call", call)
    return calls


@pytest.mark.parametrize(("command", "argv", "expected"), [
    ("backup", ["3"], [("10.0.0.10", ["run", "3"]), ("10.0.0.11", ["run", "3"])]),
    ("backup", ["4"], [("10.0.0.10", ["run", "4"])]),  # on the database host: both parts there
    ("backup", ["--all"], [("10.0.0.10", ["run", "--all"]), ("10.0.0.11", ["run", "--all"]),
                           ("10.0.0.12", ["run", "--all"])]),
    ("backup", ["--gateway"], [("10.0.0.10", ["run", "--gateway"])]),
    ("backup", ["1", "2"], [("10.0.0.10", ["run", "1", "2"]), ("10.0.0.11", ["run", "1"]),
                            ("10.0.0.12", ["run", "2"])]),
    ("backups", ["2"], [("10.0.0.10", ["list", "2"]), ("10.0.0.12", ["list", "2"])]),
    ("backups", ["9"], [("10.0.0.10", ["list", "9"]), ("10.0.0.11", ["list", "9"]), ("10.0.0.12", ["list", "9"])]),
    ("backups", ["--gateway"], [("10.0.0.10", ["list", "--gateway"])]),
    ("drill", ["1"], [("10.0.0.10", ["drill", "1"])]),
])
def test_a_command_runs_the_agent_on_each_host_that_keeps_a_part(monkeypatch, command, argv, expected):
    from sliceops import backups

    calls = _calls(monkeypatch)
    inv = load(DATA / "good" / "fleet.yaml")
    assert backups.run(command, inv, backups.parse(command, argv)) == 0
    assert calls == expected


def _row(at: str, path: str, kind: str = "scheduled", verified: bool = True) -> dict:
    return {"slice": 2, "at": at, "path": path, "kind": kind, "verified": verified, "size": 1, "migration": None}


# Slice 2's backups as each host's agent lists them (`list 2 --json`): db1 keeps the dumps,
# app2 the data archives. The night of the 2nd the data part failed; on the 3rd the dump did.
LISTED = {
    "10.0.0.10": [_row("2026-12-01T03:00:04Z", "/b/slice-2/20261201T030004Z"),
                  _row("2026-12-02T03:00:05Z", "/b/slice-2/20261202T030005Z"),
                  _row("2026-12-03T03:00:03Z", "/b/slice-2/20261203T030003Z", verified=False),
                  _row("2026-12-03T09:10:00Z", "/b/slice-2/20261203T091000Z-pre-restore", kind="pre-restore")],
    "10.0.0.12": [_row("2026-12-01T03:00:01Z", "/b/slice-2/20261201T030001Z"),
                  _row("2026-12-02T03:00:02Z", "/b/slice-2/20261202T030002Z", verified=False),
                  _row("2026-12-03T03:00:02Z", "/b/slice-2/20261203T030002Z"),
                  _row("2026-12-03T09:10:01Z", "/b/slice-2/20261203T091001Z-pre-restore", kind="pre-restore")],
}


def _listings(monkeypatch, listed=LISTED) -> list[str]:
    """Each host's agent answers `list ID --json` with `listed[address]`; the hosts asked, in order."""
    from sliceops import backups

    asked = []

    def run(argv, **kwargs):
        address = argv[-2].split("@")[1]
        assert argv[-1].split("backup.json ", 1)[1].split()[0] == "list" and argv[-1].endswith(" --json")
        asked.append(address)
        return subprocess.CompletedProcess(argv, 0, json.dumps(listed[address]), None)

    monkeypatch.setattr(backups.subprocess, "run", run)
    return asked


@pytest.mark.parametrize(("at", "data", "dump"), [
    # The newest run whose two parts verified: the 1st (the 2nd's data and the 3rd's dump failed),
    # never the 3rd's data with the 2nd's dump, nor a pre-restore.
    (None, "/b/slice-2/20261201T030001Z", "/b/slice-2/20261201T030004Z"),
    ("2026-12-01T03:00:03", None, None),  # the 1st's dump started after that: no whole run
    ("2026-12-01T04:00", "/b/slice-2/20261201T030001Z", "/b/slice-2/20261201T030004Z"),
])
def test_a_fleet_restore_puts_back_both_parts_of_one_run(monkeypatch, capsys, at, data, dump):
    from sliceops import backups
    from sliceops.errors import SliceopsError

    calls = _calls(monkeypatch)
    asked = _listings(monkeypatch)
    inv = load(DATA / "good" / "fleet.yaml")
    deployed = []
    request = backups.parse("restore", ["2"] + (["--at", at] if at else []))
    if data is None:
        with pytest.raises(SliceopsError) as refused:
            backups.cmd_restore(inv, request, deploy=lambda: deployed.append(1) or 0)
        assert str(refused.value) == (
            f"{inv.path}: restore slice 2: no verified backup of its database on db1 and of its data directory on "
            f"app2 from one run at or before {at} (sliceops backups 2 lists both)")
        assert calls == [] and deployed == []  # no agent restored anything
        return
    assert backups.cmd_restore(inv, request, deploy=lambda: deployed.append(1) or 0) == 0
    assert asked == ["10.0.0.10", "10.0.0.12"] and deployed == [1]
    # The data part first, on app2 (its agent stops the container there), then the dump, each by folder.
    assert calls == [("10.0.0.12", ["restore", "2", "--from", data]), ("10.0.0.10", ["restore", "2", "--from", dump])]
    assert "sliceops: slice 2: restoring the backup taken 2026-12-01T03:00:04Z (db1: its database) and " \
           "2026-12-01T03:00:01Z (app2: its data directory)" in capsys.readouterr().err


def test_a_fleet_restore_as_another_slice_restores_the_pair_into_it(monkeypatch, tmp_path):
    from sliceops import backups

    text = (DATA / "good" / "fleet.yaml").read_text().replace("{id: 3, host: app1}", "{id: 3, host: app2, status: suspended}")
    (tmp_path / "fleet.yaml").write_text(text)
    calls = _calls(monkeypatch)
    _listings(monkeypatch)
    assert backups.cmd_restore(load(tmp_path / "fleet.yaml"), backups.parse("restore", ["2", "--as", "3"]),
                               deploy=lambda: 0) == 0
    assert calls == [("10.0.0.12", ["restore", "2", "--as", "3", "--from", "/b/slice-2/20261201T030001Z"]),
                     ("10.0.0.10", ["restore", "2", "--as", "3", "--from", "/b/slice-2/20261201T030004Z"])]


def test_a_host_whose_agent_does_not_list_refuses_the_restore_before_anything(monkeypatch):
    from sliceops import backups
    from sliceops.errors import SliceopsError

    calls = _calls(monkeypatch)
    monkeypatch.setattr(backups.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 255, "", None))
    with pytest.raises(SliceopsError, match="list 2: the backup agent on db1 did not answer with its list"):
        backups.cmd_restore(load(DATA / "good" / "fleet.yaml"), backups.parse("restore", ["2"]), deploy=lambda: 0)
    assert calls == []


@pytest.mark.parametrize(("argv", "message"), [
    (["1", "--from", "/b/slice-1/x"], "--from names a folder on one host"),
])
def test_a_restore_a_split_backup_cannot_serve_is_refused_before_anything_runs(monkeypatch, argv, message):
    from sliceops import backups
    from sliceops.errors import SliceopsError

    calls = _calls(monkeypatch)
    inv = load(DATA / "good" / "fleet.yaml")
    with pytest.raises(SliceopsError, match=message):
        backups.cmd_restore(inv, backups.parse("restore", argv), deploy=lambda: 0)
    assert calls == []


def test_a_destroy_on_a_slice_host_is_accepted_by_check():
    inv = load(DATA / "good" / "fleet_destroy_on_slice_host.yaml")
    assert [(s.id, s.host, s.status) for s in inv.slices if s.status == "destroying"] == \
        [(2, "app1", "destroying"), (3, "db1", "destroying")]


def _index(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def test_a_split_destroy_removes_nothing_before_its_final_backups_and_the_data_last():
    """Each step's script: the slice host stops the container before its final data backup and
    removes nothing; the database host's final dump comes before its drops and it touches no
    container or data; the slice host's removal takes no backup and drops no database."""
    from sliceops.operations import lifecycle

    inv = load(DATA / "good" / "fleet_destroy_on_slice_host.yaml")
    script = {part: lifecycle.destroy_script(inv, 2, "20261201T000000Z", part).splitlines()
              for part in (lifecycle.DATA_BACKUP, lifecycle.DATABASE, lifecycle.DATA_REMOVAL)}
    for lines in script.values():  # every step under the slice's lock on its host
        assert lines[2] == f"exec 9>{inv.backup_lock(2)}" and lines[3].startswith("flock -w 600 9 ||")
    data = script[lifecycle.DATA_BACKUP]
    assert _index(data, f"docker stop -t 20 {inv.container_name(2)}") < _index(data, " final 2 --lock-held")
    assert not any(word in "\n".join(data) for word in ("DROP", "rm -", "docker rm"))
    db = script[lifecycle.DATABASE]
    assert _index(db, " final 2 --lock-held") < _index(db, "DROP DATABASE IF EXISTS")
    assert _index(db, "DROP DATABASE IF EXISTS") < _index(db, "DELETE FROM gateway.slices")
    assert not any(word in "\n".join(db) for word in ("docker", "rm -", inv.slice_data_dir(2)))
    removal = "\n".join(script[lifecycle.DATA_REMOVAL])
    assert f"docker rm -f {inv.container_name(2)}" in removal and f"rm -rf {inv.slice_data_dir(2)}" in removal
    assert " final " not in removal and "DROP" not in removal


def test_status_counts_a_fleet_slices_backup_as_good_as_its_older_part():
    """`sliceops status`: the database host's results give every slice's dump, a slice host's
    its slices' data archives; the age shown is the older part's, a failure of either counts."""
    from sliceops.status import gather

    inv = load(DATA / "good" / "fleet.yaml")  # 1, 3 on app1; 2 on app2; 4 on db1
    part = lambda at, failed=False, copy=False: {"good_at": at, "failed": failed, "copy_failed": copy}  # noqa: E731
    database = {1: part(100.0), 2: part(100.0), 3: part(100.0), 4: part(100.0, copy=True)}
    merged = gather.merge_backups(inv, database, {"app1": {1: part(90.0), 3: part(110.0, failed=True)}, "app2": None})
    assert merged[1] == part(90.0)  # the data part is older
    assert merged[3] == part(100.0, failed=True)
    assert merged[2] == part(None)  # app2's part unknown (no run there yet, or it did not answer)
    assert merged[4] == part(100.0, copy=True)  # both parts on the database host: its own results
    # A failed dump of a slice on app1 (db1's results) shows as its slice's failure, whatever app1 says.
    dump_failed = gather.merge_backups(inv, {**database, 1: part(60.0, failed=True)}, {"app1": {1: part(120.0)}})
    assert dump_failed[1] == part(60.0, failed=True)
    assert gather.merge_backups(inv, None, {"app1": None, "app2": None}) is None
    target_file = load(DATA / "good" / "every_section.yaml")
    assert gather.merge_backups(target_file, database, {}) == database
    # Slice 2's move to app2 has not finished (its row names app1): its data part is app1's.
    moving = gather.merge_backups(inv, database, {"app1": {2: part(80.0)}, "app2": {2: part(120.0)}},
                                  {2: {"host": "app1"}})
    assert moving[2] == part(80.0)
    # Slice 1's, moving from db1 (its row) to app1: both parts are db1's, app1's results ignored.
    assert gather.merge_backups(inv, database, {"app1": {1: part(10.0)}}, {1: {"host": "db1"}})[1] == part(100.0)


class _FakeTarget:
    """remote.Target's stand-in: records what runs on which target, fails when told to."""

    ran: list = []
    fail: Exception | None = None

    def __init__(self, inv, target):
        self.target = target

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, argv, stdin="", timeout=60):
        _FakeTarget.ran.append((self.target, argv, timeout))
        if _FakeTarget.fail is not None:
            raise _FakeTarget.fail
        return "backup /b/slice-2/x-final verified\ndestroyed slice 2's database part: ...\n"


@pytest.mark.parametrize("fails", [False, True])
def test_the_database_part_runs_on_the_database_host_and_a_failure_stops_the_destroy(monkeypatch, capsys, fails):
    """Step 2 of a slice host's destroy: the database part's script on the database host's
    target; a failure returns False (pyinfra then runs no later command of the operation: the
    slice host's removal) and one line says what is kept."""
    from types import SimpleNamespace

    from sliceops.errors import RemoteStateError
    from sliceops.operations import lifecycle

    inv = load(DATA / "good" / "fleet_destroy_on_slice_host.yaml")
    _FakeTarget.ran, _FakeTarget.fail = [], RemoteStateError("sh on ssh://root@10.0.0.10: pg_dump failed") if fails else None
    monkeypatch.setattr(lifecycle, "Target", _FakeTarget)
    ok = lifecycle._database_part(None, SimpleNamespace(print_prefix="[app1] "), inv, 2, "20261201T000000Z")
    assert ok is (not fails)
    ((target, argv, timeout),) = _FakeTarget.ran
    assert target == inv.database_host.target and timeout == lifecycle.DATABASE_PART_TIMEOUT
    assert argv == ["sh", "-c", lifecycle.destroy_script(inv, 2, "20261201T000000Z", lifecycle.DATABASE)]
    err = capsys.readouterr().err
    if fails:
        assert err.count("\n") == 1 and "slice 2: its database part was not destroyed on db1" in err
        assert "pg_dump failed" in err and "nothing removed" in err
    else:
        assert "[app1] [db1] destroyed slice 2's database part" in err


def test_a_slice_whose_move_has_not_finished_is_not_restored(monkeypatch):
    """The gateway row still names app2 while the file says app1: the data is on app2, and the
    deploy after a restore would move the slice."""
    from sliceops import backups
    from sliceops.errors import SliceopsError

    calls = _calls(monkeypatch)
    monkeypatch.setattr(backups, "gateway_hosts", lambda inv: {1: {"host": "app2"}, 2: {"host": "app2"}})
    inv = load(DATA / "good" / "fleet.yaml")
    with pytest.raises(SliceopsError, match="slice 1: it is being moved from app2 to app1 and its data is still on app2"):
        backups.cmd_restore(inv, backups.parse("restore", ["1"]), deploy=lambda: 0)
    assert calls == []


@pytest.mark.parametrize(("argv", "expected"), [
    (["1"], [("10.0.0.10", ["run", "1"]), ("10.0.0.12", ["run", "1"])]),
    (["1", "3"], [("10.0.0.10", ["run", "1", "3"]), ("10.0.0.12", ["run", "1"]), ("10.0.0.11", ["run", "3"])]),
    (["--all"], [("10.0.0.10", ["run", "--all"]), ("10.0.0.11", ["run", "--all"]), ("10.0.0.12", ["run", "--all"])]),
])
def test_a_slice_whose_move_has_not_finished_is_backed_up_where_its_data_is(monkeypatch, argv, expected):
    """Slice 1 is moving from app2 (its gateway row) to app1 (the file), or its move failed:
    its data part is taken on app2, where the data is, and not on app1."""
    from sliceops import backups

    calls = _calls(monkeypatch)
    monkeypatch.setattr(backups, "gateway_hosts", lambda inv: {1: {"host": "app2"}, 3: {"host": "app1"}})
    inv = load(DATA / "good" / "fleet.yaml")
    assert backups.run("backup", inv, backups.parse("backup", argv)) == 0
    assert calls == expected


def test_the_listing_of_a_slice_whose_move_has_not_finished_asks_its_old_host(monkeypatch):
    from sliceops import backups

    calls = _calls(monkeypatch)
    monkeypatch.setattr(backups, "gateway_hosts", lambda inv: {1: {"host": "app2"}})
    assert backups.run("backups", load(DATA / "good" / "fleet.yaml"), backups.parse("backups", ["1"])) == 0
    assert calls == [("10.0.0.10", ["list", "1"]), ("10.0.0.12", ["list", "1"])]


def test_a_slice_whose_row_names_its_host_is_backed_up(monkeypatch):
    from sliceops import backups

    calls = _calls(monkeypatch)
    monkeypatch.setattr(backups, "gateway_hosts", lambda inv: {1: {"host": "app1"}, 2: {"host": "app2"}})
    inv = load(DATA / "good" / "fleet.yaml")
    assert backups.run("backup", inv, backups.parse("backup", ["1"])) == 0
    assert calls == [("10.0.0.10", ["run", "1"]), ("10.0.0.11", ["run", "1"])]


def test_the_gateways_hosts_are_not_asked_for_a_target_file(monkeypatch):
    from sliceops import backups

    monkeypatch.setattr(backups, "Target", lambda *a: pytest.fail("a target: file has no slice to move"))
    assert backups.gateway_hosts(load(DATA / "good" / "every_section.yaml")) == {}


@pytest.mark.parametrize("gateway", [
    {},  # a fresh fleet: no rows yet
    {1: {"host": "app1"}, 2: {"host": "app2"}, 3: {"host": "app1"}, 4: {"host": "db1"}},  # settled
    {1: {"host": "app2"}, 2: {"host": "app2"}, 3: {"host": "db1"}, 4: {"host": "app1"}},  # three moves unfinished
])
def test_every_slices_data_part_is_in_exactly_one_agents_configuration_where_its_data_is(gateway):
    """Never both hosts, never neither: a slice whose move is pending or failed (its gateway row
    names its old host) has its data part with the old host's agent; its dump stays on db1."""
    from sliceops import moves

    inv = load(DATA / "good" / "fleet.yaml")
    configs = {h: agent_config(inv, h, gateway) for h in ("db1", "app1", "app2")}
    keeps = {sid: [h for h, cfg in configs.items() for s in cfg["slices"] if s["id"] == sid and s["data_dir"]]
             for sid in inv.slice_ids}
    assert keeps == {sid: [h] for sid, h in moves.data_hosts(inv, gateway).items()}
    for sid, (host,) in keeps.items():
        entry = next(s for s in configs[host]["slices"] if s["id"] == sid)
        assert entry["data_dir"] == inv.slice_data_dir(sid) and entry["container"] == inv.container_name(sid)
    assert [s["id"] for s in configs["db1"]["slices"] if s["database"]] == list(inv.slice_ids)
    if gateway and gateway[1]["host"] == "app2":
        assert keeps[1] == ["app2"] and keeps[3] == ["db1"] and keeps[4] == ["app1"]
        assert [s["id"] for s in configs["app1"]["slices"]] == [4]  # 1 and 3 not yet: their data is elsewhere


class _DownGateway:
    """remote.Target's stand-in for a database host whose gateway cannot be read: `run` (the
    psql of gateway_hosts) raises `fail`; records the targets asked."""

    fail: Exception = RuntimeError("set by the test")
    asked: list = []

    def __init__(self, inv, target):
        _DownGateway.asked.append(target)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, argv, stdin="", timeout=60):
        assert "psql" in argv and "gateway.slices" in stdin
        raise _DownGateway.fail


def _gateway_down(monkeypatch, fail: Exception) -> list[tuple[str, list[str]]]:
    """The agents the CLI runs (as _calls), the gateway's read failing with `fail` for real:
    backups.gateway_hosts itself runs, on a Target that raises."""
    from sliceops import backups

    real = backups.gateway_hosts
    calls = _calls(monkeypatch)
    monkeypatch.setattr(backups, "gateway_hosts", real)
    _DownGateway.fail, _DownGateway.asked = fail, []
    monkeypatch.setattr(backups, "Target", _DownGateway)
    return calls


def _down_errors():
    from sliceops.errors import RemoteStateError
    from sliceops.hostkeys import HostUnreachable

    return [RemoteStateError("psql on ssh://root@10.0.0.10: psql: error: connection to server on socket "
                             "\"/var/run/postgresql/.s.PGSQL.5432\" failed: No such file or directory"),
            HostUnreachable("cannot reach 10.0.0.10:22 over SSH: Connection refused")]


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "warning" in line]


@pytest.mark.parametrize("fail", _down_errors())
def test_the_listing_of_a_slice_asks_every_slice_host_when_the_gateway_cannot_be_read(monkeypatch, capsys, fail):
    """A database outage: `backups ID` still lists the slice's data parts (every slice host is
    asked, as for a destroyed slice), with one warning line naming the database host."""
    from sliceops import backups

    calls = _gateway_down(monkeypatch, fail)
    inv = load(DATA / "good" / "fleet.yaml")
    assert backups.run("backups", inv, backups.parse("backups", ["1"])) == 0
    assert _DownGateway.asked == [inv.database_host.target]  # the read was tried, on db1
    assert calls == [("10.0.0.10", ["list", "1"]), ("10.0.0.11", ["list", "1"]), ("10.0.0.12", ["list", "1"])]
    (warning,) = _warnings(capsys.readouterr().err)
    assert warning.startswith("sliceops: warning: backups: the gateway's slice hosts cannot be read on db1 (")
    assert str(fail) in warning and warning.endswith("; asking every slice host")


@pytest.mark.parametrize("fail", _down_errors())
def test_a_backup_of_slices_uses_the_inventorys_hosts_when_the_gateway_cannot_be_read(monkeypatch, capsys, fail):
    from sliceops import backups

    calls = _gateway_down(monkeypatch, fail)
    inv = load(DATA / "good" / "fleet.yaml")
    assert backups.run("backup", inv, backups.parse("backup", ["1", "2"])) == 0
    assert calls == [("10.0.0.10", ["run", "1", "2"]), ("10.0.0.11", ["run", "1"]), ("10.0.0.12", ["run", "2"])]
    (warning,) = _warnings(capsys.readouterr().err)
    assert "cannot be read on db1" in warning and warning.endswith("; using the inventory's hosts for the data directories")


@pytest.mark.parametrize("readable", [True, False])
def test_backup_all_runs_on_every_slice_host_when_the_gateway_cannot_be_read(monkeypatch, capsys, tmp_path, readable):
    """Slice 2 now on app1 in the file, app2 has no slice of its own: with the rows read and
    the move finished, app2 is not asked; with them unread, app2 is asked too (its agent's
    configuration, the last deploy's, may still keep slice 2's data part: a pending move)."""
    from sliceops import backups

    (tmp_path / "fleet.yaml").write_text((DATA / "good" / "fleet.yaml").read_text().replace(
        "{id: 2, host: app2}", "{id: 2, host: app1}"))
    inv = load(tmp_path / "fleet.yaml")
    if readable:
        calls = _calls(monkeypatch)
        monkeypatch.setattr(backups, "gateway_hosts", lambda inv: {1: {"host": "app1"}, 2: {"host": "app1"}})
    else:
        calls = _gateway_down(monkeypatch, _down_errors()[0])
    assert backups.run("backup", inv, backups.parse("backup", ["--all"])) == 0
    expected = [("10.0.0.10", ["run", "--all"]), ("10.0.0.11", ["run", "--all"])]
    assert calls == expected + ([] if readable else [("10.0.0.12", ["run", "--all"])])
    warnings = _warnings(capsys.readouterr().err)
    assert warnings == [] if readable else len(warnings) == 1 and "cannot be read on db1" in warnings[0]


def test_a_database_hosts_changed_key_is_still_refused(monkeypatch):
    """Only an outage falls back: a host key that is not the recorded one stops the command."""
    from sliceops import backups
    from sliceops.hostkeys import HostKeyError

    calls = _gateway_down(monkeypatch, HostKeyError("ssh://root@10.0.0.10: the host key has changed"))
    with pytest.raises(HostKeyError, match="changed"):
        backups.run("backups", load(DATA / "good" / "fleet.yaml"), backups.parse("backups", ["1"]))
    assert calls == []
