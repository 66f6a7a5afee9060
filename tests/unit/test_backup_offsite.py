"""Copies off the host (backup/sliceops_backup/offsite.py), rsync faked: what is sent, what is
pruned there (the same policy over the copies there and the backups here), what a folder's
name tells, how rsync's listing is read, and the SSH options (strict host key checking)."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from sliceops_backup import offsite, store

T0 = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.timezone.utc)
REMOTE = offsite.Remote("bk", "vault.example", 2222, "/srv/copies/main", "/etc/sliceops/main/backup-ssh/id_ed25519",
                        "/etc/sliceops/main/backup-ssh/known_hosts")


def local(root: Path, days_ago: int, kind: str = "scheduled", verified: bool = True) -> str:
    started = T0 - dt.timedelta(days=days_ago)
    name = store.folder_name(started, kind)
    folder = store.owner_folder(root, 1) / name
    folder.mkdir(parents=True)
    (folder / store.MANIFEST).write_text(json.dumps({"started": store.iso(started), "kind": kind,
                                                     "verified": verified, "files": []}))
    return name


def stamp(days_ago: int, kind: str = "scheduled") -> str:
    return store.folder_name(T0 - dt.timedelta(days=days_ago), kind)


@pytest.fixture
def fake(monkeypatch):
    calls = {"sent": [], "deleted": []}
    there: set[str] = set()
    monkeypatch.setattr(offsite, "remote_folders", lambda remote, owner: set(there))
    monkeypatch.setattr(offsite, "send", lambda remote, owner, folder: calls["sent"].append(folder.name))
    monkeypatch.setattr(offsite, "delete", lambda remote, owner, names: calls["deleted"].extend(names))
    calls["there"] = there
    return calls


def test_verified_backups_not_there_yet_are_sent_and_failed_ones_never(tmp_path, fake):
    good = [local(tmp_path, d) for d in (0, 1)]
    local(tmp_path, 3, "manual", verified=False)
    fake["there"].add(good[1])
    done = offsite.sync(REMOTE, tmp_path, 1, keep_daily=7, keep_weekly=4)
    assert fake["sent"] == [good[0]] and fake["deleted"] == []
    assert done == {"sent": [good[0]], "pruned": [], "there": 2}


def test_copies_there_are_pruned_by_the_same_policy_and_a_final_backup_never(tmp_path, fake):
    here = local(tmp_path, 0)
    # A lost disk: here only today's backup; there 20 days of copies and a destroyed slice's final one.
    old = [stamp(d) for d in range(1, 21)]
    final = stamp(40, "final")
    fake["there"].update(old + [final])
    done = offsite.sync(REMOTE, tmp_path, 1, keep_daily=3, keep_weekly=2)
    assert fake["sent"] == [here]
    # Kept there: the 3 newest days (today's is here and sent), which hold the newest of each
    # of the 2 ISO weeks (T0 is a Tuesday: day 2 is the Sunday before), and the final one.
    kept = (set(old) | {here, final}) - set(fake["deleted"])
    assert kept == {here, stamp(1), stamp(2), final}
    assert done["there"] == 4


def test_a_backup_the_policy_drops_is_not_sent_only_to_be_pruned(tmp_path, fake):
    old = local(tmp_path, 30)  # kept here until the next successful local run prunes it
    fake["there"].update(stamp(d) for d in range(0, 3))
    offsite.sync(REMOTE, tmp_path, 1, keep_daily=3, keep_weekly=1)
    assert old not in fake["sent"]


@pytest.mark.parametrize(("name", "expected"), [
    ("20261201T030002Z", {"started": "2026-12-01T03:00:02Z", "kind": "scheduled", "verified": True}),
    ("20261201T030002Z-final", {"started": "2026-12-01T03:00:02Z", "kind": "final", "verified": True}),
    ("20261201T030002Z-pre-restore.1", {"started": "2026-12-01T03:00:02Z", "kind": "pre-restore", "verified": True}),
    ("20261201T030002Z-bogus", None),
    ("20261201T030002Z.partial", None),
    (".rsync-partial", None),
])
def test_a_folder_name_tells_the_time_and_kind(name, expected):
    assert store.manifest_from_name(name) == expected


def test_the_remote_listing_counts_only_folders_holding_their_manifest(monkeypatch):
    listing = (
        "drwx------          4,096 2026/12/01 03:00:05 .\n"
        "drwx------          4,096 2026/12/01 03:00:05 20261201T030002Z\n"
        "-rw-------            812 2026/12/01 03:00:05 20261201T030002Z/manifest.json\n"
        "drwx------          4,096 2026/12/02 03:00:05 20261202T030002Z\n"  # its manifest not yet sent
    )
    seen = []

    def rsync(self, *args):
        seen.append(args)
        return subprocess.CompletedProcess(args, 0, listing, "")

    monkeypatch.setattr(offsite.Remote, "rsync", rsync)
    assert offsite.remote_folders(REMOTE, "slice-1") == {"20261201T030002Z"}
    assert seen[0][-1] == "bk@vault.example:/srv/copies/main/slice-1/"
    monkeypatch.setattr(offsite.Remote, "rsync", lambda self, *a: subprocess.CompletedProcess(
        a, 23, "", 'rsync: [sender] change_dir "/srv/copies/main/slice-1" failed: No such file or directory (2)\n'))
    assert offsite.remote_folders(REMOTE, "slice-1") == set()
    monkeypatch.setattr(offsite.Remote, "rsync", lambda self, *a: subprocess.CompletedProcess(
        a, 255, "", "Host key verification failed.\nrsync: connection unexpectedly closed\n"))
    with pytest.raises(offsite.CopyError, match="connection unexpectedly closed"):
        offsite.remote_folders(REMOTE, "slice-1")


def test_ssh_checks_the_host_key_strictly_with_the_deploys_file_and_key_only():
    argv = shlex.split(REMOTE.ssh())
    opts = {argv[i + 1].split("=")[0]: argv[i + 1].split("=", 1)[1] for i, a in enumerate(argv) if a == "-o"}
    assert opts["StrictHostKeyChecking"] == "yes" and opts["BatchMode"] == "yes"
    assert opts["UserKnownHostsFile"] == REMOTE.known_hosts and opts["GlobalKnownHostsFile"] == "/dev/null"
    assert opts["IdentitiesOnly"] == "yes"
    assert argv[argv.index("-i") + 1] == REMOTE.identity and argv[argv.index("-p") + 1] == "2222"
