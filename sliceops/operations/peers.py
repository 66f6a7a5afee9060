"""The fleet from one host's operation: which inventory host this is, and facts read on
another host of the same deploy (public material only: a CA certificate, a verifier)."""

from __future__ import annotations

from pyinfra import host, state


def this_host(inv) -> str:
    """The inventory name of the host the operation runs on (pyinfra's host.data
    `sliceops_host`; the database host when pyinfra names none: a `target:` file)."""
    return host.data.get("sliceops_host") or inv.database_host.name


def peer_fact(name: str, cls, **kwargs):
    """Fact `cls` of the deploy's host whose `sliceops_host` is `name` (this host when it is
    that one, or when the deploy has no such host: a `target:` file)."""
    if host.data.get("sliceops_host", name) != name:
        for other in state.inventory:
            if other.data.get("sliceops_host") == name:
                return other.get_fact(cls, **kwargs)
    return host.get_fact(cls, **kwargs)


def database_pyinfra_host(inv):
    """The pyinfra host of the inventory's database host, None when it is not connected."""
    name = inv.database_host.name
    return next((h for h in state.active_hosts if h.data.get("sliceops_host") == name), None)
