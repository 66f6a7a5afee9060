"""Is the host what the inventory says? Each check is one yes/no question about one thing."""

from __future__ import annotations

import json

import pytest

from sliceops.migrations import discover
from sliceops.shell import literal


def psql(host, inv, db: str, sql: str) -> str:
    cmd = host.run(
        "runuser -u postgres -- psql -XAtq -p %s -d %s -c %s", str(inv.postgres.port), db, sql
    )
    assert cmd.rc == 0, f"psql on {db} failed: {cmd.stderr.strip()}"
    return cmd.stdout.strip()


def is_systemd(host) -> bool:
    return host.file("/run/systemd/system").is_directory


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.database_host
def test_postgresql_is_running(host, inv):
    cmd = host.run(f"pg_ctlcluster {inv.postgres.version} {inv.cluster} status")
    # pg_ctl status: 0 running, 3 not running.
    assert cmd.rc == 0, f"PostgreSQL cluster {inv.postgres.version}/{inv.cluster} is not running"


def _listen_address(inv, where: str) -> str | None:
    """Where PostgreSQL must listen: loopback always; the slice bridge's gateway when slices
    run on the database host; its private address when slices run elsewhere (a fleet)."""
    if where == "loopback":
        return "127.0.0.1"
    if where == "slice bridge":
        return inv.docker.gateway_address if inv.database_host in inv.slice_hosts else None
    return inv.database_host.address if inv.multi_host else None


@pytest.mark.database_host
@pytest.mark.parametrize("where", ["loopback", "slice bridge", "private address"])
def test_postgresql_listens_where_it_should(host, inv, where):
    address = _listen_address(inv, where)
    if address is None:
        pytest.skip(f"no {where} to listen on here")
    assert host.socket(f"tcp://{address}:{inv.postgres.port}").is_listening, (
        f"PostgreSQL does not listen on {address}:{inv.postgres.port} ({where})"
    )


@pytest.mark.database_host
def test_postgresql_does_not_listen_on_all_interfaces(host, inv):
    for spec in (f"tcp://0.0.0.0:{inv.postgres.port}", f"tcp://:::{inv.postgres.port}"):
        assert not host.socket(spec).is_listening, f"PostgreSQL listens on all interfaces ({spec})"


