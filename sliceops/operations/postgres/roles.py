"""Login roles: the gateway's, the slice owner's and one per kept slice, with passwords
generated on the target into root-only files; PostgreSQL receives only their SCRAM-SHA-256
verifiers, computed on the target and fed to psql on its standard input (never an argument,
never pyinfra's output, never the plaintext in a statement a log could keep); and the
monitor's peer-authenticated role."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops import psql
from sliceops.facts.postgres import Fleet
from sliceops.inventory import MONITOR_ROLE, Inventory
from sliceops.operations.postgres.state import fleet
from sliceops.operations import sentences
from sliceops.operations.util import as_script
from sliceops.shell import command, ident, literal, quote, words


def desired_login_roles(inv: Inventory) -> list[str]:
    """Roles with a generated password: the two owners of seed 000 and one per kept slice."""
    return [inv.gateway.role, inv.slice_defaults.role] + [s.login_role for s in inv.kept_slices()]


def roles_to_converge(inv: Inventory, state: Fleet) -> list[str]:
    secrets = set(state.secrets)
    tenants = {s.login_role for s in inv.kept_slices()}
    todo = []
    for role in desired_login_roles(inv):
        have = state.roles.get(role)
        if (
            have is None
            or not have["login"]
            or not have["password"]
            or f"{role}.password" not in secrets
            or (role in tenants and f"{role}.env" not in secrets)
        ):
            todo.append(role)
    return todo


# Computes a SCRAM-SHA-256 verifier (RFC 5802/7677, PostgreSQL's format) from the password
# file named by argv[1], on the target: PostgreSQL stores a verifier given to ALTER ROLE as it
# is, so the plaintext never reaches the server (nor a statement log). 4096 iterations and a
# 16-byte salt are PostgreSQL's own defaults.
_SCRAM_PY = """\
import base64, hashlib, hmac, os, sys
pw = open(sys.argv[1], 'rb').read().strip()
salt, n = os.urandom(16), 4096
key = hashlib.pbkdf2_hmac('sha256', pw, salt, n)
client = hmac.new(key, b'Client Key', 'sha256').digest()
b64 = lambda b: base64.b64encode(b).decode()
print('SCRAM-SHA-256$%d:%s$%s:%s' % (n, b64(salt), b64(hashlib.sha256(client).digest()),
      b64(hmac.new(key, b'Server Key', 'sha256').digest())))
"""


def connection_limits(inv: Inventory, state: Fleet) -> list[str]:
    """Tenant roles that exist with another CONNECTION LIMIT than slice_defaults.db_connections."""
    have = state.roles
    want = inv.slice_defaults.db_connections
    return [s.login_role for s in inv.kept_slices()
            if s.login_role in have and have[s.login_role].get("connlimit") != want]


def roles_command(inv: Inventory, roles: list[str], with_monitor: bool, limits: list[str] = ()) -> str:
    tenants = {s.login_role: s for s in inv.kept_slices()}
    sd = inv.secrets_dir
    shell = [
        "set -e",
        "umask 077",
        # The instance's directory stays readable (the monitor reads its config there);
        # only secrets/ is closed.
        f"{command('install', '-d', '-m', '0755', '/etc/sliceops', inv.etc_dir)} && "
        f"{command('install', '-d', '-m', '0700', sd)}",
        # 32 alphanumerics: about 190 bits, and nothing a URL or SQL literal must escape.
        f"for f in {words(f'{sd}/{r}.password' for r in roles)}; do "
        f"[ -s \"$f\" ] || tr -dc A-Za-z0-9 </dev/urandom | head -c 32 >\"$f\"; done",
    ]
    for role in roles:
        if role in tenants:
            # printf is the shell's builtin: the password is never an argument of a process.
            url = "DATABASE_URL=postgresql://%s:%s@%s:%s/%s\\n"
            shell.append(
                f"printf {quote(url)} {quote(role)} \"$(cat {quote(f'{sd}/{role}.password')})\" "
                f"{quote(inv.database_address(tenants[role]))} {int(inv.postgres.port)} {quote(tenants[role].database)} "
                f">{quote(f'{sd}/{role}.env')}"
            )
    # One `\set` line per role, made on the target: psql variable pw<i> holds its verifier.
    shell.append("verifiers=''")
    for i, role in enumerate(roles):
        shell.append(
            # (an assignment, not an && list: `set -e` stops the script if python3 fails)
            f"v=$(python3 -c {quote(_SCRAM_PY)} {quote(f'{sd}/{role}.password')})\n"
            f"verifiers=\"$verifiers\\\\set pw{i} '$v'\n\""
        )
    sql = ["SET log_statement = 'none';"]
    if with_monitor:
        sql.append(_ensure_role_sql(MONITOR_ROLE))
    limit = inv.slice_defaults.db_connections
    for i, role in enumerate(roles):
        sql.append(_ensure_role_sql(role))
        per = f" CONNECTION LIMIT {limit}" if role in tenants else ""
        sql.append(f"ALTER ROLE {ident(role)} WITH LOGIN{per} PASSWORD :'pw{i}';")
    sql += [f"ALTER ROLE {ident(role)} CONNECTION LIMIT {limit};" for role in limits if role not in roles]
    shell.append(psql.script(inv.postgres.port, "\n".join(sql), prelude_var="verifiers"))
    return "\n".join(shell)


def _ensure_role_sql(role: str) -> str:
    return (
        f"SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(role)}) AS missing \\gset\n"
        f"\\if :missing\nCREATE ROLE {ident(role)} LOGIN;\n\\endif"
    )


@operation(is_idempotent=True)
def roles(inv: Inventory):
    """Login roles with root-only generated passwords, and the monitor's peer-auth role."""
    state = fleet(inv)
    todo = roles_to_converge(inv, state)
    with_monitor = MONITOR_ROLE not in state.roles
    limits = connection_limits(inv, state)
    if not todo and not with_monitor and not limits:
        host.noop(f"all {len(desired_login_roles(inv)) + 1} roles exist with their credentials and limits")
        return
    sentences.roles(inv, state.roles, todo, MONITOR_ROLE if with_monitor else None, limits)
    yield from as_script(inv.share_dir, "roles", roles_command(inv, todo, with_monitor, limits))
