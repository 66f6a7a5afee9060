"""Converge one host from its slice inventory. Read top to bottom: this is the order of the deploy.

    pyinfra inventory/hosts.py deploy.py        (or: make deploy)
"""

from pyinfra import host

from sliceops.inventory import load
from sliceops.tasks import databases, postgres_server

inv = load(host.data.sliceops_inventory)

postgres_server.converge(inv)  # PostgreSQL installed, configured, running, enabled at boot
databases.converge(inv)  # roles and secrets, databases, migrations, gateway.slices rows
