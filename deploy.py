"""Converge every host of the inventory. Read top to bottom: this is the order of the deploy.

    make deploy        (or: SLICEOPS_INVENTORY=inventory/slices.yaml pyinfra -y inventory/hosts.py deploy.py)

pyinfra runs this file once per host and then each operation on every host before the next,
so roles and databases (database host) exist before any container (slice hosts) starts. A
`target:` file's one host is both: it runs every line, as it always has.
"""

from pyinfra import host, state

from sliceops import report
from sliceops.errors import for_pyinfra
from sliceops.inventory import load
from sliceops.operations import lifecycle
from sliceops.operations.postgres.state import fleet_rows
from sliceops.tasks import backups, databases, docker_engine, firewall, monitor, postgres_server, slice_volume, slices

report.install(state)  # relay "applied 0002_x to wa_slice_3"-style lines; name the hosts that failed

with for_pyinfra():  # a refusal stops the deploy as one line, as pyinfra's own errors do
    inv = load(host.data.sliceops_inventory)
    here = host.data.sliceops_host  # this host's name in the inventory
    database_host = here == inv.database_host.name  # PostgreSQL, the gateway, every slice's database
    slice_host = here in {h.name for h in inv.slice_hosts}  # the Docker engine and this host's slices
    mine = inv.for_host(here)  # the model as this host sees it: only the slices that run here

    lifecycle.preflight(name="Check the inventory's requests are safe", inv=inv, here=here)  # before any change
    if slice_host:
        slice_volume.check(mine)  # before any change: every slice's data fits its disk quota
        docker_engine.converge(mine)  # Docker engine installed and running (or checked, if provided)
        slice_volume.converge(mine)  # every slice's /data on one preallocated btrfs image, a disk quota each
        slices.credentials(mine)  # off the database host: tenants' passwords made here, only verifiers leave
    if database_host:
        postgres_server.converge(inv)  # PostgreSQL installed, configured, running, enabled at boot
        databases.converge(inv)  # roles and secrets, databases, migrations, gateway.slices rows
    # The gateway's rows, read once: a slice whose move has not finished keeps its data part (its
    # backups and their metric) on its old host, for the agents and the monitors alike.
    rows = fleet_rows(inv) if inv.multi_host else None
    # The backup agent and its nightly schedule on every host (the destroy uses it too): the
    # database host dumps every slice's database and the gateway, each host archives the data
    # directories of the slices whose data is there.
    backups.converge(inv, here, rows)
    if slice_host:
        firewall.converge(mine)  # slices reach PostgreSQL and nothing else on the host; egress per inventory
        slices.converge(mine, inv)  # image, isolated network, slices moved here, one container per slice, destroys
    monitor.converge(mine, here, inv, rows)  # the monitor service: telemetry every interval, hourly prune (every host)
    if slice_host:
        slices.started(mine)  # last: new slices' containers, started in the background above, are up
