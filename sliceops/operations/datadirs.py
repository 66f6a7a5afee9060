"""Slice data directories readable by the monitor's group, so it can measure them (du) without
root: owner the slice's user, group sliceops-monitor, setgid so new files stay in the group."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, operation

from sliceops.inventory import Inventory
from sliceops.operations.docker import DATA_GROUP, DATA_MODE


class DataDirs(FactBase):
    """{path: (group, octal mode)} for every directory under the slices' data root, in one call."""

    def command(self, root: str) -> str:
        return f"stat -c '%n %G %a' {root}/* 2>/dev/null; true"

    def process(self, output):
        dirs = {}
        for line in output:
            parts = line.split()
            if len(parts) == 3:
                dirs[parts[0]] = (parts[1], parts[2])
        return dirs

    def default(self):
        return {}


@operation(is_idempotent=True)
def data_dirs_shared(inv: Inventory):
    have = host.get_fact(DataDirs, root=inv.slices_data_dir)
    wrong = sorted(
        path for s in inv.kept_slices()
        if (path := inv.slice_data_dir(s.id)) in have and have[path] != (DATA_GROUP, DATA_MODE)
    )
    if not wrong:
        host.noop(f"slice data directories are readable by {DATA_GROUP}")
        return
    dirs = " ".join(wrong)
    yield f"chgrp -R {DATA_GROUP} {dirs} && chmod -R g+rX {dirs} && find {dirs} -type d -exec chmod g+s {{}} +"
