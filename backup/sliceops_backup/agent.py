"""What one run of the agent does: back up (verify, record, prune), list, drill, restore.

Every slice (and the gateway) has a lock file on the target; the deploy's destroy takes the
same lock, so a backup never runs concurrently with a destroy or a restore of that slice.
Results go to a JSON state file the monitor and `sliceops status` read without opening a
backup.

In a fleet a slice's backup has two parts on two hosts: the database host's agent dumps every
slice's database (and archives the data directories of the slices that run there), a pure slice
host's agent archives its own slices' data directories (its configuration has no cluster, no
gateway, and no database for its slices: `Target.database` None).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import grp
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sliceops_backup import offsite, store
from sliceops_backup.pg import Cluster, PgError

DRILL_EVERY = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7)}


class AgentError(Exception):
    """A request the agent refuses or a step that failed; one line for the operator."""


@dataclass(frozen=True)
class Target:
    """What one backup covers: a slice (database + data directory) or the gateway database."""

    slice_id: int | None
    database: str | None  # None: this host keeps only the slice's data directory (a pure slice host)
    owner: str
    lock: str
    data_dir: str | None = None
    container: str | None = None
    status: str = "active"

    @property
    def label(self) -> str:
        return "gateway" if self.slice_id is None else f"slice {self.slice_id}"

    @property
    def key(self) -> str:
        return "gateway" if self.slice_id is None else str(self.slice_id)


class Config:
    """The agent's configuration, written by the deploy (`/etc/sliceops/<instance>/backup.json`)."""

    def __init__(self, data: dict):
        self.data = data
        self.instance = data["instance"]
        c = data.get("cluster")  # None: a pure slice host (no PostgreSQL here)
        self.cluster = Cluster(c["version"], c["name"], c["port"]) if c else None
        self.root = Path(data["dir"])
        self.keep_daily = data["keep_daily"]
        self.keep_weekly = data["keep_weekly"]
        self.drill = data["drill"]
        self.parallel = max(1, data["parallel"])
        self.state_file = Path(data["state_file"])
        self.state_group = data.get("state_group")
        self.copy = offsite.Remote.from_config(data.get("copy"))
        gw = data.get("gateway")
        self.gateway = Target(None, gw["database"], gw["owner"], gw["lock"]) if gw else None
        self.slices = {
            s["id"]: Target(s["id"], s["database"], data["slice_owner"], s["lock"], s["data_dir"], s["container"],
                            s["status"])
            for s in data["slices"]
        }

    @classmethod
    def load(cls, path: str) -> "Config":
        try:
            return cls(json.loads(Path(path).read_text()))
        except OSError as exc:
            raise AgentError(f"{path}: cannot read the backup configuration ({exc.strerror}); deploy first") from None
        except (ValueError, KeyError) as exc:
            raise AgentError(f"{path}: malformed backup configuration ({exc})") from None

    def slice(self, slice_id: int) -> Target:
        if slice_id not in self.slices:
            raise AgentError(f"slice {slice_id} is not in the inventory this host was deployed with")
        return self.slices[slice_id]

    def backed_up(self) -> list[Target]:
        """In-service and suspended slices: those a scheduled run covers."""
        return [t for t in self.slices.values() if t.status in ("active", "suspended")]


# --------------------------------------------------------------------------- locks and state


