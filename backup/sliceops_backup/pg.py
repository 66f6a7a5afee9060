"""The PostgreSQL side of a backup: dump, count and verify in one snapshot, restore, drop.

Everything runs as the cluster's superuser through `runuser -u postgres`; SQL travels on
psql's standard input and names are quoted here, never pasted into a shell. Dumps are read
and written through file descriptors root opened, so the files stay root-only (0600).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Below the monitor and the slices: a nightly dump must not starve telemetry or tenants.
GENTLE = ["nice", "-n", "10", "ionice", "-c2", "-n7"]

COUNT_SQL = """
SELECT n.nspname || '.' || c.relname || '|' ||
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
   false, true, '')))[1]::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1;
"""

LEVEL_SQL = """
SELECT CASE WHEN to_regclass('sliceops.schema_migrations') IS NULL THEN '|'
  ELSE (SELECT coalesce(max(version || '|' || name), '|') FROM sliceops.schema_migrations) END;
"""


class PgError(Exception):
    """A PostgreSQL client tool failed; the message is its last line of stderr."""


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Cluster:
    version: int
    name: str
    port: int

    def env(self) -> dict:
        # pg_wrapper picks the client binaries of this cluster's version.
        return dict(os.environ, PGCLUSTER=f"{self.version}/{self.name}", PGPORT=str(self.port))

    def tool(self, name: str, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", name, *args]

    def psql(self, sql: str, database: str = "postgres") -> list[str]:
        """Run SQL as the superuser; return its output lines (unaligned, tuples only)."""
        cmd = self.tool("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database)
        proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, env=self.env())
        if proc.returncode != 0:
            raise PgError(_last_line(proc.stderr) or f"psql exited {proc.returncode}")
        return [line for line in proc.stdout.splitlines() if line]

    def exists(self, database: str) -> bool:
        return self.psql(f"SELECT 1 FROM pg_database WHERE datname = {literal(database)};") == ["1"]

    def dump(self, database: str, out: Path) -> tuple[dict, str]:
        """`pg_dump -Fc` of `database` into `out`; returns (row count per table, migration
        level), read in the very snapshot the dump saw, so a drill can compare exactly."""
        session = subprocess.Popen(
            self.tool("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(),
        )
        try:
            snapshot = _ask(session, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();")[0]
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                proc = subprocess.run(
                    GENTLE + self.tool("pg_dump", "-Fc", f"--snapshot={snapshot}", "-d", database),
                    stdout=fh, stderr=subprocess.PIPE, text=True, env=self.env(),
                )
            if proc.returncode != 0:
                raise PgError(f"pg_dump {database}: {_last_line(proc.stderr)}")
            counts = {}
            for line in _ask(session, COUNT_SQL):
                table, _, n = line.rpartition("|")
                counts[table] = int(n)
            level = _ask(session, LEVEL_SQL)[0].split("|", 1)
            _ask(session, "COMMIT;")
        finally:
            if session.stdin:
                session.stdin.close()
            session.wait(timeout=60)
        return counts, " ".join(p for p in level if p)

    def toc(self, dump: Path) -> list[str]:
        """`pg_restore --list`: the dump's table of contents (raises if it is unreadable)."""
        with dump.open("rb") as fh:
            proc = subprocess.run(["pg_restore", "--list"], stdin=fh, capture_output=True, text=True, env=self.env())
        if proc.returncode != 0:
            raise PgError(f"pg_restore --list {dump.name}: {_last_line(proc.stderr)}")
        return [line for line in proc.stdout.splitlines() if line and not line.startswith(";")]

    def recreate(self, database: str, owner: str) -> None:
        """Drop `database` (closing its sessions) and create it empty, owned by `owner`."""
        self.psql(
            f"DROP DATABASE IF EXISTS {ident(database)} WITH (FORCE);\n"
            f"CREATE DATABASE {ident(database)} OWNER {ident(owner)} TEMPLATE template0;\n"
            f"REVOKE CONNECT, TEMPORARY ON DATABASE {ident(database)} FROM PUBLIC;\n"
        )

    def drop(self, database: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {ident(database)} WITH (FORCE);")

    def restore(self, dump: Path, database: str, keep_owner: bool = True) -> None:
        """pg_restore into an empty database, without the dump's grants: the deploy re-grants
        the tenant that owns the database now (which is another one after `--as`)."""
        args = ["--no-acl", "--exit-on-error", "-d", database] + ([] if keep_owner else ["--no-owner"])
        with dump.open("rb") as fh:
            proc = subprocess.run(GENTLE + self.tool("pg_restore", *args), stdin=fh, capture_output=True,
                                  text=True, env=self.env())
        if proc.returncode != 0:
            raise PgError(f"pg_restore into {database}: {_last_line(proc.stderr)}")

    def counts(self, database: str) -> dict:
        out = {}
        for line in self.psql(COUNT_SQL, database):
            table, _, n = line.rpartition("|")
            out[table] = int(n)
        return out


def _ask(session: subprocess.Popen, sql: str) -> list[str]:
    """Send SQL to a running psql and read its answer up to a marker line."""
    marker = "__sliceops_done__"
    assert session.stdin and session.stdout
    session.stdin.write(f"{sql}\n\\echo {marker}\n")
    session.stdin.flush()
    lines = []
    while True:
        line = session.stdout.readline()
        if not line:
            err = session.stderr.read() if session.stderr else ""
            raise PgError(_last_line(err) or "psql ended unexpectedly")
        line = line.rstrip("\n")
        if line == marker:
            return [x for x in lines if x]
        lines.append(line)


def _last_line(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else ""
