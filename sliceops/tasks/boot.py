"""A service's boot entry, the one way the deploy writes one: a systemd unit where PID 1 is
systemd, an LSB init script elsewhere (a container, or a host booted by sysvinit), both from
the pair of templates `templates/<kind>/sliceops-<kind>.service.j2` / `.init.j2`."""

from __future__ import annotations

from pyinfra.operations import files

from sliceops import factcache
from sliceops.facts.host import InitSystem
from sliceops.paths import TEMPLATES


def boot_entry(kind: str, name: str, variables: dict, why: str = ""):
    """Install `name`'s unit or init script; returns the operation (its `changed` restarts it)."""
    suffix = f" ({why})" if why else ""
    if factcache.steady(InitSystem) == "systemd":
        return files.template(
            name=f"Install the systemd unit {name}.service{suffix}",
            src=str(TEMPLATES / f"{kind}/sliceops-{kind}.service.j2"),
            dest=f"/etc/systemd/system/{name}.service", mode="644", **variables,
        )
    return files.template(
        name=f"Install the init script /etc/init.d/{name}{suffix}",
        src=str(TEMPLATES / f"{kind}/sliceops-{kind}.init.j2"),
        dest=f"/etc/init.d/{name}", mode="755", **variables,
    )
