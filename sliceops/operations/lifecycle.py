"""The slice lifecycle's dangerous edge: destroying, only on request and only after a verified backup.

`preflight` runs before anything on the host changes: it refuses a destroy the gateway
would object to and names orphans (slices on the host the inventory no longer lists),
which are left intact. `destroyed` backs up, verifies, then removes.
"""

from __future__ import annotations

import re
import shlex

from pyinfra import host, logger
from sliceops.operations.util import refuses
from pyinfra.api import StringCommand, operation

from sliceops import factcache, plan
from sliceops.facts.docker import SliceContainers
from sliceops.inventory import DESTROYING, Inventory
from sliceops.operations import volume
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
    """Final backup (the backup agent's, with its manifest; verified), then remove, all under the
    slice's backup lock so no backup or restore of it runs meanwhile."""
    s = inv.slice(slice_id)
    port = inv.postgres.port
    data = inv.slice_data_dir(s.id)
    lock = shlex.quote(inv.backup_lock(s.id))
    psql = f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p {port}"
    return "\n".join([
        "set -e",
        "umask 077",
        f"exec 9>{lock}",
        f"flock -w 600 9 || {{ echo 'sliceops: slice {s.id} is busy (a backup or restore holds {lock}); nothing removed' >&2; exit 1; }}",
        # 1. Backup, verified before anything is removed (set -e: a failed one stops here).
        shlex.join(inv.backup_command("final", str(s.id), "--lock-held")),
        # 2. Remove: container, database, credentials, gateway row (its telemetry cascades), data.
        f"docker rm -f {inv.container_name(s.id)} >/dev/null 2>&1 || true",
        f"{psql} -d postgres -c 'DROP DATABASE IF EXISTS \"{s.database}\" WITH (FORCE)' "
        f"-c 'DROP ROLE IF EXISTS \"{s.login_role}\"'",
        f"{psql} -d {inv.gateway.database} -c 'DELETE FROM gateway.slices WHERE id = {s.id}' >/dev/null",
        f"rm -f {inv.secrets_dir}/{s.login_role}.password {inv.secrets_dir}/{s.login_role}.env",
        volume.remove_data(inv, s.id),
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
