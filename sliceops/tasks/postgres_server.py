"""The PostgreSQL instance: package, cluster, configuration from templates, running at boot."""

from __future__ import annotations

from pyinfra.operations import files, server

from sliceops.facts.host import MemTotal
from sliceops.inventory import Inventory
from sliceops.operations import cluster, system, tls
from sliceops.operations.util import changed
from sliceops.names import MONITOR_ROLE
from sliceops.tuning import listen_addresses, pg_tuning, remote_slice_hosts
from sliceops.paths import TEMPLATES
from sliceops import factcache, moves
from sliceops.operations.postgres.state import fleet


def converge(inv: Inventory) -> None:
    pg = inv.postgres
    # python3 computes the roles' SCRAM verifiers on the target (see operations/postgres/roles.py).
    system.packages(name=f"Install PostgreSQL {pg.version} (and python3, openssl)", names=[f"postgresql-{pg.version}", "python3", "openssl"])
    cluster.cluster_exists(
        name=f"Create cluster {pg.version}/{inv.cluster}", version=pg.version, cluster=inv.cluster, port=pg.port
    )
    # Before the configuration names them: PostgreSQL refuses to start without its key.
    certificate = tls.server_certificate(
        name="Issue PostgreSQL's TLS certificate (CA made on this host once; names every listen address)", inv=inv
    )
    nonlocal_bind = files.put(
        name="Let PostgreSQL bind the slice bridge's address before Docker creates it",
        src=str(TEMPLATES / "sysctl/60-sliceops.conf"),
        dest="/etc/sysctl.d/60-sliceops.conf",
        mode="644",
    )
    server.shell(
        name="Apply /etc/sysctl.d/60-sliceops.conf",
        # Inside a container /proc/sys may be read-only: then the host decides, and we say so.
        commands=["sysctl -q -p /etc/sysctl.d/60-sliceops.conf || echo 'sliceops: could not apply net.ipv4.ip_nonlocal_bind here'"],
        _if=changed(nonlocal_bind),
    )
    etc = f"/etc/postgresql/{pg.version}/{inv.cluster}"
    ram = factcache.steady(MemTotal)
    common = dict(user="postgres", group="postgres", mode="640", inv=inv, monitor_role=MONITOR_ROLE)
    conf = files.template(
        name=f"Configure PostgreSQL ({etc}/conf.d/50-sliceops.conf)",
        src=str(TEMPLATES / "postgresql/sliceops.conf.j2"),
        dest=f"{etc}/conf.d/50-sliceops.conf",
        tuning=pg_tuning(inv, ram),
        listen=listen_addresses(inv),
        ram_bytes=ram,
        **common,
    )
    hba = files.template(
        name=f"Write client authentication rules ({etc}/pg_hba.conf)",
        src=str(TEMPLATES / "postgresql/pg_hba.conf.j2"),
        dest=f"{etc}/pg_hba.conf",
        # A slice being moved is admitted from its old host too until the move succeeds.
        remote=remote_slice_hosts(inv, moves.moving_roles(inv, fleet(inv).slice_rows) if inv.multi_host else None),
        **common,
    )
    ident = files.template(
        name=f"Map the monitor's system user ({etc}/pg_ident.conf)",
        src=str(TEMPLATES / "postgresql/pg_ident.conf.j2"),
        dest=f"{etc}/pg_ident.conf",
        **common,
    )
    cluster.cluster_running(name=f"Run cluster {pg.version}/{inv.cluster}", version=pg.version, cluster=inv.cluster)
    cluster.cluster_reload(
        name=f"Reload cluster {pg.version}/{inv.cluster} (restart only if a setting needs it)",
        version=pg.version,
        cluster=inv.cluster,
        _if=changed(conf, hba, ident, certificate),
    )
