"""The slice lifecycle's dangerous edge: destroying, only on request and only after a verified backup.

`preflight` runs before anything on the host changes: it refuses a destroy the gateway
would object to and names orphans (slices on the host the inventory no longer lists),
which are left intact. `destroyed` backs up, verifies, then removes.

A slice on a pure slice host (a fleet) has its data there and its database on the database
host, each backed up by that host's agent. Its destroy runs on the slice host, as one
operation, in this order: (1) there, under the slice's lock, stop its container (nothing
writes to either part any more) and take the verified final backup of its data directory;
(2) on the database host, under the slice's lock there, the verified final `pg_dump`, then
the database, role and gateway row dropped; (3) back on the slice host, the container,
credentials and data removed. A step that fails stops the rest: nothing is removed anywhere
before both final backups are verified, and the data is removed last.
"""

from __future__ import annotations

import click
from pyinfra import host, logger
from pyinfra import state as pyinfra_state
from pyinfra.api import FunctionCommand, StringCommand, operation
from pyinfra.facts.files import Directory

from sliceops import checks, factcache, moves, plan, psql, spares
from sliceops.errors import InventoryError
from sliceops.facts.host import HostAddresses, MemTotal
from sliceops.facts.postgres import Fleet
from sliceops.facts.docker import SliceContainers
from sliceops.inventory import DESTROYING, SLICE_NAME_PREFIX, Inventory
from sliceops.names import slice_id_of
from sliceops.operations import volume
from sliceops.operations.docker import env_file, password_file
from sliceops.operations.peers import database_pyinfra_host, this_host
from sliceops.operations.postgres import assert_destroy_allowed, fleet
from sliceops.operations.postgres.state import fleet_rows
from sliceops.operations.util import refuses
from sliceops.remote import Target
from sliceops.shell import command, echo, ident, literal, quote, words



def orphans(inv: Inventory, state: Fleet) -> list[int]:
    """Slice ids with a database or gateway row on the host but no entry in the inventory."""
    listed = set(inv.slice_ids)
    found = {sid for db in state.databases if (sid := slice_id_of(db)) is not None}
    found |= set(state.slice_rows)
    return sorted(found - listed)


def abandoned_hosts(inv: Inventory, rows: dict) -> dict[str, list[int]]:
    """Hosts the gateway shows slices on (gateway.slices.host) that the inventory no longer
    lists, with those slices: removing them would orphan the slices. A `target:` file has one
    host, which holds every row whatever its name was; NULL is a row from before 0004."""
    if not inv.multi_host:
        return {}
    listed = {h.name for h in inv.hosts}
    gone: dict[str, list[int]] = {}
    for sid, row in sorted(rows.items()):
        if row.get("host") is not None and row["host"] not in listed:
            gone.setdefault(row["host"], []).append(sid)
    return gone


def _abandoned(inv: Inventory, name: str, sids: list[int]) -> str:
    line = inv.lines.get(("hosts",), 1)
    return (f"{inv.path}:{line}: hosts: {name!r} is no longer listed but the gateway shows slice(s) "
            f"{', '.join(map(str, sids))} on it (their data is there): list {name!r} again and move them first")


