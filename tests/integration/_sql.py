"""SQL helpers for schema tests: apply migration files in order in one transaction, and read plans.

apply_files is a test stand-in, not the migration runner: no ledger, no role switch, no lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

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


def plan_nodes(node: dict) -> Iterator[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def format_plan(node: dict, depth: int = 0) -> str:
    """A compact, readable rendering of a JSON plan: what ran, on what, how many rows, how many buffers."""
    where = ""
    if "Index Name" in node:
        where = f" using {node['Index Name']}"
    if "Relation Name" in node:
        where += f" on {node['Relation Name']}"
    rows = node.get("Actual Rows", node.get("Plan Rows"))
    loops = node.get("Actual Loops", 1)
    buffers = node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
    line = f"{'  ' * depth}-> {node['Node Type']}{where}  (rows={rows} loops={loops} buffers={buffers})"
    return "\n".join([line, *(format_plan(child, depth + 1) for child in node.get("Plans", []))])
