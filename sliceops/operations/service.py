"""Keep a service running and enabled under systemd or an LSB init script; restart it only
when something it reads changed (call `restart` with `_if=any_changed(...)`)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops import factcache
from sliceops.facts.host import InitSystem, ServiceState


def init_system() -> str:
    return factcache.get(InitSystem)


def _ctl(service_name: str, verb: str, init: str) -> str:
    return f"systemctl {verb} {service_name}" if init == "systemd" else f"/etc/init.d/{service_name} {verb}"


@operation(is_idempotent=True)
def running(service_name: str):
    """Running now and started at boot."""
    init = init_system()
    state = host.get_fact(ServiceState, service=service_name, init=init)
    if state["running"] and state["enabled"]:
        host.noop(f"{service_name} is running and enabled ({init})")
        return
    if not state["enabled"]:
        if init == "systemd":
            yield "systemctl daemon-reload"
            yield f"systemctl enable --quiet {service_name}"
        else:
            yield f"update-rc.d {service_name} defaults >/dev/null"
    if not state["running"]:
        yield _ctl(service_name, "start", init)


@operation(is_idempotent=False)
def restart(service_name: str):
    """Restart (after `systemctl daemon-reload` on systemd, for a changed unit file)."""
    init = init_system()
    if init == "systemd":
        yield "systemctl daemon-reload"
    yield _ctl(service_name, "restart", init)
