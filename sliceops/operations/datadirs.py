"""Slice data directories traversable by the monitor's group, so it can measure them without
root: owner the slice's user, group sliceops-monitor, setgid so new directories stay in the
group. Sizing needs stat() of each file, which takes only the directories' r and x: the
deploy never gives the group read access to the tenants' files."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops.facts.host import DataDirs
from sliceops.inventory import Inventory
from sliceops.operations.docker import DATA_GROUP, DATA_MODE
from sliceops.operations.util import as_script, chunked
from sliceops.shell import command


def share_command(dirs: list[str]) -> str:
    """Each slice's own directory gets exactly DATA_MODE (a fresh quota subvolume starts at
    0755, which adding group bits would never turn into 2750); the directories below it only
    get the group and g+rxs; files keep the modes their tenant gave them. CHUNK directories
    per command line, so none grows with the fleet."""
    return "\n".join(
        f"{command('chgrp', DATA_GROUP, *part)} && {command('chmod', DATA_MODE, *part)} && "
        f"{command('find', *part)} -mindepth 1 -type d -exec {command('chgrp', DATA_GROUP)} {{}} + -exec chmod g+rxs {{}} +"
        for part in chunked(dirs)
    )


@operation(is_idempotent=True)
def data_dirs_shared(inv: Inventory):
    have = host.get_fact(DataDirs, root=inv.slices_data_dir)
    wrong = sorted(
        path for s in inv.kept_slices()
        if (path := inv.slice_data_dir(s.id)) in have and have[path] != (DATA_GROUP, DATA_MODE)
    )
    if not wrong:
        host.noop(f"slice data directories are traversable by {DATA_GROUP}")
        return
    yield from as_script(inv.share_dir, "data-dirs", "set -e\n" + share_command(wrong))
