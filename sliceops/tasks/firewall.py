"""The slice network's firewall: slices reach PostgreSQL and nothing else on the host, no
private range anywhere, the internet per `docker.egress`; converged before any slice
container starts, and put back at boot before the Docker engine."""

from __future__ import annotations

import io

from pyinfra import host
from pyinfra.operations import files

from sliceops.facts.firewall import Nameservers
from sliceops.inventory import Inventory
from sliceops.operations import firewall, service, system
from sliceops.operations.peers import this_host
from sliceops.operations.util import changed
from sliceops.tasks.boot import boot_entry


def converge(inv: Inventory) -> None:
    # docker.io depends on it; a provided engine's host may still lack the command.
    system.packages(name="Install iptables (the slice network firewall)", names=["iptables"])
    nameservers = host.get_fact(Nameservers)
    database = inv.remote_database_address(this_host(inv))  # a fleet's slice host: PostgreSQL is there
    script_path = f"{inv.etc_dir}/firewall.sh"
    files.put(
        name=f"Write the slice network firewall script ({script_path})",
        src=io.StringIO(firewall.apply_script(inv, nameservers, database)),
        dest=script_path, user="root", group="root", mode="700",
    )
    firewall.rules_applied(
        name=f"Firewall the slice network {inv.docker.subnet} (PostgreSQL only on the host, egress {inv.docker.egress})",
        inv=inv, nameservers=nameservers, script_path=script_path, database=database,
    )
    unit = inv.firewall_unit
    variables = dict(instance=inv.instance, unit=unit, script_path=script_path, egress=inv.docker.egress,
                     input_chain=inv.firewall_input_chain)
    unit_file = boot_entry("firewall", unit, variables, why="the firewall at boot, before the Docker engine")
    # Restarting it only re-applies the rules (idempotent); under systemd it also reloads the unit.
    service.running(name=f"Enable {unit} at boot", service_name=unit, restart_if=changed(unit=unit_file))
