"""The slice lifecycle's dangerous edge: destroying, only on request and only after a verified backup.

`preflight` runs before anything on the host changes: it refuses a destroy the gateway
would object to and names orphans (slices on the host the inventory no longer lists),
which are left intact. `destroyed` backs up, verifies, then removes.
"""

from __future__ import annotations

import re

from pyinfra import host, logger
from sliceops.operations.util import refuses
from pyinfra.api import StringCommand, operation

from sliceops import factcache, plan
from sliceops.facts.docker import SliceContainers
from sliceops.inventory import DESTROYING, Inventory
from sliceops.operations.postgres import assert_destroy_allowed, fleet

_SLICE_DB = re.compile(r"^wa_slice_([0-9]+)$")


def orphans(inv: Inventory, state: dict | None) -> list[int]:
    """Slice ids with a database or gateway row on the host but no entry in the inventory."""
    if not state:
        return []
    listed = set(inv.slice_ids)
    found = {int(m[1]) for db in state["databases"] if (m := _SLICE_DB.match(db))}
    found |= set(state["slices"] or {})
    return sorted(found - listed)


@operation(is_idempotent=True)
@refuses
def preflight(inv: Inventory):
    """Refuse unsafe requests before any change; report orphans."""
    state = fleet(inv)
    assert_destroy_allowed(inv, state["slices"] if state else None)
    lost = orphans(inv, state)
    for sid in lost:
        plan.for_slice(sid, "orphan, left intact", changes=False)
        logger.warning(
            f"{host.print_prefix}orphan slice {sid}: on the host (database wa_slice_{sid} or gateway row) "
            f"but not in {inv.path}; left intact. Add it back, or list it with status: destroying to remove it."
        )
    host.noop(f"inventory requests are safe; {len(lost)} orphan(s) left intact")
    return
    yield  # an operation is a generator


def destroy_script(inv: Inventory, slice_id: int, stamp: str) -> str:
    """Backup (pg_dump, verified by pg_restore --list; data directory archived), then remove."""
    s = inv.slice(slice_id)
    port = inv.postgres.port
    bdir = inv.backup_dir
    dump = f"{bdir}/{stamp}-{s.database}.dump"
    data = inv.slice_data_dir(s.id)
    archive = f"{bdir}/{stamp}-slice-{s.id}-data.tar.gz"
    psql = f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p {port}"
    return "\n".join([
        "set -e",
        "umask 077",
        f"mkdir -p {bdir} && chmod 0700 {bdir}",
        # 1. Backup, verified before anything is removed.
        f"if [ \"$({psql} -d postgres -c \"SELECT 1 FROM pg_database WHERE datname = '{s.database}'\")\" = 1 ]; then",
        f"  runuser -u postgres -- pg_dump -Fc -p {port} {s.database} >{dump}",
        f"  tables=$(pg_restore --list {dump} | grep -c ' TABLE ' || true)",
        f"  [ \"$tables\" -gt 0 ] || {{ echo 'sliceops: backup {dump} lists no table; nothing removed' >&2; exit 1; }}",
        f"  echo \"backup {dump} verified ($tables tables)\"",
        "fi",
        f"if [ -d {data} ]; then tar -czf {archive} -C {data} . && tar -tzf {archive} >/dev/null "
        f"&& echo 'backup {archive} verified'; fi",
        # 2. Remove: container, database, credentials, gateway row (its telemetry cascades), data.
        f"docker rm -f {inv.container_name(s.id)} >/dev/null 2>&1 || true",
        f"{psql} -d postgres -c 'DROP DATABASE IF EXISTS \"{s.database}\" WITH (FORCE)' "
        f"-c 'DROP ROLE IF EXISTS \"{s.login_role}\"'",
        f"{psql} -d {inv.gateway.database} -c 'DELETE FROM gateway.slices WHERE id = {s.id}' >/dev/null",
        f"rm -f {inv.secrets_dir}/{s.login_role}.password {inv.secrets_dir}/{s.login_role}.env",
        f"rm -rf {data}",
        f"echo 'destroyed slice {s.id}: container, database {s.database}, role, gateway row and data removed'",
    ])


@operation(is_idempotent=True)
def destroyed(inv: Inventory, stamp: str):
    """Every slice marked `destroying` is backed up, verified, then removed from the host."""
    state = fleet(inv)
    docker = factcache.get(SliceContainers, instance=inv.instance, secrets_dir=inv.secrets_dir)
    containers = docker["containers"] if docker else {}
    todo = []
    for s in inv.slices:
        if s.status != DESTROYING:
            continue
        present = (
            (state is not None and (
                s.database in state["databases"]
                or s.login_role in state["roles"]
                or s.id in (state["slices"] or {})
            ))
            or inv.container_name(s.id) in containers
        )
        if present:
            todo.append(s.id)
    if not todo:
        n = sum(1 for s in inv.slices if s.status == DESTROYING)
        host.noop(f"{n} slice(s) marked destroying, none left on the host")
        return
    for sid in todo:
        plan.for_slice(sid, "destroyed", "verified backup, then container, database, role, gateway row and data removed")
    for sid in todo:
        yield StringCommand(destroy_script(inv, sid, stamp))
