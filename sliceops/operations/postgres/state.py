"""The one read of the cluster every PostgreSQL operation plans from (the `PgFleet` fact,
read again only after a step touched the part a later step reads), and the psql door they
run their scripts through."""

from __future__ import annotations

from sliceops import factcache, psql
from sliceops.facts.postgres import FLEET, Fleet, PgFleet
from sliceops.inventory import MONITOR_ROLE, SLICE_NAME_PREFIX, TEMPLATE_DB, Inventory
from sliceops.operations.postgres.stamps import slice_stamp, template_stamp


def fleet(inv: Inventory, on=None, reads=FLEET) -> Fleet:
    """What PgFleet reads on this host, or on pyinfra host `on` (a slice host planning reads
    the database host's). `reads`: the parts the caller uses (facts/postgres.py: ROLES,
    DATABASES, ROWS); a cached read serves until an operation touched one of them."""
    kwargs = _fact_arguments(inv)
    return on.get_fact(PgFleet, **kwargs) if on is not None else factcache.get(PgFleet, reads=reads, **kwargs)


def fleet_rows(inv: Inventory) -> dict[int, dict]:
    """The gateway's rows (`Fleet.slice_rows`) as the database host holds them, read from any
    host of the deploy; {} when the database host is not connected."""
    from sliceops.operations.peers import database_pyinfra_host

    database = database_pyinfra_host(inv)
    return fleet(inv, on=database).slice_rows if database is not None else {}


def planned(inv: Inventory, after: Fleet) -> None:
    """The cluster as a step will leave it: the steps after it plan from this, not from a read."""
    factcache.put(PgFleet, after, **_fact_arguments(inv))


def _fact_arguments(inv: Inventory) -> dict:
    return dict(
        version=inv.postgres.version,
        cluster=inv.cluster,
        port=inv.postgres.port,
        gateway_db=inv.gateway.database,
        secrets_dir=inv.secrets_dir,
        template_db=TEMPLATE_DB,
        slice_stamp=slice_stamp(inv),
        template_stamp=template_stamp(inv),
        slice_prefix=SLICE_NAME_PREFIX,
        monitor_role=MONITOR_ROLE,
    )


def heredoc(inv: Inventory, sql: str, database: str = "postgres") -> str:
    """Shell running `sql` as the superuser in `database` (see `sliceops.psql`)."""
    return psql.script(inv.postgres.port, sql, database)
