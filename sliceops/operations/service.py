"""Keep a service running and enabled under systemd or an LSB init script; restart it only
when something it reads changed (`restart_if=changed(...)`), reload it (SIGHUP through its
unit's ExecReload or its script's `reload`) when only what it re-reads changed
(`reload_if=`), and do neither right after it was started by the same run."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops import factcache, plan
from sliceops.facts.host import InitSystem, ServiceState
from sliceops.operations.util import Changes
from sliceops.shell import command


def init_system() -> str:
    return factcache.steady(InitSystem)


def _ctl(service_name: str, verb: str, init: str) -> str:
    return command("systemctl", verb, service_name) if init == "systemd" else command(f"/etc/init.d/{service_name}", verb)


@operation(is_idempotent=True)
def running(service_name: str, restart_if=None, subject: str | None = None, reload_if=None):
    """Running now and started at boot; restarted when `restart_if()` (evaluated when the
    operation runs, e.g. `operations.util.changed(code=...)`) says what it reads once
    changed; reloaded when only `reload_if()` does (what the service re-reads on a reload,
    e.g. its configuration: the process, its pid and its beat go on). A service this
    operation starts already runs the new code and configuration, so it is neither.
    `subject` names the service in `sliceops plan`'s sentences."""
    init = init_system()
    state = host.get_fact(ServiceState, service=service_name, init=init)
    changed = bool(restart_if and restart_if())
    reload = not changed and bool(reload_if and reload_if())
    if state["running"] and state["enabled"] and not changed and not reload:
        host.noop(f"{service_name} is running and enabled ({init})")
        return
    subject = subject or service_name
    if not state["running"]:
        plan.record(subject, "started")
    elif changed or reload:
        why = restart_if if changed else reload_if
        reasons = why.which() if isinstance(why, Changes) else []
        plan.record(subject, "restarted" if changed else "reloaded",
                    f"{' and '.join(reasons)} changed" if reasons else "")
        if isinstance(why, Changes):
            why.explain()
    if not state["enabled"]:
        plan.record(subject, "enabled at boot")
    if init == "systemd" and (changed or not state["enabled"]):
        yield "systemctl daemon-reload"
    if not state["enabled"]:
        yield (command("systemctl", "enable", "--quiet", service_name) if init == "systemd"
               else command("update-rc.d", service_name, "defaults") + " >/dev/null")
    if not state["running"]:
        yield _ctl(service_name, "start", init)
    elif changed:
        yield _ctl(service_name, "restart", init)
    elif reload:
        yield _ctl(service_name, "reload", init)
