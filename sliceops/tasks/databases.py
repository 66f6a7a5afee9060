"""Roles, databases, migrations and the gateway's slice registry: the data side of the tenants."""

from __future__ import annotations

from sliceops.bundle import tarball
from sliceops.inventory import Inventory
from sliceops.migrations import SQL_DIR
from sliceops.operations import system
from sliceops.operations.postgres import databases, migrations, newslices, registry, roles


def converge(inv: Inventory) -> None:
    migrations.migration_history(name="Check the slice databases' history against the slice migrations", inv=inv)
    system.ship_tree(tarball(SQL_DIR), f"{inv.share_dir}/sql", "the SQL migrations")
    if inv.slice_defaults.migrations:
        system.ship_tree(
            tarball(inv.slice_defaults.migrations), inv.sql_dir("slice"), "the slice migrations (slice_defaults.migrations)"
        )
    n = len(inv.kept_slices())
    # A new tenant on a converged host: all four steps below in one command (or nothing).
    newslices.add_slices(name="Add new slices (role, database from the template, gateway row) in one step", inv=inv)
    roles.roles(name=f"Create roles and credentials (gateway, slice owner, {n} slice roles, monitor)", inv=inv)
    databases.databases(name=f"Create databases ({inv.gateway.database} and {n} slice databases)", inv=inv)
    migrations.migrations(name=f"Apply migrations to {n + 1} databases", inv=inv)
    registry.registration(name="Register slices in gateway.slices", inv=inv)