@contextlib.contextmanager
def locked(path: str, wait: float, what: str):
    """Hold `path`'s flock (shared with the deploy's destroy) for the block; give up after `wait` s."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AgentError(f"{what} is busy (a destroy, restore or backup holds {path}); "
                                     f"gave up after {wait:.0f}s, nothing changed") from None
                if not told:
                    print(f"sliceops-backup: waiting for {what}: a destroy, restore or backup holds {path} "
                          f"(at most {wait:.0f}s)", file=sys.stderr, flush=True)
                    told = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


_state_mutex = threading.Lock()


def record(cfg: Config, update) -> None:
    """Read-modify-write the state file under a lock (other runs may write it too)."""
    cfg.state_file.parent.mkdir(parents=True, exist_ok=True)
    with _state_mutex, locked(str(cfg.state_file) + ".lock", 600, "the backup state file"):
        try:
            state = json.loads(cfg.state_file.read_text())
        except (OSError, ValueError):
            state = {}
        state.setdefault("slices", {})
        update(state)
        # A pure slice host keeps no gateway backups: its monitor leaves the gateway's metric out.
        state["gateway_here"] = cfg.gateway is not None
        state["updated"] = store.iso(store.now())
        tmp = cfg.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o640)  # the umask is 077
        with contextlib.suppress(KeyError, OSError):
            os.chown(tmp, 0, grp.getgrnam(cfg.state_group).gr_gid)
        os.replace(tmp, cfg.state_file)


def read_state(cfg: Config) -> dict:
    try:
        return json.loads(cfg.state_file.read_text())
    except (OSError, ValueError):
        return {"slices": {}}


def _summary(b: store.Backup) -> dict:
    m = b.manifest
    return {"at": m["started"], "finished": m.get("finished"), "path": str(b.path), "size": b.size,
            "verified": b.verified, "kind": b.kind, "migration": m.get("migration"), "error": m.get("error")}


def _note_backup(cfg: Config, target: Target, backup: store.Backup | None, error: str | None) -> None:
    def update(state):
        where = state if target.slice_id is None else state["slices"]
        entry = where.setdefault(target.key, {})
        if backup is not None:
            entry["last"] = _summary(backup)
            if backup.verified:
                entry["last_good"] = _summary(backup)
        else:
            entry["last"] = {"at": store.iso(store.now()), "verified": False, "error": error}

    record(cfg, update)


# --------------------------------------------------------------------------- one backup


def backup(cfg: Config, target: Target, kind: str) -> store.Backup:
    """Dump (and archive the data directory of) one target, verify, write its manifest.

    Returns the backup, verified or not (its manifest says why not); raises AgentError
    when nothing usable was written (the partial folder is removed)."""
    started = store.now()
    base = store.owner_folder(cfg.root, target.slice_id)
    for d in (cfg.root, base):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    name = store.folder_name(started, kind)
    n = 1
    while (base / name).exists() or (base / f"{name}.partial").exists():
        name, n = f"{store.folder_name(started, kind)}.{n}", n + 1
    work = base / f"{name}.partial"
    work.mkdir(mode=0o700)
    try:
        manifest = _take(cfg, target, kind, started, work)
    except (PgError, OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise AgentError(f"{target.label}: backup failed: {exc}") from None
    store.write_manifest(work, manifest)
    final = base / name
    os.rename(work, final)
    return store.Backup(final, manifest)


def _take(cfg: Config, target: Target, kind: str, started: dt.datetime, work: Path) -> dict:
    problems: list[str] = []
    files: list[tuple[str, Path]] = []
    counts, level, toc = {}, "", []
    if target.database is None:
        problems_if_empty = "no data directory to back up"  # this host keeps only the data part
    elif kind == "final" and not cfg.cluster.exists(target.database):
        problems_if_empty = "neither database nor data directory left to back up"
    else:
        problems_if_empty = ""
        dump = work / f"{target.database}.dump"
        counts, level = cfg.cluster.dump(target.database, dump)
        files.append(("database", dump))
        toc = _verify_dump(cfg, dump, counts, problems)
    entries = _archive(target, work, files, problems)
    if not files and problems_if_empty:
        problems.append(problems_if_empty)
    return {
        "format": 1,
        "instance": cfg.instance,
        "slice": target.slice_id,
        "database": target.database,
        "data_dir": target.data_dir,
        "kind": kind,
        "started": store.iso(started),
        "finished": store.iso(store.now()),
        "migration": level or None,
        "tables": counts,
        "toc_entries": len(toc),
        "data_entries": entries,
        "files": [{"role": role, "name": p.name, "size": p.stat().st_size, "sha256": store.sha256(p)}
                  for role, p in files],
        "verified": not problems,
        "error": "; ".join(problems) or None,
    }


def _verify_dump(cfg: Config, dump: Path, counts: dict, problems: list[str]) -> list[str]:
    """`pg_restore --list` reads the whole table of contents, with the data of every table counted."""
    try:
        toc = cfg.cluster.toc(dump)
    except PgError as exc:
        problems.append(str(exc))
        return []
    # "215; 0 16390 TABLE DATA public messages wa_slice": schema and table before the owner.
    listed = {" ".join(line.split()[-3:-1]) for line in toc if " TABLE DATA " in line}
    missing = [t for t in counts if " ".join(t.split(".", 1)) not in listed]
    if missing:
        problems.append(f"pg_restore --list lacks the data of {', '.join(missing[:5])}")
    if not toc:
        problems.append("pg_restore --list shows an empty dump")
    return toc


def _archive(target: Target, work: Path, files: list, problems: list[str]) -> int | None:
    """tar the slice's data directory beside the dump, then list it; the number of entries."""
    if not (target.data_dir and os.path.isdir(target.data_dir)):
        return None
    archive = work / "data.tar.gz"
    fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        proc = subprocess.run(["nice", "-n", "10", "tar", "--numeric-owner", "-czf", "-", "-C", target.data_dir, "."],
                              stdout=fh, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        problems.append(f"tar of {target.data_dir} failed: {proc.stderr.strip()[-200:]}")
    listing = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True)
    if listing.returncode != 0:
        problems.append(f"the data archive cannot be listed: {listing.stderr.strip()[-200:]}")
    files.append(("data", archive))
    return len(listing.stdout.splitlines())


