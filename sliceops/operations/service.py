"""Keep a service running and enabled under systemd or an LSB init script; restart it only
when something it reads changed (`restart_if=changed(...)`), and never right after it
was started by the same run."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops import factcache, plan
from sliceops.facts.host import InitSystem, ServiceState
from sliceops.operations.util import Changes
from sliceops.shell import command


def init_system() -> str:
    return factcache.get(InitSystem)


def _ctl(service_name: str, verb: str, init: str) -> str:
    return command("systemctl", verb, service_name) if init == "systemd" else command(f"/etc/init.d/{service_name}", verb)


@operation(is_idempotent=True)
def running(service_name: str, restart_if=None, subject: str | None = None):
    """Running now and started at boot; restarted when `restart_if()` (evaluated when the
    operation runs, e.g. `operations.util.changed(configuration=...)`) says what it reads
    changed. A service this operation starts already runs the new code and configuration,
    so it is not restarted. `subject` names the service in `sliceops plan`'s sentences."""
    init = init_system()
    state = host.get_fact(ServiceState, service=service_name, init=init)
    changed = bool(restart_if and restart_if())
    if state["running"] and state["enabled"] and not changed:
        host.noop(f"{service_name} is running and enabled ({init})")
        return
    subject = subject or service_name
    if not state["running"]:
        plan.record(subject, "started")
    elif changed:
        reasons = restart_if.which() if isinstance(restart_if, Changes) else []
        plan.record(subject, "restarted", f"{' and '.join(reasons)} changed" if reasons else "")
        if isinstance(restart_if, Changes):
            restart_if.explain()
    if not state["enabled"]:
        plan.record(subject, "enabled at boot")
    if init == "systemd" and (changed or not state["enabled"]):
        yield "systemctl daemon-reload"
    if not state["enabled"]:
        yield (command("systemctl", "enable", "--quiet", service_name) if init == "systemd"
               else command("update-rc.d", service_name, "defaults") + " >/dev/null")
    yield _ctl(service_name, "restart" if state["running"] else "start", init)
