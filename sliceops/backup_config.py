"""The backup agent's configuration on each host (backup/README.md): which parts of which
slices' backups it keeps. Written by the deploy (sliceops/tasks/backups.py) and by a move that
hands a slice's data part from its old host's agent to its new host's (operations/move.py)."""

from __future__ import annotations

import json

from sliceops import moves
from sliceops.inventory import Inventory

STATE_GROUP = "sliceops-monitor"  # the monitor reads the results; the backups stay root's


def agent_config(inv: Inventory, here: str | None = None, rows: dict[int, dict] | None = None) -> dict:
    """The agent's configuration on host `here` (default: the database host) (backup/README.md):
    every name it uses, computed by the model. Only the parts this host keeps: the database
    host has the cluster, the gateway and every slice's database; a slice's data directory and
    container are named on the host its data is on (`rows`: the gateway's, which name the old
    host of a slice whose move has not finished; see moves.data_hosts)."""
    b = inv.backups
    here = here or inv.database_host.name
    dumps = here == inv.database_host.name
    data = {sid for sid, name in moves.data_hosts(inv, rows).items() if name == here}
    return {
        "instance": inv.instance,
        "cluster": {"version": inv.postgres.version, "name": inv.cluster, "port": inv.postgres.port} if dumps else None,
        "dir": inv.backup_dir,
        "keep_daily": b.keep_daily,
        "keep_weekly": b.keep_weekly,
        "drill": b.drill,
        "parallel": b.parallel,
        "state_file": inv.backup_state,
        "state_group": STATE_GROUP,
        "gateway": {"database": inv.gateway.database, "owner": inv.gateway.role, "lock": inv.backup_lock(None)}
        if dumps else None,
        "slice_owner": inv.slice_defaults.role,
        "copy": copy_config(inv, here),
        "slices": [
            {
                "id": s.id,
                "database": s.database if dumps else None,
                "data_dir": inv.slice_data_dir(s.id) if s.id in data else None,
                "container": inv.container_name(s.id) if s.id in data else None,
                "status": s.status,
                "lock": inv.backup_lock(s.id),
            }
            for s in inv.slices
            if dumps or s.id in data
        ],
    }


def config_text(inv: Inventory, here: str | None, rows: dict[int, dict] | None) -> str:
    """The agent's configuration file as written on host `here` (by the deploy, and by a move
    that hands a slice's data part over)."""
    return json.dumps(agent_config(inv, here, rows), indent=2) + "\n"


def copy_config(inv: Inventory, here: str | None = None) -> dict | None:
    """backups.copy_to for the agent on host `here` (default: the database host)
    (backup/sliceops_backup/offsite.py); None: no copies. A pure slice host's copies go to a
    folder of their own (`<path>/<instance>-<host>`): the far side prunes by what is in the
    folder, and one host's data parts must never count against another host's dumps."""
    parts = inv.backups.copy_parts
    if parts is None:
        return None
    user, hostname, port, path = parts
    folder = inv.instance if here in (None, inv.database_host.name) else f"{inv.instance}-{here}"
    return {"user": user, "host": hostname, "port": port, "path": f"{path.rstrip('/')}/{folder}",
            "identity": inv.backup_copy_identity, "known_hosts": inv.backup_copy_known_hosts}
