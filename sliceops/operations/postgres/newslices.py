"""A few new slices and nothing else to do: their roles, databases, grants and stamps, and
gateway rows in one command on the database host, instead of a script per step.

Adding a tenant to a converged host is the everyday change (issue 15: about a second over a
no-op). The four steps that follow (roles, databases, migrations, registration) would each
send a script and start a psql; when all they would do is what a new slice needs, this step
does it in one psql session: the roles (one transaction, their verifiers computed on the
target by the roles step's own program, read ahead of the script), each database copied from
the stamped template, then in each copy the migration run the migrations step would make
(no file pending: the template's ledger came with it; the tenant's grants, the stamp), then
the gateway's new rows (one transaction). The four steps then plan from the cluster as this
one leaves it and have nothing to do.

Anything else (a role's credentials or limit to restore, a grant or owner to converge, the
template to rebuild, a gateway migration, a row to change, a slice on another host, more
than a few new slices, whose steps report progress) and this step does nothing: the four
steps do all of it, as before. So does a dry run (`sliceops plan`), which shows their plan.
"""

from __future__ import annotations

import dataclasses

from pyinfra import host, state as pyinfra_state
from pyinfra.api import operation

from sliceops import factcache, moves, progress, psql
from sliceops.facts.postgres import DATABASES, ROLES, ROWS, Fleet
from sliceops.inventory import SUSPENDED, Inventory, Slice
from sliceops.operations import sentences
from sliceops.operations.postgres.databases import copies_only, databases_sql, desired_databases
from sliceops.operations.postgres.grants import tenant_grants
from sliceops.operations.postgres.migrations import migration_plan, migration_script
from sliceops.operations.postgres.registry import registration_script, registration_sql
from sliceops.operations.postgres.roles import (
    connection_limits, remote_tenants, roles_sql, roles_to_converge, secrets_folder, tenant_url,
)
from sliceops.operations.postgres.stamps import slice_migrations, slice_stamp
from sliceops.operations.postgres.state import fleet, planned
from sliceops.operations.util import as_script
from sliceops.shell import echo

# More new slices than this go through the four steps, which report progress as they go.
MOST = progress.SHOWN


def new_slices(inv: Inventory, state: Fleet) -> list[Slice]:
    """Kept slices of which the cluster has nothing yet: no role, no database, no row."""
    rows = state.slice_rows
    return [s for s in inv.kept_slices()
            if s.login_role not in state.roles and s.database not in state.databases and s.id not in rows]


def after_adding(inv: Inventory, state: Fleet, new: list[Slice]) -> Fleet | None:
    """The cluster once `new` are added, when that is all the four steps would do (each of
    them has nothing left to do from it); None otherwise."""
    if (not new or len(new) > MOST or remote_tenants(inv) or state.slices is None or not state.monitor_ok
            or moves.moving_roles(inv, state.slice_rows) or connection_limits(inv, state)):
        return None
    roles = {s.login_role for s in new}
    if set(roles_to_converge(inv, state)) != roles:
        return None
    copied = copies_only(inv, state)
    if copied is None or set(copied.databases) - set(state.databases) != {s.database for s in new}:
        return None
    limit = inv.slice_defaults.db_connections
    after = dataclasses.replace(
        copied,
        roles={**state.roles, **{r: {"login": True, "password": True, "connlimit": limit} for r in roles}},
        secrets=sorted(set(state.secrets) | {f"{r}.{ext}" for r in roles for ext in ("password", "env")}),
        env_urls={**state.env_urls, **{f"{s.login_role}.env": tenant_url(inv, s, "***") for s in new}},
        stamped=sorted(set(state.stamped) | {s.database for s in new}),
        slices={**state.slice_rows, **{s.id: {"port": s.port, "status": "suspended" if s.status == SUSPENDED
                                              else "available", "user_id": None, "host": s.host} for s in new}},
    )
    if roles_to_converge(inv, after) or databases_sql(inv, after) or migration_plan(inv, after) \
            or registration_sql(inv, after.slice_rows):
        return None
    return after


@operation(is_idempotent=True)
def add_slices(inv: Inventory):
    """New slices' roles, databases, grants, stamps and gateway rows in one command, when
    that is all the PostgreSQL steps after this one would do."""
    state = fleet(inv, reads={ROLES, DATABASES, ROWS})
    new = new_slices(inv, state)
    after = after_adding(inv, state, new) if pyinfra_state.is_executing else None
    if after is None:
        host.noop("nothing only new slices need (the steps below converge what there is)" if pyinfra_state.is_executing
                  else "a dry run: the steps below show what the deploy would do")
        return
    # What the four steps would have said in the plan, from what they would have computed.
    sentences.roles(inv, state.roles, [s.login_role for s in new], None)
    sentences.databases(inv, desired_databases(inv), state.databases, databases_sql(inv, state))
    sentences.migrations(inv, state.databases, migration_plan(inv, copies_only(inv, state)))
    sentences.registration(inv, state.slice_rows)
    planned(inv, after)
    factcache.touches()  # the steps below plan from `after`
    yield from as_script(inv.share_dir, "new-slices", add_command(inv, state, new))


def add_command(inv: Inventory, state: Fleet, new: list[Slice]) -> str:
    """Shell adding `new` (see the module's docstring): one psql session, stopping at the
    first error (what a failure left undone, the four steps converge on the next deploy)."""
    roles_part, prelude = roles_sql(inv, [s.login_role for s in new], False)
    owner = inv.slice_defaults.role
    stamp = slice_stamp(inv)
    parts = [roles_part, *databases_sql(inv, state)]
    for s in new:
        parts += [psql.connect(s.database), migration_script(inv, s.database, owner, [], tenant_grants(owner, s.login_role), stamp)]
    parts += [psql.connect(inv.gateway.database), registration_script(registration_sql(inv, state.slice_rows))]
    newest = slice_migrations(inv)[-1].filename if slice_migrations(inv) else "none"
    said = [echo(f"added slice {s.id}: role {s.login_role}, database {s.database} from the template "
                 f"(migrations up to {newest}), gateway row") for s in new]
    script = psql.script(inv.postgres.port, "\n".join(parts), prelude=prelude)
    return "\n".join(secrets_folder(inv) + [script] + said)
