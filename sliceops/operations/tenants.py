"""Tenant credentials on a slice host that is not the database host: each slice's password
and credentials file (`DATABASE_URL`) are made where its container reads them, root-only,
by the same target-side program the database host uses for its own slices
(operations/postgres/credentials.py). The password never leaves the slice host: the
database host's roles step reads the verifier computed there (facts/tenant_credentials.py)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops import moves, plan
from sliceops.facts.tenant_credentials import TenantCredentials
from sliceops.inventory import SLICE_NAME_PREFIX, Inventory
from sliceops.names import TARGET_PYTHON
from sliceops.operations.peers import this_host
from sliceops.operations.postgres.state import fleet_rows
from sliceops.operations.util import as_script
from sliceops.operations.postgres.roles import CREDENTIALS_PY, REQUEST_END, credentials_request, tenant_url
from sliceops.shell import command, quote


def here_tenants(inv: Inventory, here: str) -> dict:
    """{login role: slice} of the kept slices whose credentials host `here` is, when that is
    not the database host (whose roles step makes its own slices' credentials)."""
    if here == inv.database_host.name:
        return {}
    return {s.login_role: s for s in inv.kept_slices() if inv.credentials_host(s) == here}


def credentials_to_make(inv: Inventory, tenants: dict, have: dict) -> list[str]:
    """Roles whose password file is missing or empty, or whose credentials file is missing or
    names another URL than the inventory's (`have`: the TenantCredentials fact)."""
    return [role for role, s in tenants.items()
            if role not in have["verifiers"] or have["env_urls"].get(f"{role}.env") != tenant_url(inv, s, "***")]


def credentials_command(inv: Inventory, roles: list[str]) -> str:
    """Shell making `roles`' passwords (kept when present) and credentials files; the
    program's verifier lines are dropped: the database host computes none from them."""
    request = credentials_request(inv, roles)
    if REQUEST_END in request.splitlines():
        raise ValueError(f"a credentials request may not hold a line {REQUEST_END}")
    return "\n".join([
        "set -e",
        "umask 077",
        f"{command('install', '-d', '-m', '0755', '/etc/sliceops', inv.etc_dir)} && "
        f"{command('install', '-d', '-m', '0700', inv.secrets_dir)}",
        f"{command(*TARGET_PYTHON, '-c', CREDENTIALS_PY)} >/dev/null <<'{REQUEST_END}'\n{request}\n{REQUEST_END}",
    ])


@operation(is_idempotent=True)
def credentials(inv: Inventory):
    """On a slice host that is not the database host: its slices' passwords and credentials
    files, made here, root-only."""
    here = this_host(inv)
    tenants = here_tenants(inv, here)
    if tenants:
        # A slice moving here brings its password with it (operations/move.py).
        rows = fleet_rows(inv)
        for role in moves.moving_roles(inv, rows):
            tenants.pop(role, None)
    if not tenants:
        host.noop("no slice here keeps its credentials on this host (the database host makes them)")
        return
    have = host.get_fact(TenantCredentials, secrets_dir=inv.secrets_dir, prefix=SLICE_NAME_PREFIX)
    todo = credentials_to_make(inv, tenants, have)
    if not todo:
        host.noop(f"{len(tenants)} slices' credentials are here, their URLs the inventory's")
        return
    for role in todo:
        plan.for_slice(tenants[role].id, "credentials", f"made on {here} (the database host gets the verifier)")
    # A fleet's request outgrows one `sh -c` argument: it travels as a script file.
    yield from as_script(inv.share_dir, "tenant-credentials", credentials_command(inv, todo))
