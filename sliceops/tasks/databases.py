"""Roles, databases, migrations and the gateway's slice registry: the data side of the tenants."""

from __future__ import annotations

from pyinfra.operations import files

from sliceops.bundle import digest, tarball
from sliceops.inventory import Inventory
from sliceops.migrations import SQL_DIR
from sliceops.operations import postgres as pg
from sliceops.operations import system


def converge(inv: Inventory) -> None:
    sql_tar = f"{inv.share_dir}/sql.tar"
    source = tarball(SQL_DIR)
    files.put(name=f"Ship the SQL migrations to {inv.share_dir}", src=source, dest=sql_tar, mode="644")
    system.stamped(
        name=f"Unpack the SQL migrations into {inv.share_dir}/sql",
        stamp_path=f"{inv.share_dir}/sql/.sliceops-source",
        digest=digest(source),
        what="the SQL migrations",
        commands=[f"rm -rf {inv.share_dir}/sql", f"mkdir -p {inv.share_dir}/sql", f"tar -xf {sql_tar} -C {inv.share_dir}/sql"],
    )
    n = len(inv.kept_slices())
    pg.roles(name=f"Create roles and credentials (gateway, slice owner, {n} slice roles, monitor)", inv=inv)
    pg.databases(name=f"Create databases ({inv.gateway.database} and {n} slice databases)", inv=inv)
    pg.migrations(name=f"Apply migrations to {n + 1} databases", inv=inv)
    pg.registration(name="Register slices in gateway.slices", inv=inv)
