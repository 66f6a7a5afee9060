"""Apply numbered migration files for schema tests, the way the runner will: in order, in one transaction.

This is a test stand-in, not the migration runner: no ledger, no role switch, no lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import psycopg

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def migration_files(kind: str, upto: str | None = None) -> list[Path]:
    """sql/<kind>/NNNN_*.sql in order; upto='0011' stops after that number."""
    files = sorted((SQL_DIR / kind).glob("[0-9][0-9][0-9][0-9]_*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations in {SQL_DIR / kind}")
    if upto is not None:
        files = [f for f in files if f.name[:4] <= upto]
    return files


def apply_files(dsn: str, files: Iterable[Path]) -> None:
    """Run every file in one transaction, so a failing file leaves nothing behind."""
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            for path in files:
                try:
                    # No parameters, so psycopg sends the whole file in one
                    # simple-protocol query and multiple statements are allowed.
                    conn.execute(path.read_text())
                except psycopg.Error as exc:
                    raise RuntimeError(f"{path.name}: {exc}") from exc
