"""Host-level operations pyinfra's own do not cover the way this tool needs."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.deb import DebPackages


@operation(is_idempotent=True)
def packages(names: list[str]):
    """Install missing Debian packages; refresh the index only when something is missing."""
    installed = host.get_fact(DebPackages)
    missing = [n for n in names if n not in installed]
    if not missing:
        host.noop(f"{', '.join(names)} installed")
        return
    yield (
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
        f"apt-get install -y -qq --no-install-recommends {' '.join(missing)}"
    )
