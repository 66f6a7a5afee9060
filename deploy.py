"""Converge one host from its slice inventory. Read top to bottom: this is the order of the deploy.

    make deploy        (or: SLICEOPS_INVENTORY=inventory/slices.yaml pyinfra -y inventory/hosts.py deploy.py)
"""

from pyinfra import host, state

from sliceops import report
from sliceops.errors import for_pyinfra
from sliceops.inventory import load
from sliceops.operations import lifecycle
from sliceops.tasks import backups, databases, docker_engine, firewall, monitor, postgres_server, slice_volume, slices

report.install(state)  # relay "applied 0002_x to wa_slice_3"-style lines at default verbosity

with for_pyinfra():  # a refusal stops the deploy as one line, as pyinfra's own errors do
    inv = load(host.data.sliceops_inventory)

    lifecycle.preflight(name="Check the inventory's requests are safe", inv=inv)  # before any change
    slice_volume.check(inv)  # before any change: every slice's data fits its disk quota
    docker_engine.converge(inv)  # Docker engine installed and running (or checked, if provided)
    slice_volume.converge(inv)  # every slice's /data on one preallocated btrfs image, a disk quota each
    postgres_server.converge(inv)  # PostgreSQL installed, configured, running, enabled at boot
    databases.converge(inv)  # roles and secrets, databases, migrations, gateway.slices rows
    backups.converge(inv)  # backup agent and its nightly schedule (the destroy uses it too)
    firewall.converge(inv)  # slices reach PostgreSQL and nothing else on the host; egress per inventory
    slices.converge(inv)  # image, isolated network, one container per slice, destroys
    monitor.converge(inv)  # the monitor service: telemetry every interval, hourly prune
