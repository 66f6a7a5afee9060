"""Versioned SQL migrations: discover the numbered files and plan what a database still needs.

A database's ledger (`sliceops.schema_migrations`) records each applied file's sha256.
Planning is pure: given the files and a ledger it returns the pending files, and refuses
loudly when history no longer matches the files (a changed or vanished applied file, or a
new file numbered below one already applied).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sliceops.errors import MigrationError
from sliceops.paths import ROOT

# SLICEOPS_SQL_DIR lets tests (and operators trying a migration) point at another tree.
SQL_DIR = Path(os.environ.get("SLICEOPS_SQL_DIR") or ROOT / "sql")
_NAME = re.compile(r"^(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    kind: str  # "gateway" or "slice": the folder under sql/
    version: str
    name: str
    checksum: str

    @property
    def filename(self) -> str:
        return f"{self.version}_{self.name}.sql"


def discover(kind: str, root: Path = SQL_DIR) -> tuple[Migration, ...]:
    """The migrations of one kind (sql/<kind>/), in order."""
    return discover_folder(kind, root / kind)


def _files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """{version: path} of the folder's migration files, and one line per misnamed or
    duplicate-numbered .sql file (other files are notes, not migrations)."""
    found: dict[str, Path] = {}
    wrong = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _NAME.match(path.name)
        if not match:
            wrong.append(f"{path}: migration files are named NNNN_lowercase_name.sql")
        elif match["version"] in found:
            wrong.append(f"{path}: version {match['version']} is also {found[match['version']].name}")
        else:
            found[match["version"]] = path
    return found, wrong


def problems(folder: Path) -> list[str]:
    """Why `folder` cannot hold an inventory's migrations ([] when it can)."""
    if not folder.is_dir():
        return [f"{folder} is not a folder" if folder.exists() else f"{folder} does not exist"]
    found, wrong = _files(folder)
    return wrong or ([] if found else [f"{folder} holds no NNNN_name.sql migration"])


@functools.cache
def discover_folder(kind: str, folder: Path) -> tuple[Migration, ...]:
    """The migrations in `folder`, in order; a misnamed or duplicate-numbered file is an error."""
    found, wrong = _files(folder)
    if wrong:
        raise MigrationError(wrong[0])
    return tuple(
        Migration(kind, v, _NAME.match(found[v].name)["name"], hashlib.sha256(found[v].read_bytes()).hexdigest())
        for v in sorted(found)
    )


def pending(database: str, available: tuple[Migration, ...], applied: dict[str, str]) -> list[Migration]:
    """What `database` still needs, given its ledger {version: checksum}."""
    by_version = {m.version: m for m in available}
    for version, checksum in sorted(applied.items()):
        known = by_version.get(version)
        if known is None:
            raise MigrationError(f"{database}: applied migration {version} has no file in sql/ any more")
        if known.checksum != checksum:
            raise MigrationError(
                f"{database}: {known.filename} changed after it was applied "
                f"(ledger sha256 {checksum[:12]}, file {known.checksum[:12]}); add a new migration instead"
            )
    todo = [m for m in available if m.version not in applied]
    newest_applied = max(applied, default="")
    late = [m.filename for m in todo if m.version < newest_applied]
    if late:
        raise MigrationError(
            f"{database}: {', '.join(late)} numbered below the applied {newest_applied}; renumber it after it"
        )
    return todo
