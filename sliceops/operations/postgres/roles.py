"""Login roles: the gateway's, the slice owner's and one per kept slice, with passwords
generated on the target into root-only files; PostgreSQL receives only their SCRAM-SHA-256
verifiers, computed on the target and fed to psql on its standard input (never an argument,
never pyinfra's output, never the plaintext in a statement a log could keep); and the
monitor's peer-authenticated role."""

from __future__ import annotations

import json
from pathlib import Path

from pyinfra import host, state as pyinfra_state
from pyinfra.api import operation

from sliceops import factcache, moves, psql
from sliceops.facts.postgres import ROLES, ROWS, Fleet
from sliceops.facts.tenant_credentials import StoredVerifiers, TenantCredentials
from sliceops.inventory import MONITOR_ROLE, SLICE_NAME_PREFIX, Inventory, Slice
from sliceops.names import TARGET_PYTHON
from sliceops.operations.postgres import credentials
from sliceops.operations.peers import peer_fact
from sliceops.operations.postgres.monitors import verifier_prelude
from sliceops.operations.postgres.state import fleet
from sliceops.operations import sentences
from sliceops.operations.util import as_script
from sliceops.shell import command, ident, literal, quote


def desired_login_roles(inv: Inventory) -> list[str]:
    """Roles with a generated password: the two owners of seed 000 and one per kept slice."""
    return [inv.gateway.role, inv.slice_defaults.role] + [s.login_role for s in inv.kept_slices()]


# libpq reads the CA from PGSSLROOTCERT (set in the container); Node's drivers honour
# sslmode=verify-full with NODE_EXTRA_CA_CERTS (also set) as their trust store.
URL_OPTIONS = "sslmode=verify-full"


def tenant_url(inv: Inventory, s: Slice, password: str) -> str:
    """Slice `s`'s DATABASE_URL; the deploy writes it with the real password on the target
    and compares it with `password="***"` (what the PgFleet fact reads back)."""
    return (f"postgresql://{s.login_role}:{password}@{inv.database_address(s)}:{int(inv.postgres.port)}"
            f"/{s.database}?{URL_OPTIONS}")


def remote_tenants(inv: Inventory) -> dict[str, str]:
    """{login role: slice host} of the kept slices whose credentials are made on their own
    slice host, not here (a fleet's slices that run off the database host)."""
    db = inv.database_host.name
    return {s.login_role: s.host for s in inv.kept_slices() if inv.credentials_host(s) != db}


def remote_to_converge(inv: Inventory, state: Fleet, computed: dict, stored: dict, executing: bool) -> list:
    """[(role, verifier or None)] of the remote tenants' roles to converge: `computed`, the
    verifiers their slice hosts computed ({} for a host that did not answer); `stored`, the
    ones PostgreSQL holds. A role without a verifier yet is still created (its database's
    grants need it) and can log in once its slice host's verifier arrives. Before execution
    a missing verifier counts as a change: the slice host's credentials step makes it."""
    todo = []
    for role in remote_tenants(inv):
        have, v = state.roles.get(role), computed.get(role)
        if v is not None and stored.get(role) != v:
            todo.append((role, v))
        elif have is None or not have["login"] or (v is None and not executing):
            todo.append((role, None))
    return todo


def roles_to_converge(inv: Inventory, state: Fleet) -> list[str]:
    secrets = set(state.secrets)
    remote = remote_tenants(inv)
    tenants = {s.login_role for s in inv.kept_slices()} - set(remote)
    urls = {s.login_role: tenant_url(inv, s, "***") for s in inv.kept_slices()}
    todo = []
    for role in desired_login_roles(inv):
        if role in remote:
            continue
        have = state.roles.get(role)
        if (
            have is None
            or not have["login"]
            or not have["password"]
            or f"{role}.password" not in secrets
            or (role in tenants and f"{role}.env" not in secrets)
            # (a file the fact read back: its URL with the password masked)
            or (role in tenants and state.env_urls.get(f"{role}.env", urls[role]) != urls[role])
        ):
            todo.append(role)
    return todo


# The target-side program that writes the credentials and computes the verifiers: one
# process for every role (see credentials.py), its source passed as `python3 -c` (no secret).
CREDENTIALS_PY = Path(credentials.__file__).read_text()
# Closes the here-document carrying the program's request (JSON: never a raw newline).
REQUEST_END = "SLICEOPS_ROLES"


def connection_limits(inv: Inventory, state: Fleet) -> list[str]:
    """Tenant roles that exist with another CONNECTION LIMIT than slice_defaults.db_connections."""
    have = state.roles
    want = inv.slice_defaults.db_connections
    return [s.login_role for s in inv.kept_slices()
            if s.login_role in have and have[s.login_role].get("connlimit") != want]


def credentials_request(inv: Inventory, roles: list[str]) -> str:
    """The JSON the target program reads: the secrets directory and, per role, the tenant's
    DATABASE_URL around its password (None for the owners, who get no credentials file)."""
    tenants = {s.login_role: s for s in inv.kept_slices()}
    entries = [
        [role, *tenant_url(inv, tenants[role], "\0").split("\0")] if role in tenants else [role, None, None]
        for role in roles
    ]
    return json.dumps({"dir": inv.secrets_dir, "roles": entries}, indent=0)


def roles_command(inv: Inventory, roles: list[str], with_monitor: bool, limits: list[str] = (),
                  remote: list = ()) -> str:
    """Shell converging `roles`: a constant number of commands whatever their count (no
    command substitution per role: the request and the SQL are quoted here-documents).
    `remote`: [(role, verifier or None)] of tenants whose password is on their slice host
    (see `remote_to_converge`): only the verifier computed there reaches psql, by the
    shell's builtin printf on psql's standard input."""
    sql, prelude = roles_sql(inv, roles, with_monitor, limits, remote)
    return "\n".join(secrets_folder(inv) + [psql.script(inv.postgres.port, sql, prelude=prelude)])


