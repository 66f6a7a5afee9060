"""The PostgreSQL cluster itself: created, running, enabled at boot; reloaded when its files
changed and restarted only when PostgreSQL says a changed setting needs it."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from sliceops import factcache, plan
from sliceops.facts.host import ServiceState
from sliceops.facts.postgres import PgCluster
from sliceops.operations.service import init_system
from sliceops.shell import command, quote


def _unit(version: int, cluster: str) -> str:
    return f"postgresql@{version}-{cluster}"


@operation(is_idempotent=True)
def cluster_exists(version: int, cluster: str, port: int):
    """Create the cluster when missing (Debian's package creates 15/main by itself)."""
    state = factcache.get(PgCluster, version=version, cluster=cluster)
    if state["exists"]:
        host.noop(f"cluster {version}/{cluster} exists")
        return
    yield command("pg_createcluster", version, cluster, "--port", port, "--start-conf", "auto") + " >/dev/null"


@operation(is_idempotent=True)
def cluster_running(version: int, cluster: str):
    """Running now and started at boot."""
    state = factcache.get(PgCluster, version=version, cluster=cluster)
    init = init_system()
    systemd = init == "systemd"
    # Under sysv the distribution's LSB script starts every cluster whose start.conf says auto.
    boot = host.get_fact(ServiceState, service=_unit(version, cluster) if systemd else "postgresql", init=init)
    if not boot["enabled"]:
        yield command("systemctl", "enable", "--quiet", _unit(version, cluster)) if systemd else "update-rc.d postgresql defaults >/dev/null"
    if not state["running"]:
        yield command("systemctl", "start", _unit(version, cluster)) if systemd else command("pg_ctlcluster", version, cluster, "start")
        return
    if boot["enabled"]:
        host.noop(f"cluster {version}/{cluster} is running and enabled at boot")


@operation(is_idempotent=False)
def cluster_reload(version: int, cluster: str):
    """Reload, then restart only if PostgreSQL says a changed setting waits for one
    (listen_addresses, port, shared_buffers, max_connections ...). Run it with
    `_if=changed(...)` on the configuration files' operations."""
    plan.record(f"postgres {version}/{cluster}", "reloaded", "configuration changed (restarted if a setting needs it)")
    systemd = init_system() == "systemd"
    restart = command("systemctl", "restart", _unit(version, cluster)) if systemd else command("pg_ctlcluster", version, cluster, "restart")
    # The running port is line 4 of postmaster.pid: the config file may already name a new one.
    yield (
        f"{command('pg_ctlcluster', version, cluster, 'reload')} && "
        f"datadir=$(pg_lsclusters -h | awk -v v={quote(version)} -v c={quote(cluster)} '$1 == v && $2 == c {{print $6}}') && "
        f"port=$(sed -n 4p \"$datadir/postmaster.pid\") && sleep 0.3 && "
        f"if [ \"$(runuser -u postgres -- psql -XAtq -p \"$port\" -d postgres "
        f"-c 'SELECT bool_or(pending_restart) FROM pg_settings')\" = t ]; then "
        f"echo 'sliceops: a changed setting needs a restart'; {restart}; fi"
    )