@operation(is_idempotent=True)
@refuses
def preflight(inv: Inventory, here: str | None = None):
    """Refuse unsafe requests before any change; report orphans and too few spare slices. On
    a slice host: its subnet; on the database host (`here` None): the gateway's view."""
    here = here or inv.database_host.name
    if here in {h.name for h in inv.slice_hosts}:
        problem = checks.host_subnet_problem(inv.docker.subnet, inv.bridge, host.get_fact(HostAddresses))
        if problem:
            line = inv.lines.get(("docker", "subnet"), 1)
            raise InventoryError([f"{inv.path}:{line}: docker.subnet: {problem}"])
        limits = [s.memory_bytes for s in inv.slices_on(here) if s.in_service]
        overcommit = checks.memory_overcommit(limits, factcache.steady(MemTotal))
        if overcommit and pyinfra_state.is_executing != pyinfra_state.should_check_for_changes():  # once
            logger.warning(f"{host.print_prefix}{overcommit}")
    if here != inv.database_host.name:
        # The gateway is on the database host: a slice host refuses what it refuses too, so
        # no container starts for a slice whose data is on a host the file dropped.
        rows = fleet_rows(inv)
        gone = abandoned_hosts(inv, rows)
        if gone:
            raise InventoryError([_abandoned(inv, name, sids) for name, sids in gone.items()])
        moves.refuse(inv, rows)
        host.noop(f"inventory requests are safe on slice host {here}")
        return
    state = fleet(inv)
    gone = abandoned_hosts(inv, state.slice_rows)
    if gone:
        raise InventoryError([_abandoned(inv, name, sids) for name, sids in gone.items()])
    assert_destroy_allowed(inv, state.slice_rows)
    moves.refuse(inv, state.slice_rows)  # a slice moves only while it runs
    for m in moves.pending(inv, state.slice_rows):
        plan.for_slice(m.slice_id, "moves", f"from {m.source} to {m.destination}")
    lost = orphans(inv, state)
    for sid in lost:
        plan.for_slice(sid, "orphan, left intact", changes=False)
        logger.warning(
            f"{host.print_prefix}orphan slice {sid}: on the host (database {SLICE_NAME_PREFIX}{sid} or gateway row) "
            f"but not in {inv.path}; left intact. Add it back, or list it with status: destroying to remove it."
        )
    short = spares.plan_warning(inv, state.slice_rows)
    if short:
        plan.warn(short)
        logger.warning(f"{host.print_prefix}{short}")
    host.noop(f"inventory requests are safe; {len(lost)} orphan(s) left intact")
    return
    yield  # an operation is a generator


# The parts of a destroy (see the module's docstring): "both" where a slice runs on the
# database host (a `target:` file's slices); its three steps for a slice on a pure slice host.
BOTH, DATA_BACKUP, DATABASE, DATA_REMOVAL = "both", "data-backup", "database", "data-removal"
DATABASE_PART_TIMEOUT = 3600  # seconds for the database host's part: its final pg_dump, then the drops


def destroy_script(inv: Inventory, slice_id: int, stamp: str, part: str = BOTH) -> str:
    """Final backup (the backup agent's, with its manifest; verified), then remove, all under the
    slice's backup lock so no backup or restore of it runs meanwhile. `part`: all of it (BOTH),
    or one step of a destroy split between a slice host and the database host."""
    s = inv.slice(slice_id)
    port = inv.postgres.port
    lock = inv.backup_lock(s.id)
    drop = f"DROP DATABASE IF EXISTS {ident(s.database)} WITH (FORCE);\nDROP ROLE IF EXISTS {ident(s.login_role)};"
    forget = f"DELETE FROM gateway.slices WHERE id = {literal(s.id)};"
    secrets = [password_file(inv, s), env_file(inv, s)]
    busy = f"sliceops: slice {s.id} is busy (a backup or restore holds {lock}); nothing removed"
    container = inv.container_name(s.id)
    lines = ["set -e", "umask 077", f"exec 9>{quote(lock)}", f"flock -w 600 9 || {{ {echo(busy)} >&2; exit 1; }}"]
    if part == DATA_BACKUP:
        # The container stops first: nothing writes to its data or its database after the
        # backups the destroy relies on (a stopped or missing container is fine).
        lines.append(f"{command('docker', 'stop', '-t', '20', container)} >/dev/null 2>&1 || true")
    if part in (BOTH, DATA_BACKUP, DATABASE):
        # Backup, verified before anything is removed (set -e: a failed one stops here).
        lines.append(command(*inv.backup_command("final", str(s.id), "--lock-held")))
    if part in (BOTH, DATA_REMOVAL):
        lines.append(f"{command('docker', 'rm', '-f', container)} >/dev/null 2>&1 || true")
    if part in (BOTH, DATABASE):
        # The database, its role, the gateway row (its telemetry cascades).
        lines += [psql.script(port, drop), psql.script(port, forget, inv.gateway.database, redirect=">/dev/null")]
    if part in (BOTH, DATA_REMOVAL):
        lines += [f"rm -f {words(secrets)}", volume.remove_data(inv, s.id)]
    done = {
        BOTH: f"destroyed slice {s.id}: container, database {s.database}, role, gateway row and data removed",
        DATABASE: f"destroyed slice {s.id}'s database part: database {s.database}, role and gateway row removed",
        DATA_REMOVAL: f"destroyed slice {s.id}: container, credentials and data removed on {s.host}",
    }
    if part in done:
        lines.append(echo(done[part]))
    return "\n".join(lines)


