"""The backup agent's pure parts: retention by daily and weekly counts, the choice of the
backup a restore uses, checksums against the manifest, and times on the command line."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from sliceops_backup import store

T0 = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.timezone.utc)  # a Tuesday


def make(tmp_path: Path, days_ago: float, kind: str = "scheduled", verified: bool = True) -> store.Backup:
    started = T0 - dt.timedelta(days=days_ago)
    folder = tmp_path / f"{started.strftime(store.STAMP)}-{kind}-{verified}"
    folder.mkdir()
    manifest = {"started": store.iso(started), "kind": kind, "verified": verified, "files": []}
    return store.Backup(folder, manifest)


def names(backups) -> set[float]:
    return {b.path.name for b in backups}


def test_keeps_the_newest_of_each_recent_day_and_week_and_prunes_the_rest(tmp_path):
    nightly = [make(tmp_path, d) for d in range(40, -1, -1)]  # 41 nights, oldest first
    gone = store.to_prune(nightly, keep_daily=7, keep_weekly=4)
    kept = [b for b in nightly if b not in gone]
    ages = sorted((T0 - b.started).days for b in kept)
    # 7 most recent days, plus the newest of each of the 4 most recent ISO weeks
    # (this week's and last week's are among the 7 days already).
    assert ages[:7] == [0, 1, 2, 3, 4, 5, 6]
    weeks = {b.started.isocalendar()[:2] for b in kept}
    assert len(weeks) == 4 and len(kept) == 9
    assert all((T0 - b.started).days <= 27 for b in kept)


def test_two_backups_on_one_day_count_once(tmp_path):
    backups = [make(tmp_path, 1.2), make(tmp_path, 1.1), make(tmp_path, 0.1), make(tmp_path, 0)]
    gone = store.to_prune(backups, keep_daily=1, keep_weekly=0)
    assert [b.path for b in gone] == [b.path for b in backups[:3]]


def test_a_failed_backup_never_takes_a_good_ones_place(tmp_path):
    good_old = make(tmp_path, 2)
    good = make(tmp_path, 1)
    failed = make(tmp_path, 0, verified=False)
    gone = store.to_prune([good_old, good, failed], keep_daily=1, keep_weekly=0)
    # The failed one is newer than the newest good one: it stays, visible; it keeps no day.
    assert names(gone) == {good_old.path.name}
    older_failure = make(tmp_path, 1.5, verified=False)
    gone = store.to_prune([good_old, older_failure, good], keep_daily=1, keep_weekly=0)
    assert names(gone) == {good_old.path.name, older_failure.path.name}


def test_a_final_backup_is_never_pruned(tmp_path):
    final = make(tmp_path, 400, kind="final")
    recent = [make(tmp_path, d) for d in (2, 1, 0)]
    assert final not in store.to_prune([final, *recent], keep_daily=1, keep_weekly=0)


def test_a_restores_safety_copy_takes_no_days_place_and_stays_keep_daily_days(tmp_path):
    morning = make(tmp_path, 1)
    safety = make(tmp_path, 0.9, kind="pre-restore")  # the same day, later
    old_safety = make(tmp_path, 10, kind="pre-restore")
    nightly = make(tmp_path, 0)
    gone = store.to_prune([old_safety, morning, safety, nightly], keep_daily=7, keep_weekly=0)
    assert names(gone) == {old_safety.path.name}


def test_nothing_is_pruned_while_no_backup_verified(tmp_path):
    failed = [make(tmp_path, d, verified=False) for d in (3, 2, 1)]
    assert store.to_prune(failed, keep_daily=1, keep_weekly=0) == []


def test_latest_verified_at_or_before_a_time(tmp_path):
    backups = [make(tmp_path, 3), make(tmp_path, 2), make(tmp_path, 1, verified=False), make(tmp_path, 0)]
    assert store.latest_verified(backups) is backups[3]
    assert store.latest_verified(backups, T0 - dt.timedelta(days=1)) is backups[1]
    assert store.latest_verified(backups, T0 - dt.timedelta(days=10)) is None
    # A restore's own safety copy is chosen only by name (--from).
    assert store.latest_verified([*backups, make(tmp_path, -1, kind="pre-restore")]) is backups[3]


def test_checksums_catch_a_changed_or_missing_file(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "x.dump").write_bytes(b"abc")
    manifest = {"started": store.iso(T0), "files": [
        {"role": "database", "name": "x.dump", "size": 3, "sha256": store.sha256(folder / "x.dump")},
        {"role": "data", "name": "data.tar.gz", "size": 1, "sha256": "0" * 64},
    ]}
    store.write_manifest(folder, manifest)
    b = store.read(folder)
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert [p.endswith("data.tar.gz: missing") for p in store.checksum_problems(b)] == [True]
    (folder / "data.tar.gz").write_bytes(b"z")
    (folder / "x.dump").write_bytes(b"abd")
    assert store.checksum_problems(b) == [f"{folder}/x.dump: checksum does not match the manifest",
                                          f"{folder}/data.tar.gz: checksum does not match the manifest"]


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-01T03:00", T0),
    ("2026-12-01 03:00:00Z", T0),
    ("2026-12-01T04:00:00+01:00", T0),
    ("2026-12-01", T0 - dt.timedelta(hours=3)),
])
def test_times_are_utc_unless_they_say_otherwise(text, expected):
    assert store.parse_time(text) == expected


def test_data_is_restored_in_place_keeping_the_directory_itself(tmp_path):
    """The data directory may be a quota subvolume or a mount point: its content is replaced,
    the directory itself (its inode) stays; the archived owner and mode come back."""
    import os
    import subprocess

    from sliceops_backup import agent

    if os.geteuid() != 0:
        pytest.skip("tar keeps archived owners only for root (the agent runs as root)")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "keep.txt").write_text("backed up\n")
    (src / "sub" / "deep.txt").write_text("deep\n")
    os.chmod(src, 0o2750)
    archive = tmp_path / "data.tar.gz"
    subprocess.run(["tar", "--numeric-owner", "-czf", str(archive), "-C", str(src), "."], check=True)
    live = tmp_path / "live"
    (live / "olddir").mkdir(parents=True)
    (live / "new.txt").write_text("written after the backup\n")
    inode = live.stat().st_ino
    agent._restore_data(archive, live)
    assert live.stat().st_ino == inode
    assert sorted(p.name for p in live.iterdir()) == ["keep.txt", "sub"]
    assert (live / "sub" / "deep.txt").read_text() == "deep\n"
    assert oct(live.stat().st_mode & 0o7777) == oct(0o2750)


def test_a_drill_compares_every_table_both_ways_and_names_each_mismatch():
    from sliceops_backup.agent import comparison, mismatches

    want = {"public.chats": 3, "public.messages": 10, "public.gone": 1}
    got = {"public.chats": 3, "public.messages": 9, "public.extra": 0}
    assert mismatches(want, want) == []
    assert mismatches(want, got) == [
        "public.extra: 0 rows restored, manifest no table",
        "public.gone: no table rows restored, manifest 1",
        "public.messages: 9 rows restored, manifest 10",
    ]
    lines = comparison(want, got)
    assert lines[0].split() == ["table", "restored", "manifest"]
    assert [line.split() for line in lines[1:]] == [
        ["public.chats", "3", "3", "ok"], ["public.extra", "0", "-", "MISMATCH"],
        ["public.gone", "-", "1", "MISMATCH"], ["public.messages", "9", "10", "MISMATCH"]]


def _config(tmp_path: Path):
    from sliceops_backup import agent

    return agent.Config({
        "instance": "u1", "cluster": {"version": 15, "name": "u1", "port": 1}, "dir": str(tmp_path / "bk"),
        "keep_daily": 1, "keep_weekly": 0, "drill": "off", "parallel": 2,
        "state_file": str(tmp_path / "state.json"), "state_group": "root", "slice_owner": "wa_slice",
        "gateway": {"database": "gw", "owner": "gw", "lock": str(tmp_path / "gw.lock")},
        "slices": [{"id": i, "database": f"wa_slice_{i}", "data_dir": None, "container": f"c{i}",
                    "status": "active", "lock": str(tmp_path / f"{i}.lock")} for i in (1, 2)],
    })


@pytest.mark.parametrize("second_verified", [True, False])
def test_a_run_prunes_only_when_every_backup_verified(tmp_path, monkeypatch, second_verified):
    from sliceops_backup import agent

    cfg = _config(tmp_path)
    pruned = []
    monkeypatch.setattr(agent, "backup", lambda cfg, t, kind: store.Backup(
        tmp_path / f"b{t.slice_id}", {"started": store.iso(T0), "kind": kind, "files": [], "tables": {},
                                      "verified": t.slice_id == 1 or second_verified, "error": "x"}))
    monkeypatch.setattr(agent, "prune", lambda cfg, t: pruned.append(t.slice_id) or [])
    lines = []
    ok = agent.run(cfg, cfg.backed_up(), "manual", out=lines.append)
    assert ok is second_verified
    assert pruned == ([1, 2] if second_verified else [])
    assert ("not pruning: at least one backup failed" in lines) is not second_verified
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["last_run"]["failed"] == ([] if second_verified else ["2"])
    assert state["slices"]["1"]["last_good"]["at"] == store.iso(T0)  # the good one counts either way


def test_a_run_backs_up_several_slices_at_a_time_and_never_more_than_parallel(tmp_path, monkeypatch):
    import threading
    import time

    from sliceops_backup import agent

    data = _config(tmp_path).data
    data["slices"] = [dict(data["slices"][0], id=i, database=f"wa_slice_{i}", lock=str(tmp_path / f"{i}.lock"))
                      for i in range(1, 7)]
    cfg = agent.Config(data)
    running, most, mutex, two = [0], [0], threading.Lock(), threading.Event()

    def backup(cfg, t, kind):
        with mutex:
            running[0] += 1
            most[0] = max(most[0], running[0])
            if running[0] == 2:
                two.set()
        two.wait(10)  # the first waits for a second, however slowly the pool starts it
        time.sleep(0.05)  # meanwhile a pool without the bound would start a third
        with mutex:
            running[0] -= 1
        return store.Backup(tmp_path / f"b{t.slice_id}", {"started": store.iso(T0), "kind": kind, "files": [],
                                                          "tables": {}, "verified": True})

    monkeypatch.setattr(agent, "backup", backup)
    monkeypatch.setattr(agent, "prune", lambda cfg, t: [])
    assert agent.run(cfg, cfg.backed_up(), "manual", out=lambda line: None)
    assert most[0] == cfg.parallel == 2