def _assert_owned_and_current(host, inv, db: str, owner: str, kind: str) -> None:
    have = psql(host, inv, "postgres", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'")
    assert have == owner, f"database {db} is missing or owned by {have!r}, not {owner}"
    applied = psql(host, inv, db, "SELECT string_agg(version, ',' ORDER BY version) FROM sliceops.schema_migrations")
    expected = ",".join(m.version for m in discover(kind))
    assert applied == expected, f"{db} ledger is {applied!r}, expected {expected!r}"


@pytest.mark.database_host
def test_gateway_database_has_its_owner_and_a_current_ledger(host, inv):
    _assert_owned_and_current(host, inv, inv.gateway.database, inv.gateway.role, "gateway")


@pytest.mark.database_host
def test_slice_database_has_its_owner_and_a_current_ledger(host, inv, slice):
    _assert_owned_and_current(host, inv, slice.database, inv.slice_defaults.role, "slice")


@pytest.mark.database_host
def test_slice_is_registered_in_the_gateway(host, inv, slice):
    row = psql(host, inv, inv.gateway.database, f"SELECT port || ' ' || status FROM gateway.slices WHERE id = {slice.id}")
    assert row, f"gateway.slices has no row for slice {slice.id}"
    port, status = row.split()
    assert int(port) == slice.port, f"slice {slice.id} is registered on port {port}, not {slice.port}"
    if slice.status == "suspended":
        assert status == "suspended", f"slice {slice.id} is suspended in the inventory but {status} in the gateway"


@pytest.mark.database_host
def test_no_database_is_open_to_public(host, inv):
    open_dbs = psql(
        host, inv, "postgres",
        "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database "
        f"WHERE (datname ~ '^wa_slice_[0-9]+$' OR datname = '{inv.gateway.database}') "
        "AND has_database_privilege('public', oid, 'CONNECT')",
    )
    assert open_dbs == "", f"PUBLIC may connect to: {open_dbs}"


# --------------------------------------------------------------------------- secrets


@pytest.mark.database_host
def test_secrets_directory_is_root_only(host, inv):
    d = host.file(inv.secrets_dir)
    assert d.is_directory and d.user == "root" and d.mode == 0o700, (
        f"{inv.secrets_dir} must be a root-owned 0700 directory (mode {oct(d.mode)}, owner {d.user})"
    )


def test_slice_secrets_are_root_only(host, inv, slice):
    # Checked on the slice's host: in a fleet its credentials are made where its container reads them.
    for name in (f"{slice.login_role}.password", f"{slice.login_role}.env"):
        f = host.file(f"{inv.secrets_dir}/{name}")
        assert f.exists, f"{inv.secrets_dir}/{name} is missing"
        assert f.user == "root" and f.mode == 0o600, f"{name}: owner {f.user}, mode {oct(f.mode)}; want root 0600"


def test_slice_data_is_limited_to_its_disk_quota(host, inv, slice):
    if not inv.quota_enabled:
        pytest.skip("slice_defaults.disk: false (no quotas on this host)")
    mounted = host.run("findmnt -n -o FSTYPE --mountpoint %s", inv.slices_data_dir).stdout.strip()
    assert mounted == "btrfs", f"{inv.slices_data_dir} is not the slice volume (mounted there: {mounted or 'nothing'})"
    path = inv.slice_data_dir(slice.id)
    rootid = host.run("btrfs inspect-internal rootid %s", path).stdout.strip()
    show = host.run("btrfs qgroup show -re --raw %s", inv.slices_data_dir).stdout.splitlines()[2:]
    limits = {line.split()[0]: line.split()[3] for line in show}
    assert limits.get(f"0/{rootid}") == str(slice.disk_quota_bytes), (
        f"{path}: quota {limits.get(f'0/{rootid}', 'none')}, want {slice.disk_quota_bytes} bytes ({slice.disk})"
    )


@pytest.mark.slice_host
def test_slice_network_is_firewalled(host, inv):
    from sliceops.operations.firewall import hooks

    rules = host.run("iptables -w -S INPUT; iptables -w -S DOCKER-USER").stdout.splitlines()
    for hook in hooks(inv):
        assert hook in rules, f"missing firewall jump: {hook}"
    chain = host.run("iptables -w -S %s", inv.firewall_input_chain).stdout.splitlines()
    assert chain and chain[-1] == f"-A {inv.firewall_input_chain} -j DROP", f"{inv.firewall_input_chain}: {chain}"


# --------------------------------------------------------------------------- containers


def _inspect(host, name: str) -> dict | None:
    cmd = host.run("docker inspect %s", name)
    return json.loads(cmd.stdout)[0] if cmd.rc == 0 else None


def test_in_service_slice_container_is_running_and_healthy(host, inv, active_slice):
    name = inv.container_name(active_slice.id)
    info = _inspect(host, name)
    assert info is not None, f"container {name} does not exist"
    state = info["State"]
    assert state["Running"], f"container {name} is {state['Status']}, not running"
    health = state.get("Health", {}).get("Status")
    assert health in ("healthy", "starting"), f"container {name} health is {health}"


def test_in_service_slice_listens_on_loopback_only(host, inv, active_slice):
    port = active_slice.port
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, f"slice {active_slice.id}: nothing on 127.0.0.1:{port}"
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, f"slice {active_slice.id} is published on all interfaces"


def test_in_service_slice_answers_health(host, inv, active_slice):
    cmd = host.run(
        "python3 -c %s %s",
        "import sys,urllib.request,json;print(json.load(urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/health',timeout=5))['wa_state'])",
        str(active_slice.port),
    )
    assert cmd.rc == 0 and cmd.stdout.strip(), f"slice {active_slice.id}: /health on {active_slice.port} failed: {cmd.stderr.strip()[-200:]}"


def test_suspended_slice_container_is_stopped(host, inv, suspended_slice):
    info = _inspect(host, inv.container_name(suspended_slice.id))
    assert info is None or not info["State"]["Running"], f"slice {suspended_slice.id} is suspended but its container runs"


# --------------------------------------------------------------------------- monitor


def test_monitor_service_is_running(host, inv):
    name = inv.monitor_service
    if is_systemd(host):
        assert host.service(name).is_running, f"{name} is not running"
    else:
        # LSB status: 0 running, 3 not running.
        assert host.run(f"/etc/init.d/{name} status").rc == 0, f"{name} is not running"


def test_monitor_user_has_no_docker_socket(host):
    groups = host.user("sliceops-monitor").groups
    assert "docker" not in groups, f"sliceops-monitor is in the docker group ({groups}): docker inspect shows every DATABASE_URL"


@pytest.mark.database_host
def test_server_telemetry_is_fresh(host, inv, fleet_host):
    """Every host's monitor writes its server row, labelled with its host's name."""
    age = psql(host, inv, inv.gateway.database,
               "SELECT coalesce(extract(epoch FROM now() - max(timestamp))::int, -1) FROM gateway.server_telemetry "
               f"WHERE host = {literal(fleet_host.name)}")
    limit = 2 * inv.monitor.interval
    assert 0 <= int(age) <= limit, (
        f"newest server telemetry of host {fleet_host.name} is {age}s old (limit {limit}s; -1: none)")


@pytest.mark.database_host
def test_slice_telemetry_is_fresh(host, inv, active_slice):
    age = psql(host, inv, inv.gateway.database,
               "SELECT coalesce(extract(epoch FROM now() - max(timestamp))::int, -1) FROM gateway.telemetry "
               f"WHERE slice_id = {active_slice.id}")
    limit = 2 * inv.monitor.interval
    assert 0 <= int(age) <= limit, f"slice {active_slice.id}: newest telemetry is {age}s old (limit {limit}s; -1: none)"


# --------------------------------------------------------------------------- backups
# Every host runs the backup agent (a fleet's slice hosts archive their slices' data there).


def test_backup_configuration_is_root_only(host, inv):
    f = host.file(inv.backup_config)
    assert f.exists and f.user == "root" and f.mode == 0o600, (
        f"{inv.backup_config}: owner {f.user}, mode {oct(f.mode)}; want root 0600")


def test_nightly_backups_are_scheduled(host, inv):
    if is_systemd(host):
        timer = host.service(f"{inv.backup_service}.timer")
        assert timer.is_running and timer.is_enabled, f"{inv.backup_service}.timer is not active and enabled"
        return
    entry = host.file(f"/etc/cron.d/{inv.backup_service}")
    hour, minute = inv.backups.hour_minute
    assert entry.exists and f"{minute} {hour} * * * root " in entry.content_string, (
        f"/etc/cron.d/{inv.backup_service} lacks the {inv.backups.schedule} entry")
    assert host.run("/etc/init.d/cron status").rc == 0, "cron is not running"
