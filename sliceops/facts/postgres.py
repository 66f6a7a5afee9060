"""Facts about the PostgreSQL tier, each read in one process on the target whatever the fleet size.

`PgCluster` says whether the cluster exists and runs. `PgFleet` reads roles, databases,
the migration ledger and grants of every database whose stamp is not current, the gateway's
slice rows and which secret files exist.

The stamp: a slice database's last migration run ends by writing
`COMMENT ON DATABASE … IS 'sliceops <stamp> <tenant role oid>'`, where <stamp> digests the
migration files and grants the deploy would converge it to. Database comments live in a
shared catalog, so one query over `pg_database` tells which databases are already where
the deploy wants them; only the others are connected to. Any DDL or GRANT in the database,
and any change to its ledger, clears the comment (an event trigger and a ledger trigger the
migration run installs), so a hand-made drift is read and converged by the next deploy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pyinfra.api import FactBase

from sliceops import psql
from sliceops.errors import RemoteStateError
from sliceops.operations.postgres.stamps import stamp_comment
from sliceops.shell import quote


# A slice database or the template whose comment is what the deploy would stamp it with.
_STAMPABLE = "(d.datname ~ ('^' || :'slice_prefix' || '[0-9]+$') OR d.datname = :'template_db')"
_CURRENT = (
    f"{_STAMPABLE} AND shobj_description(d.oid, 'pg_database') IS NOT DISTINCT FROM "
    + stamp_comment("'sliceops ' || CASE WHEN d.datname = :'template_db' THEN :'template_stamp' "
                    "ELSE :'slice_stamp' END || ' '", "d.datname")
)

_STAMPED_SQL = f"""
SELECT json_build_object('kind', 'stamped', 'rows', coalesce(json_agg(d.datname ORDER BY d.datname), '[]'))
FROM pg_database d WHERE {_CURRENT};
"""

# monitor_ok (in the gateway's block): a CASE, not AND, so that has_function_privilege is
# never asked about sliceops.record_database_sizes() before it exists (it raises then).
# psql meta-commands generated per database: the ledger and the slice registry are read only
# where their table exists, so a half-built database reads as such, not as an error. The
# gateway is always read; a slice database or the template only when not current.
_PER_DB_SQL = r"""
SELECT format($tpl$\c %1$I
SELECT to_regclass('sliceops.schema_migrations') IS NOT NULL AS has_ledger,
       to_regclass('gateway.slices') IS NOT NULL AS has_slices \gset
\if :has_ledger
SELECT json_build_object('kind', 'ledger', 'db', current_database(), 'rows',
  (SELECT coalesce(json_agg(json_build_array(version, checksum) ORDER BY version), '[]')
   FROM sliceops.schema_migrations));
\endif
\if :has_slices
SELECT json_build_object('kind', 'slices', 'db', current_database(), 'rows',
  (SELECT coalesce(json_agg(json_build_array(id, port, status, user_id, to_jsonb(s)->>'host') ORDER BY id), '[]')
   FROM gateway.slices s), 'monitor_ok',
  CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %2$L) THEN false
       WHEN to_regprocedure('sliceops.record_database_sizes()') IS NULL THEN false
       ELSE has_table_privilege(%2$L, 'gateway.telemetry', 'INSERT,DELETE')
            AND has_function_privilege(%2$L, 'sliceops.record_database_sizes()', 'EXECUTE') END);
\endif
$tpl$, datname, :'monitor_role')
FROM pg_database d
WHERE datname = :'gateway_db' OR (""" + _STAMPABLE + " AND NOT (" + _CURRENT + r"""))
ORDER BY datname;
"""

_FLEET_SQL = r"""
SELECT json_build_object('kind', 'roles', 'rows', coalesce(json_agg(json_build_array(
  rolname, rolcanlogin, rolpassword IS NOT NULL, rolconnlimit)), '[]'))
FROM pg_authid WHERE rolname !~ '^pg_';
SELECT json_build_object('kind', 'databases', 'rows', coalesce(json_agg(json_build_array(
  d.datname, pg_get_userbyid(d.datdba),
  has_database_privilege('public', d.oid, 'CONNECT'),
  (SELECT coalesce(json_agg(pg_get_userbyid(a.grantee)), '[]') FROM aclexplode(d.datacl) a
   WHERE a.privilege_type = 'CONNECT' AND a.grantee <> 0 AND a.grantee <> d.datdba)
  ) ORDER BY d.datname), '[]'))