# --------------------------------------------------------------------------- a run


def run(cfg: Config, targets: list[Target], kind: str, scheduled: bool = False, wait: float = 3600,
        out=print) -> bool:
    """Back up `targets` (several at a time, at most `parallel`); prune only when every
    one verified; drill when one is due. True when everything succeeded."""
    started = store.now()
    results: dict[str, store.Backup | None] = {}

    def one(target: Target):
        try:
            with locked(target.lock, wait, target.label):
                b = backup(cfg, target, kind)
            _note_backup(cfg, target, b, None)
            if b.verified:
                out(f"{target.label}: backup {b.path} verified ({contents(b)}, {_size(b.size)})")
            else:
                out(f"{target.label}: backup {b.path} FAILED verification: {b.manifest['error']}")
            return target, b
        except AgentError as exc:
            _note_backup(cfg, target, None, str(exc))
            out(f"{target.label}: {exc}")
            return target, None

    with ThreadPoolExecutor(max_workers=cfg.parallel) as pool:
        for target, b in pool.map(one, targets):
            results[target.key] = b
    ok = all(b is not None and b.verified for b in results.values())
    if ok:
        for target in targets:
            with locked(target.lock, wait, target.label):
                gone = prune(cfg, target)
            if gone:
                out(f"{target.label}: pruned {len(gone)} backup(s) beyond the policy "
                    f"({cfg.keep_daily} daily, {cfg.keep_weekly} weekly)")
    else:
        out("not pruning: at least one backup failed")
    copied = True
    if cfg.copy is not None:
        for target in targets:
            if results.get(target.key) is not None and results[target.key].verified:
                with locked(target.lock, wait, target.label):
                    copied = copy_off(cfg, target, out) and copied
    drilled = None
    if scheduled and ok and drill_due(cfg):
        drilled = drill(cfg, out=out)

    def update(state):
        state["last_run"] = {"started": store.iso(started), "finished": store.iso(store.now()), "kind": kind,
                             "ok": ok, "targets": len(targets),
                             "failed": sorted(k for k, b in results.items() if not (b and b.verified)),
                             "copied": copied}

    record(cfg, update)
    return ok and copied and drilled is not False


def copy_off(cfg: Config, target: Target, out=print) -> bool:
    """Send the target's verified backups to backups.copy_to and prune there (caller holds the
    target's lock). A failure is recorded and reported; the local backups stay good."""
    remote = cfg.copy
    assert remote is not None
    try:
        done = offsite.sync(remote, cfg.root, target.slice_id, cfg.keep_daily, cfg.keep_weekly)
        result = {"at": store.iso(store.now()), "to": remote.url, "ok": True, "error": None, **done}
        out(f"{target.label}: copied to {remote.url}: {len(done['sent'])} sent, {len(done['pruned'])} pruned there, "
            f"{done['there']} kept there")
    except offsite.CopyError as exc:
        result = {"at": store.iso(store.now()), "to": remote.url, "ok": False, "error": str(exc)[:300]}
        out(f"{target.label}: copy to {remote.url} FAILED: {exc} (the local backup is good)")

    def update(state):
        where = state if target.slice_id is None else state["slices"]
        where.setdefault(target.key, {})["copy"] = result

    record(cfg, update)
    return result["ok"]


