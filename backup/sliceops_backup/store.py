"""Where backups live and what a backup is: its folder, its manifest, its checksums, and the
retention policy (pure functions, unit-tested without a host).

    <dir>/slice-<id>/<YYYYmmddTHHMMSSZ>[-<kind>]/ manifest.json, wa_slice_<id>.dump, data.tar.gz
    <dir>/gateway/<YYYYmmddTHHMMSSZ>[-<kind>]/    manifest.json, <gateway db>.dump

A folder is written as `<name>.partial` and renamed once its manifest is complete, so a
folder without that suffix always holds a whole backup (verified or not: the manifest says).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

STAMP = "%Y%m%dT%H%M%SZ"
KINDS = ("scheduled", "manual", "pre-restore", "final")
MANIFEST = "manifest.json"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """An ISO time ('2026-12-01T03:00', '2026-12-01 03:00:00Z', '2026-12-01'); naive means UTC."""
    value = text.strip().replace("Z", "+00:00")
    t = dt.datetime.fromisoformat(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)


def owner_folder(root: Path, slice_id: int | None) -> Path:
    """The folder of one slice's backups (None: the gateway's)."""
    return root / ("gateway" if slice_id is None else f"slice-{slice_id}")


def folder_name(started: dt.datetime, kind: str) -> str:
    base = started.strftime(STAMP)
    return base if kind in ("scheduled", "manual") else f"{base}-{kind}"


FOLDER = re.compile(r"^(\d{8}T\d{6}Z)(?:-([a-z-]+))?(?:\.\d+)?$")


def manifest_from_name(name: str) -> dict | None:
    """What a folder's name tells of its backup (time, kind), for folders sent off the host,
    which are all verified; None for a name no backup folder has."""
    m = FOLDER.match(name)
    if not m or (m[2] and m[2] not in KINDS):
        return None
    started = dt.datetime.strptime(m[1], STAMP).replace(tzinfo=dt.timezone.utc)
    return {"started": iso(started), "kind": m[2] or "scheduled", "verified": True}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Backup:
    """One backup folder and its manifest."""

    path: Path
    manifest: dict

    @property
    def started(self) -> dt.datetime:
        return parse_time(self.manifest["started"])

    @property
    def verified(self) -> bool:
        return bool(self.manifest.get("verified"))

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "manual")

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.manifest.get("files", []))

    def file(self, role: str) -> Path | None:
        """The backup's file with this role ('database', 'data'), or None."""
        for f in self.manifest.get("files", []):
            if f["role"] == role:
                return self.path / f["name"]
        return None


def write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / (MANIFEST + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, folder / MANIFEST)


def read(folder: Path) -> Backup | None:
    try:
        return Backup(folder, json.loads((folder / MANIFEST).read_text()))
    except (OSError, ValueError):
        return None


def listing(root: Path, slice_id: int | None) -> list[Backup]:
    """Every complete backup of one slice (or the gateway), oldest first."""
    base = owner_folder(root, slice_id)
    if not base.is_dir():
        return []
    found = [b for p in base.iterdir() if p.is_dir() and not p.name.endswith(".partial") and (b := read(p))]
    return sorted(found, key=lambda b: (b.manifest["started"], b.path.name))


def checksum_problems(backup: Backup) -> list[str]:
    """Files whose size or sha256 differs from the manifest (or that are missing)."""
    problems = []
    for f in backup.manifest.get("files", []):
        path = backup.path / f["name"]
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != f["size"] or sha256(path) != f["sha256"]:
            problems.append(f"{path}: checksum does not match the manifest")
    return problems


def to_prune(backups: list[Backup], keep_daily: int, keep_weekly: int) -> list[Backup]:
    """Backups the policy no longer keeps.

    Kept: every final backup (a destroyed slice's: never pruned automatically); the newest
    verified backup of each of the `keep_daily` most recent days that have one, and of each
    of the `keep_weekly` most recent ISO weeks; any backup newer than the newest verified one
    (a failure stays visible until a good backup replaces it). Failed backups never count
    towards the days or weeks kept. A restore's `pre-restore` backup takes no day's place
    (it holds the state a restore replaced, not a good copy of that day) and is kept for
    `keep_daily` days.
    """
    good = [b for b in backups if b.verified and b.kind not in ("final", "pre-restore")]
    keep: set[Path] = {b.path for b in backups if b.kind == "final"}
    by_newest = sorted(good, key=lambda b: b.started, reverse=True)
    days: dict = {}
    weeks: dict = {}
    for b in by_newest:
        day = b.started.date()
        week = day.isocalendar()[:2]
        if day not in days and len(days) < keep_daily:
            days[day] = b.path
        if week not in weeks and len(weeks) < keep_weekly:
            weeks[week] = b.path
    keep |= set(days.values()) | set(weeks.values())
    if by_newest:
        newest_good = by_newest[0].started
        keep |= {b.path for b in backups if b.started > newest_good}
        since = newest_good - dt.timedelta(days=keep_daily)
        keep |= {b.path for b in backups if b.kind == "pre-restore" and b.started >= since}
    else:
        keep |= {b.path for b in backups}  # nothing good yet: keep everything there is
    return [b for b in backups if b.path not in keep]


def latest_verified(backups: list[Backup], at: dt.datetime | None = None) -> Backup | None:
    """The newest verified backup started at or before `at` (any time if None).

    A restore's own `pre-restore` backup is not a candidate: restoring twice must not bring
    back what the first restore replaced (name its folder with --from for that)."""
    fit = [b for b in backups if b.verified and b.kind != "pre-restore" and (at is None or b.started <= at)]
    return fit[-1] if fit else None