FROM pg_database d WHERE NOT d.datistemplate OR d.datname = 'template1';
""" + _STAMPED_SQL + r"""
\o :out
""" + _PER_DB_SQL + r"""
\o
"""

# A psql that fails says so on a line of its own, which `parse` turns into an error: a state
# read half-way must never pass for a cluster with nothing in it.
_FAILED = 'echo "PSQL_FAILED $(head -c 300 "$e" | tr -s "\\n" " ")"'

# The per-database reads run in this many psql sessions at once: a fleet's cost is mostly
# one backend start per database, which the cores share. A database block starts at its
# `\c` line; awk deals whole blocks round-robin, so the session count never grows with N.
READERS = 4


def _cluster_running(version: int, cluster: str) -> str:
    return f"pg_ctlcluster {int(version)} {quote(cluster)} status >/dev/null 2>&1"


class PgCluster(FactBase):
    """Whether PostgreSQL <version> is installed and cluster <name> exists and runs.

    Returns {"installed": bool, "exists": bool, "running": bool, "port": int | None}.
    """

    def command(self, version: int, cluster: str) -> str:
        return (
            f"if [ -x /usr/lib/postgresql/{int(version)}/bin/postgres ]; then echo installed; fi; "
            f"if command -v pg_lsclusters >/dev/null 2>&1; then pg_lsclusters -h 2>/dev/null "
            f"| awk -v v={int(version)} -v c={quote(cluster)} "
            "'$1 == v && $2 == c {print \"cluster\", $3, $4}'; fi; "
            "true"
        )

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> dict:
        state = {"installed": False, "exists": False, "running": False, "port": None}
        for line in lines:
            words = line.split()
            if words == ["installed"]:
                state["installed"] = True
            elif words[:1] == ["cluster"] and len(words) >= 3:
                # pg_lsclusters' status column: "online", "down", "online,recovery" ...
                state.update(exists=True, port=int(words[1]), running=words[2].startswith("online"))
        return state

    def default(self):
        return self.parse([])


# The parts of what PgFleet reads, as subjects of the fact cache (sliceops/factcache.py): an
# operation says which it touches, a step says which it reads, so adding a role does not make
# the databases step read every database again.
ROLES = "postgres roles"  # Fleet.roles, .secrets, .env_urls
DATABASES = "postgres databases"  # Fleet.databases, .stamped, .ledgers, .monitor_ok
ROWS = "gateway rows"  # Fleet.slices
FLEET = frozenset({ROLES, DATABASES, ROWS})


@dataclass
class Fleet:
    """What `PgFleet` read. A cluster that is not running (nothing could be read yet) is an
    empty fleet with `running` False: to a planner, a cluster with nothing in it.

    roles {name: {"login", "password", "connlimit"}}; databases {name: {"owner",
    "public_connect", "connect"}}; ledgers {database: {version: checksum}}; slices (the
    gateway's rows) {id: {"port", "status", "user_id", "host"}}, None while gateway.slices does not
    exist; monitor_ok: the monitor's grants are in place; secrets: the file names in the
    secrets directory; stamped: databases whose stamp is current (their ledger was not read);
    env_urls: each credentials file's DATABASE_URL with the password shown as ***.
    """

    running: bool = True
    roles: dict[str, dict] = field(default_factory=dict)
    databases: dict[str, dict] = field(default_factory=dict)
    ledgers: dict[str, dict[str, str]] = field(default_factory=dict)
    slices: dict[int, dict] | None = None
    monitor_ok: bool = False
    secrets: list[str] = field(default_factory=list)
    stamped: list[str] = field(default_factory=list)
    env_urls: dict[str, str] = field(default_factory=dict)

    @property
    def slice_rows(self) -> dict[int, dict]:
        """The gateway's rows, {} while its table does not exist."""
        return self.slices or {}


# Each file's first DATABASE_URL with the password between the user's ':' and the '@' shown as
# ***, in one awk for every file (find -exec +): a sed and a head per file cost 1.5 s at 200.
_ENV_URLS_AWK = r"""
FNR == 1 { if (name != "") print "ENVURL", name, url; name = FILENAME; sub(/.*\//, "", name); url = ""; seen = 0 }
!seen && match($0, /^DATABASE_URL=[a-z]*:\/\/[^:@\/]*:[^@]*@/) {
  s = substr($0, 14, RLENGTH - 13); i = index(s, "://"); rest = substr(s, i + 3)
  url = substr(s, 1, i + 2) substr(rest, 1, index(rest, ":") - 1) ":***@" substr($0, RLENGTH + 1); seen = 1
}
END { if (name != "") print "ENVURL", name, url }
"""


def env_urls_command(secrets_dir: str) -> str:
    """Shell printing `ENVURL <file> <url>` for each credentials file, its DATABASE_URL with
    the password shown as *** (the password never leaves the target): the roles step rewrites
    a file whose host, port or TLS options are not the inventory's."""
    return (
        f"find {quote(secrets_dir)} -maxdepth 1 -name '*.env' -type f "
        f"-exec awk {quote(_ENV_URLS_AWK)} {{}} + 2>/dev/null"
    )


class PgFleet(FactBase):
    """Everything the deploy converges in PostgreSQL, read in one psql session.

    Returns a `Fleet` (empty, `running` False, when the cluster is not running).
    """

    def command(
        self, version: int, cluster: str, port: int, gateway_db: str, secrets_dir: str,
        template_db: str, slice_stamp: str, template_stamp: str, slice_prefix: str, monitor_role: str,
    ) -> str:
        variables = {
            "gateway_db": gateway_db, "template_db": template_db, "slice_stamp": slice_stamp,
            "template_stamp": template_stamp, "slice_prefix": slice_prefix, "monitor_role": monitor_role,
        }
        # The temp paths are the shell's ($f, $p), so they are added after the quoted words.
        first = psql.script(port, _FLEET_SQL, variables=variables, tuples=True, redirect='-v out="$f" 2>"$e"')
        part = psql.command(port, tuples=True)
        return (
            f"if ! {_cluster_running(version, cluster)}; then echo DOWN; exit 0; fi; "
            f"echo SECRETS $(ls {quote(secrets_dir)} 2>/dev/null); "
            f"{env_urls_command(secrets_dir)}; "
            f"d=$(mktemp -d) && chown postgres \"$d\" && f=\"$d/all.sql\" && e=\"$d/err\" && "
            f"{{ {first}\n}} || {_FAILED}\n"
            f"if [ -s \"$f\" ]; then "
            f"awk -v d=\"$d\" '/^\\\\c /{{i=(i+1)%{READERS}}} {{print > (d \"/part\" i \".sql\")}}' \"$f\"; "
            f"chown postgres \"$d\"/part*.sql; "
            f"for p in \"$d\"/part*.sql; do "
            f"( e=\"$p.err\"; {part} -f \"$p\" "
            f">\"$p.out\" 2>\"$e\" || {_FAILED} >>\"$p.out\" ) & done; wait; "
            f"cat \"$d\"/part*.sql.out; fi; "
            f"rm -rf \"$d\"; true"
        )

    def process(self, output):
        return self.parse(output)

    def default(self):
        return Fleet(running=False)

    @staticmethod
    def parse(lines: list[str]) -> Fleet:
        if not lines or lines[0].strip() == "DOWN":
            return Fleet(running=False)
        fleet = Fleet()
        for line in lines:
            if line.startswith("SECRETS"):
                fleet.secrets = line.split()[1:]
                continue
            if line.startswith("ENVURL "):
                _, name, *url = line.rstrip("\n").split(" ", 2)
                fleet.env_urls[name] = url[0] if url else ""
                continue
            if line.startswith("PSQL_FAILED"):
                raise RemoteStateError(f"reading the PostgreSQL state failed: {line[12:].strip() or 'psql exited non-zero'}")
            if not line.startswith("{"):
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise RemoteStateError(f"unreadable PostgreSQL state line: {line[:120]!r}") from exc
            kind = row["kind"]
            if kind == "roles":
                fleet.roles = {
                    n: {"login": lg, "password": pw, "connlimit": limit} for n, lg, pw, limit in row["rows"]
                }
            elif kind == "databases":
                fleet.databases = {
                    n: {"owner": o, "public_connect": pc, "connect": sorted(c)} for n, o, pc, c in row["rows"]
                }
            elif kind == "ledger":
                fleet.ledgers[row["db"]] = {v: c for v, c in row["rows"]}
            elif kind == "stamped":
                fleet.stamped = sorted(row["rows"])
            elif kind == "slices":
                # host: gateway migration 0004's column (read through to_jsonb, so a gateway
                # not yet migrated reads None, as a row registered before it does).
                fleet.slices = {
                    i: {"port": p, "status": s, "user_id": u, "host": (rest or [None])[0]}
                    for i, p, s, u, *rest in row["rows"]
                }
                fleet.monitor_ok = bool(row["monitor_ok"])
        return fleet