def secrets_folder(inv: Inventory) -> list[str]:
    """Shell lines (ending a script's preamble, `set -e` first) that make the root-only secrets
    folder the credentials program writes into."""
    return [
        "set -e",
        "umask 077",
        # The instance's directory stays readable (the monitor reads its config there);
        # only secrets/ is closed.
        f"{command('install', '-d', '-m', '0755', '/etc/sliceops', inv.etc_dir)} && "
        f"{command('install', '-d', '-m', '0700', inv.secrets_dir)}",
    ]


def roles_sql(inv: Inventory, roles: list[str], with_monitor: bool, limits: list[str] = (),
              remote: list = ()) -> tuple[str, str]:
    """(the psql script converging `roles`, in one transaction; the prelude whose output,
    the verifiers as `\\set` lines, psql reads ahead of it: see `psql.script`)."""
    tenants = {s.login_role for s in inv.kept_slices()}
    sql = ["SET log_statement = 'none';", "BEGIN;"]
    if with_monitor:
        sql.append(_ensure_role_sql(MONITOR_ROLE))
    limit = inv.slice_defaults.db_connections
    for i, role in enumerate(roles):
        sql.append(_ensure_role_sql(role))
        per = f" CONNECTION LIMIT {limit}" if role in tenants else ""
        # pw<i> is set by the program's output, read ahead of this script: if the program
        # failed, :'pw<i>' stays unexpanded, the statement fails and nothing is committed.
        sql.append(f"ALTER ROLE {ident(role)} WITH LOGIN{per} PASSWORD :'pw{i}';")
    verifiers: list[str] = []
    for role, v in remote:
        sql.append(_ensure_role_sql(role))
        password = ""
        if v is not None:
            password = f" PASSWORD :'rpw{len(verifiers)}'"
            verifiers.append(v)
        sql.append(f"ALTER ROLE {ident(role)} WITH LOGIN CONNECTION LIMIT {limit}{password};")
    done = set(roles) | {role for role, _ in remote}
    sql += [f"ALTER ROLE {ident(role)} CONNECTION LIMIT {limit};" for role in limits if role not in done]
    sql.append("COMMIT;")
    prelude = ""
    if roles:
        request = credentials_request(inv, roles)
        if REQUEST_END in request.splitlines():
            raise ValueError(f"a credentials request may not hold a line {REQUEST_END}")
        prelude = f"{command(*TARGET_PYTHON, '-c', CREDENTIALS_PY)} <<'{REQUEST_END}'\n{request}\n{REQUEST_END}"
    if verifiers:
        # printf is the shell's builtin: the verifiers are no process's argument.
        sets = verifier_prelude(verifiers, "rpw")
        prelude = "\n".join(p for p in (prelude, f"printf '%s' {quote(sets)}") if p)
    return "\n".join(sql), prelude


def _ensure_role_sql(role: str) -> str:
    return (
        f"SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(role)}) AS missing \\gset\n"
        f"\\if :missing\nCREATE ROLE {ident(role)} LOGIN;\n\\endif"
    )


@operation(is_idempotent=True)
def roles(inv: Inventory):
    """Login roles with root-only generated passwords, and the monitor's peer-auth role."""
    state = fleet(inv, reads={ROLES, ROWS})  # ROWS: a slice being moved keeps its password
    # A slice being moved keeps its password until its move succeeds: the move carries it.
    moving = moves.moving_roles(inv, state.slice_rows)
    todo = [r for r in roles_to_converge(inv, state) if r not in moving]
    remote = remote_to_converge(inv, state, *remote_verifiers(inv), pyinfra_state.is_executing) if remote_tenants(inv) else []
    remote = [(r, v) for r, v in remote if r not in moving or r not in state.roles]
    with_monitor = MONITOR_ROLE not in state.roles
    limits = connection_limits(inv, state)
    if not todo and not remote and not with_monitor and not limits:
        host.noop(f"all {len(desired_login_roles(inv)) + 1} roles exist with their credentials and limits")
        return
    sentences.roles(inv, state.roles, todo + [role for role, _ in remote], MONITOR_ROLE if with_monitor else None, limits)
    factcache.touches(ROLES)  # roles and credential files: the databases stay as they were read
    yield from as_script(inv.share_dir, "roles", roles_command(inv, todo, with_monitor, limits, remote))


def remote_verifiers(inv: Inventory) -> tuple[dict, dict]:
    """(the verifiers each remote tenant's slice host computed, of its own slices only; the
    ones PostgreSQL stores). A slice host that does not answer gives none: its roles keep
    what they have."""
    computed: dict[str, str] = {}
    by_host: dict[str, list[str]] = {}
    for role, name in remote_tenants(inv).items():
        by_host.setdefault(name, []).append(role)
    for name, roles_there in sorted(by_host.items()):
        try:
            seen = peer_fact(name, TenantCredentials, secrets_dir=inv.secrets_dir, prefix=SLICE_NAME_PREFIX)
        except Exception:  # an unreachable slice host (pyinfra names it at the end)
            continue
        computed.update({r: seen["verifiers"][r] for r in roles_there if r in seen["verifiers"]})
    stored = host.get_fact(StoredVerifiers, port=inv.postgres.port, prefix=SLICE_NAME_PREFIX)
    return computed, stored