@operation(is_idempotent=True)
def destroyed(inv: Inventory, stamp: str, whole: Inventory | None = None):
    """Every slice marked `destroying` is backed up, verified, then removed from the host.
    `inv`: this host's slices; `whole`: the fleet (a pure slice host's destroy reaches the
    database host for each slice's database part)."""
    if not any(s.status == DESTROYING for s in inv.slices):
        # Nothing to look up: after the steps before it changed the host (a slice added),
        # reading every database and every container again costs seconds at 200 slices.
        host.noop("no slice is marked destroying")
        return
    whole = whole or inv
    if whole.multi_host and this_host(whole) != whole.database_host.name:
        yield from _destroyed_on_slice_host(inv, whole, stamp)
        return
    todo = _left(inv, fleet(inv))
    if not todo:
        n = sum(1 for s in inv.slices if s.status == DESTROYING)
        host.noop(f"{n} slice(s) marked destroying, none left on the host")
        return
    for sid in todo:
        plan.for_slice(sid, "destroyed", "verified backup, then container, database, role, gateway row and data removed")
    for sid in todo:
        yield StringCommand(destroy_script(inv, sid, stamp))


def _left(inv: Inventory, state, data_here: bool = False) -> list[int]:
    """Ids of the slices marked destroying of which something is left: a database, role or
    gateway row (`state`, the cluster), a container on this host, or (`data_here`, a pure
    slice host, whose cluster is elsewhere) its data directory here."""
    docker = factcache.get(SliceContainers, instance=inv.instance, secrets_dir=inv.secrets_dir)
    containers = docker["containers"] if docker else {}
    return [
        s.id for s in inv.slices
        if s.status == DESTROYING and (
            s.database in state.databases
            or s.login_role in state.roles
            or s.id in state.slice_rows
            or inv.container_name(s.id) in containers
            or (data_here and bool(host.get_fact(Directory, path=inv.slice_data_dir(s.id))))
        )
    ]


def _destroyed_on_slice_host(inv: Inventory, whole: Inventory, stamp: str):
    """The destroy of slices that run on this pure slice host (the module's three steps)."""
    database = database_pyinfra_host(whole)
    if database is None:
        logger.warning(f"{host.print_prefix}the database host {whole.database_host.name} is not connected: "
                       "no slice is destroyed here this time (the next deploy does it)")
        host.noop("no slice destroyed: the database host is not connected")
        return
    todo = _left(inv, fleet(whole, on=database), data_here=True)
    if not todo:
        n = sum(1 for s in inv.slices if s.status == DESTROYING)
        host.noop(f"{n} slice(s) marked destroying, none left on this host or the database host")
        return
    for sid in todo:
        plan.for_slice(sid, "destroyed", f"container stopped, verified final backups of its data (here) and its "
                                         f"database (on {whole.database_host.name}), then both parts removed")
    for sid in todo:
        yield StringCommand(destroy_script(whole, sid, stamp, DATA_BACKUP))
        yield FunctionCommand(_database_part, (whole, sid, stamp), {})
        yield StringCommand(destroy_script(whole, sid, stamp, DATA_REMOVAL))


def _database_part(state, host, inv: Inventory, slice_id: int, stamp: str) -> bool:
    """Step 2 on the database host, over its own connection (as a move reaches another host).
    False stops the operation here: the slice's data and its final backup stay on its host."""
    name = inv.database_host.name
    try:
        with Target(inv, inv.database_host.target) as db:
            out = db.run(["sh", "-c", destroy_script(inv, slice_id, stamp, DATABASE)], timeout=DATABASE_PART_TIMEOUT)
    except Exception as exc:  # one line naming the slice and what is kept
        click.echo(f"    {host.print_prefix}sliceops: slice {slice_id}: its database part was not destroyed on "
                   f"{name}: {exc}; its container is stopped, its data and final data backup kept here, nothing "
                   "removed", err=True)
        return False
    for line in out.splitlines():
        if line.strip():
            click.echo(f"    {host.print_prefix}[{name}] {line}", err=True)
    return True