def prune(cfg: Config, target: Target) -> list[store.Backup]:
    """Remove what the retention policy no longer keeps (caller holds the target's lock)."""
    gone = store.to_prune(store.listing(cfg.root, target.slice_id), cfg.keep_daily, cfg.keep_weekly)
    for b in gone:
        shutil.rmtree(b.path)
    return gone


def contents(b: store.Backup) -> str:
    """What a backup holds, for its one line: '19 tables', 'data directory only: 12 entries'."""
    m = b.manifest
    if m.get("database") is None:
        return f"data directory only: {m.get('data_entries') or 0} entries"
    return f"{len(m['tables'])} tables" + ("" if m.get("data_dir") else ", database only")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# --------------------------------------------------------------------------- drill


def drill_due(cfg: Config) -> bool:
    if cfg.cluster is None:
        return False  # drills restore dumps: the database host's
    every = DRILL_EVERY.get(cfg.drill)
    if every is None:
        return False
    last = read_state(cfg).get("last_drill", {}).get("at")
    return last is None or store.now() - store.parse_time(last) >= every - dt.timedelta(hours=1)


def drill(cfg: Config, slice_id: int | None = None, out=print, verbose: bool = False) -> bool:
    """Restore one slice's latest verified backup into a scratch database and compare its row
    counts with the manifest's. Without `slice_id`: the slice drilled longest ago.
    `verbose`: one line per table (restored rows against the manifest's)."""
    if cfg.cluster is None:
        raise AgentError("drills restore database dumps: run them on the database host")
    state = read_state(cfg)
    candidates = [t for t in cfg.backed_up() if store.latest_verified(store.listing(cfg.root, t.slice_id))]
    if slice_id is not None:
        candidates = [cfg.slice(slice_id)]
    if not candidates:
        out("drill: no slice has a verified backup yet")
        return True
    target = min(candidates, key=lambda t: state["slices"].get(t.key, {}).get("last_drill", {}).get("at", ""))
    b = store.latest_verified(store.listing(cfg.root, target.slice_id))
    if b is None:
        raise AgentError(f"{target.label} has no verified backup to drill")
    scratch = f"sliceops_drill_{cfg.instance}"
    want = b.manifest["tables"]
    got: dict = {}
    problems = store.checksum_problems(b)
    if not problems:
        try:
            cfg.cluster.recreate(scratch, "postgres")
            cfg.cluster.restore(b.file("database"), scratch, keep_owner=False)
            got = cfg.cluster.counts(scratch)
            problems = mismatches(want, got)
        except PgError as exc:
            problems = [str(exc)]
        finally:
            with contextlib.suppress(PgError):
                cfg.cluster.drop(scratch)
    result = {"at": store.iso(store.now()), "slice": target.slice_id, "backup": str(b.path),
              "ok": not problems, "problems": problems[:10]}

    def update(state):
        state["last_drill"] = result
        state["slices"].setdefault(target.key, {})["last_drill"] = result

    record(cfg, update)
    out(f"drill: {target.label}: backup {b.path} (taken {b.manifest['started']}) restored into a scratch database")
    if verbose and got:
        for line in comparison(want, got):
            out(line)
    if problems:
        out(f"drill: {target.label}: FAIL: {'; '.join(problems[:3])}")
    else:
        out(f"drill: {target.label}: PASS: row counts of {len(want)} tables match the manifest")
    return not problems


def mismatches(want: dict, got: dict) -> list[str]:
    """Tables whose restored row count differs from the manifest's (or that are missing or extra)."""
    return [f"{t}: {got.get(t, 'no table')} rows restored, manifest {want.get(t, 'no table')}"
            for t in sorted(set(want) | set(got)) if got.get(t) != want.get(t)]


def comparison(want: dict, got: dict) -> list[str]:
    """One line per table: restored rows, the manifest's, ok or MISMATCH."""
    tables = sorted(set(want) | set(got))
    width = max((len(t) for t in tables), default=5)
    lines = [f"  {'table'.ljust(width)}  {'restored':>9}  {'manifest':>9}"]
    for t in tables:
        a, b = got.get(t, "-"), want.get(t, "-")
        lines.append(f"  {t.ljust(width)}  {a!s:>9}  {b!s:>9}  {'ok' if a == b else 'MISMATCH'}")
    return lines


