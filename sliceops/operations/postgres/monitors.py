"""Slice hosts' monitors in the gateway database: one login role per slice host that is not
the database host (whose monitor is `sliceops_monitor`, peer authentication), its grants,
and its row in sliceops_fleet.monitor_hosts, which row-level security (sql/gateway/0005) reads to
let it see and write only the slices on its host.

Its password is made on its slice host and never leaves it: the database host receives only
the SCRAM-SHA-256 verifier computed there (`facts/monitor_credential.py`), given to
PostgreSQL on psql's standard input."""

from __future__ import annotations

import re

from pyinfra import host, state
from pyinfra.api import StringCommand, operation

from sliceops import plan, psql
from sliceops.facts.monitor_credential import HostMonitors, MonitorVerifier
from sliceops.names import host_monitor_role
from sliceops.operations.postgres.grants import monitor_grants
from sliceops.operations.peers import peer_fact, this_host
from sliceops.operations.util import as_script
from sliceops.shell import command, ident, literal, quote

_VERIFIER = re.compile(r"^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


def desired_host_monitors(inv) -> dict[str, str]:
    """{role: host} for every slice host but the database host ({} on one host)."""
    db = inv.database_host.name
    return {host_monitor_role(h.name): h.name for h in inv.slice_hosts if h.name != db}


def host_monitors_sql(desired: dict[str, str], mapped: dict[str, str], stale_verifier: list[str],
                      granted: list[str] | None = None, database: str = "wank_saas") -> tuple[str, list[str]]:
    """(SQL for the gateway database, the roles whose verifier it sets from psql variables
    pw0, pw1 ... in that order). `mapped`: sliceops_fleet.monitor_hosts as it is; `stale_verifier`:
    desired roles whose stored verifier is not the one their slice host computed. A role
    whose host left the inventory loses its row (so RLS would give it nothing) and LOGIN.
    `granted`: the roles that hold CONNECT on the gateway `database` (PUBLIC's is revoked there)
    and the grants below (None: not read); the others are granted again."""
    sql: list[str] = []
    for role, host_name in sorted(desired.items()):
        if mapped.get(role) == host_name and role not in stale_verifier and (granted is None or role in granted):
            continue
        sql += [
            f"SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(role)}) AS missing \\gset",
            f"\\if :missing\nCREATE ROLE {ident(role)} NOLOGIN;\n\\endif",
            # No DELETE: the prune is the database host monitor's.
            f"GRANT CONNECT ON DATABASE {ident(database)} TO {ident(role)};",
            monitor_grants(role, prune=False),
            f"INSERT INTO sliceops_fleet.monitor_hosts (role, host) VALUES ({literal(role)}, {literal(host_name)}) "
            f"ON CONFLICT (role) DO UPDATE SET host = EXCLUDED.host;",
        ]
    verifiers = sorted(r for r in stale_verifier if r in desired)
    for i, role in enumerate(verifiers):
        sql.append(f"ALTER ROLE {ident(role)} WITH LOGIN PASSWORD :'pw{i}';")
    for role in sorted(set(mapped) - set(desired)):
        sql += [f"DELETE FROM sliceops_fleet.monitor_hosts WHERE role = {literal(role)};",
                f"ALTER ROLE {ident(role)} NOLOGIN;"]
    return "\n".join(sql), verifiers


def verifier_prelude(verifiers: list[str], var: str = "pw") -> str:
    """psql `\\set <var><i> '<verifier>'` lines (a verifier holds base64, '$' and ':' only)."""
    for v in verifiers:
        if not _VERIFIER.match(v):
            raise ValueError("not a SCRAM-SHA-256 verifier")
    return "".join(f"\\set {var}{i} '{v}'\n" for i, v in enumerate(verifiers))


@operation(is_idempotent=True)
def credential(inv):
    """On a slice host that is not the database host: the monitor's password, made here,
    readable by the monitor's user alone (its SCRAM verifier is all the database host gets)."""
    if not inv.multi_host or this_host(inv) == inv.database_host.name:
        host.noop("the database host's monitor logs in by peer authentication")
        return
    if host.get_fact(MonitorVerifier, path=inv.monitor_password_file) is not None:
        host.noop(f"{inv.monitor_password_file} exists")
        return
    yield StringCommand(credential_command(inv.etc_dir, inv.monitor_password_file, inv.monitor_user))


def credential_command(etc_dir: str, path: str, user: str) -> str:
    """Shell making the monitor's password at `path` (32 alphanumerics, kept if present),
    `user`'s alone."""
    return "\n".join([
        "set -e",
        "umask 077",
        command("install", "-d", "-m", "0755", "/etc/sliceops", etc_dir),
        f"[ -s {quote(path)} ] || tr -dc A-Za-z0-9 </dev/urandom | head -c 32 >{quote(path)}",
        command("chown", f"{user}:{user}", path),
        command("chmod", "0400", path),
    ])


@operation(is_idempotent=True)
def roles(inv):
    """On the database host: each slice host's monitor role, its grants, its row in
    sliceops_fleet.monitor_hosts, and the verifier its host computed (roles of hosts that left the
    inventory lose their row and LOGIN)."""
    if not inv.multi_host:
        host.noop("one host: its monitor logs in by peer authentication, no host monitor roles")
        return
    if this_host(inv) != inv.database_host.name:
        return
    desired = desired_host_monitors(inv)
    have = host.get_fact(HostMonitors, port=inv.postgres.port, gateway_db=inv.gateway.database)
    if not desired and not have["hosts"]:
        host.noop("no slice host besides the database host: no host monitor roles")
        return
    computed: dict[str, str] = {}
    for role, name in desired.items():
        try:
            v = peer_fact(name, MonitorVerifier, path=inv.monitor_password_file)
        except Exception:  # an unreachable slice host: its role stays as it is
            v = None
        if v is not None:
            computed[role] = v
    stale = [r for r, v in computed.items() if have["verifiers"].get(r) != v]
    if not state.is_executing:
        # Before execution a new host's password file may not exist yet: it will.
        stale += [r for r in desired if r not in computed and r not in have["verifiers"]]
    sql, order = host_monitors_sql(desired, have["hosts"], [r for r in stale if r in computed or not state.is_executing],
                                   have.get("granted", []), inv.gateway.database)
    if not sql:
        host.noop(f"{len(desired)} slice hosts' monitor roles are in place")
        return
    plan.record("postgres", "host monitor roles", ", ".join(sorted(desired)) or "removed")
    prelude = verifier_prelude([computed.get(r, "SCRAM-SHA-256$4096:AA==$AA==:AA==") for r in order])
    # printf is the shell's builtin: the verifiers are no process's argument.
    script = psql.script(inv.postgres.port, "SET log_statement = 'none';\n" + sql, inv.gateway.database,
                         prelude=f"printf '%s' {quote(prelude)}")
    yield from as_script(inv.share_dir, "host-monitors", script)
