"""Slice data directories traversable by the monitor's group, so it can measure them without
root: owner the slice's user, group sliceops-monitor, setgid so new directories stay in the
group. Sizing needs stat() of each file, which takes only the directories' r and x: the
deploy never gives the group read access to the tenants' files."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, operation

from sliceops.inventory import Inventory
from sliceops.operations.docker import DATA_GROUP, DATA_MODE
from sliceops.shell import command, quote


class DataDirs(FactBase):
    """{path: (group, octal mode)} for every directory under the slices' data root, in one call."""

    def command(self, root: str) -> str:
        # The glob is the shell's, after the quoted root: it lists only that root's entries.
        return f"stat -c '%n %G %a' {quote(root)}/* 2>/dev/null; true"

    def process(self, output):
        dirs = {}
        for line in output:
            parts = line.split()
            if len(parts) == 3:
                dirs[parts[0]] = (parts[1], parts[2])
        return dirs

    def default(self):
        return {}


def share_command(dirs: list[str]) -> str:
    """Directories only get the group and g+rxs; files keep the modes their tenant gave them."""
    return f"{command('find', *dirs)} -type d -exec {command('chgrp', DATA_GROUP)} {{}} + -exec chmod g+rxs {{}} +"


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
    yield share_command(wrong)