# --------------------------------------------------------------------------- restore


def choose(cfg: Config, source: Target, at: dt.datetime | None, from_path: str | None) -> store.Backup:
    """The backup a restore uses: the given folder, or the latest verified one at or before `at`;
    refused when its files do not match its manifest."""
    if from_path:
        p = Path(from_path)
        folder = p if p.is_dir() else p.parent
        b = store.read(folder)
        if b is None:
            raise AgentError(f"{from_path}: not a backup (no readable {store.MANIFEST} beside it)")
        if (b.manifest.get("slice") is None) != (source.slice_id is None):
            raise AgentError(f"{from_path}: a backup of {'the gateway' if b.manifest.get('slice') is None else 'a slice'}, "
                             f"not of {source.label}")
        if not b.verified:
            raise AgentError(f"{from_path}: this backup failed verification ({b.manifest.get('error')}); refused")
    else:
        b = store.latest_verified(store.listing(cfg.root, source.slice_id), at)
        if b is None:
            when = f" at or before {store.iso(at)}" if at else ""
            raise AgentError(f"{source.label} has no verified backup{when} in {cfg.root}")
    problems = store.checksum_problems(b)
    if problems:
        raise AgentError(f"refused: {problems[0]} (the backup is corrupt or was altered)")
    return b


def restore(cfg: Config, source: Target, dest: Target, at=None, from_path=None, wait: float = 600,
            out=print) -> store.Backup:
    """Replace `dest`'s database (and data directory) with a backup of `source`: its current
    state is backed up first, its container stopped. The deploy that follows re-grants,
    stamps, migrates forward and starts it again."""
    if dest.slice_id is not None and dest.status not in ("active", "suspended"):
        raise AgentError(f"{dest.label} is marked {dest.status}; restore into an active or suspended slice")
    locks = sorted({source.lock, dest.lock})
    with contextlib.ExitStack() as stack:
        for path in locks:
            stack.enter_context(locked(path, wait, dest.label))
        b = choose(cfg, source, at, from_path)
        if (dest.database is not None and cfg.cluster.exists(dest.database)) or \
                (dest.database is None and dest.data_dir and os.path.isdir(dest.data_dir)):
            before = backup(cfg, dest, "pre-restore")
            _note_backup(cfg, dest, before, None)
            if not before.verified:
                raise AgentError(f"{dest.label}: the backup of its current state failed verification "
                                 f"({before.manifest['error']}); nothing restored")
            out(f"{dest.label}: current state saved in {before.path}")
        if dest.container:
            subprocess.run(["docker", "stop", "-t", "20", dest.container], capture_output=True)
        if dest.database is not None:
            if b.file("database") is None:
                raise AgentError(f"{b.path} holds no database dump (a data-directory backup); nothing restored")
            try:
                cfg.cluster.recreate(dest.database, dest.owner)
                cfg.cluster.restore(b.file("database"), dest.database)
            except PgError as exc:
                raise AgentError(f"{dest.label}: {exc}") from None
        if dest.data_dir:
            _restore_data(b.file("data"), Path(dest.data_dir))
        out(f"{dest.label}: restored from {b.path} (taken {b.manifest['started']}, "
            f"migration {b.manifest.get('migration') or 'none'})")
    return b


def _restore_data(archive: Path | None, data_dir: Path) -> None:
    """Replace the data directory's content with the archive's, in place: the directory itself
    may be a btrfs subvolume carrying the slice's disk quota (or a mount point), which must
    stay (a rename across subvolumes fails, and a new plain directory would have no quota).
    The current content is in the pre-restore backup; the archive was checksummed and
    listed, so what can still fail here is space (then the error says so)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for entry in data_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if archive is None:
        return
    # "./" in the archive carries the directory's own owner and mode; --same-owner keeps uids.
    proc = subprocess.run(["tar", "--numeric-owner", "--same-owner", "-xpzf", str(archive), "-C", str(data_dir)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise AgentError(f"extracting {archive} into {data_dir} failed: {proc.stderr.strip()[-200:]}")
