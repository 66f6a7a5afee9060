"""PostgreSQL over TLS on a real converged instance: the deploy makes a CA and a server
certificate on the host, slices connect with sslmode=verify-full through the CA mounted in
their container, and pg_hba.conf refuses a plain connection and a tenant's connection to
another slice's database. A second deploy changes none of it. Row-level security
(sql/gateway/0005) lets a host's monitor write only its own host's slices."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.fix_deploy import run_deploy, teardown_instance

pytestmark = pytest.mark.integration

INSTANCE = "ftls1"
PG_PORT = 5491
SUBNET = "172.30.91.0/24"
GATEWAY = "172.30.91.1"
BASE = 6911
NAME = lambda sid: f"{INSTANCE}-wa-slice-{sid}"  # noqa: E731
TLS_DIR = Path(f"/etc/sliceops/{INSTANCE}/tls")


def sh(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    path = tmp_path_factory.mktemp("tls") / f"{INSTANCE}.yaml"
    path.write_text(yaml.safe_dump({
        "target": "@local", "instance": INSTANCE, "postgres": {"port": PG_PORT},
        "docker": {"subnet": SUBNET}, "slice_defaults": {"port_base": BASE, "disk": False},
        "monitor": {"interval": 3}, "slices": [{"id": 1}, {"id": 2}],
    }, sort_keys=False))
    result = run_deploy(path)
    assert result.returncode == 0, result.output[-4000:]
    yield path
    teardown_instance(INSTANCE)


# Runs in slice 1's container on its own python3 and psycopg (libpq): argv[1] is a libpq
# keyword string appended to the container's DATABASE_URL's settings.
_CONNECT = """
import os, sys, psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
args = conninfo_to_dict(os.environ["DATABASE_URL"])
args.update(conninfo_to_dict(sys.argv[1]))
try:
    with psycopg.connect(make_conninfo(**args), connect_timeout=5) as conn:
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        print("ok", row[0], row[1])
except psycopg.Error as exc:
    print("refused", str(exc).strip().splitlines()[0])
"""


def connect_from_slice(extra: str = "") -> str:
    out = sh("docker", "exec", NAME(1), "python3", "-c", _CONNECT, extra)
    return out.stdout.strip() or out.stderr.strip()


def test_the_ca_key_is_roots_alone_and_the_server_key_postgres_readable(deployed):
    assert oct((TLS_DIR / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert (TLS_DIR / "ca.key").stat().st_uid == 0
    key = TLS_DIR / "server.key"
    assert oct(key.stat().st_mode & 0o777) == "0o640" and key.stat().st_uid == 0
    sans = sh("openssl", "x509", "-in", str(TLS_DIR / "server.crt"), "-noout", "-ext", "subjectAltName").stdout
    assert f"IP Address:{GATEWAY}" in sans and "IP Address:127.0.0.1" in sans


def test_a_slice_connects_with_verify_full_through_its_mounted_ca(deployed):
    env = json.loads(sh("docker", "inspect", "--format", "{{json .Config.Env}}", NAME(1)).stdout)
    assert "PGSSLROOTCERT=/etc/sliceops/postgresql-ca.crt" in env
    url = next(e for e in env if e.startswith("DATABASE_URL="))
    assert url.endswith(f"@{GATEWAY}:{PG_PORT}/wa_slice_1?sslmode=verify-full")
    assert connect_from_slice().startswith("ok True TLSv1.")
    # The file is the host's copy of the CA, read-only in the container.
    write = sh("docker", "exec", NAME(1), "sh", "-c", "echo x >> /etc/sliceops/postgresql-ca.crt")
    assert write.returncode != 0
    with urllib.request.urlopen(f"http://127.0.0.1:{BASE}/health", timeout=10) as resp:
        assert json.loads(resp.read())["db"] == "ok"


def test_verify_full_refuses_a_certificate_the_ca_did_not_sign(deployed):
    """The same connection, trusting the system's CAs instead of the instance's: refused."""
    out = connect_from_slice("sslrootcert=/etc/ssl/certs/ca-certificates.crt")
    assert out.startswith("refused"), out
    assert "certificate verify failed" in out or "root certificate file" in out, out


def test_a_plain_connection_is_refused(deployed):
    out = connect_from_slice("sslmode=disable")
    assert out.startswith("refused") and "no pg_hba.conf entry" in out and "no encryption" in out, out


def test_a_tenant_cannot_open_another_slices_database(deployed):
    out = connect_from_slice("dbname=wa_slice_2")
    assert out.startswith("refused") and "no pg_hba.conf entry" in out and 'database "wa_slice_2"' in out, out


def test_a_second_deploy_changes_no_certificate_url_or_container(deployed):
    started = sh("docker", "inspect", "--format", "{{.State.StartedAt}}", NAME(1)).stdout
    crt = (TLS_DIR / "server.crt").read_bytes()
    result = run_deploy(deployed)
    assert result.returncode == 0, result.output[-4000:]
    changed = " | ".join(result.changed_ops)
    assert "TLS certificate" not in changed and "CA certificate" not in changed and "Create roles" not in changed, changed
    assert (TLS_DIR / "server.crt").read_bytes() == crt
    assert sh("docker", "inspect", "--format", "{{.State.StartedAt}}", NAME(1)).stdout == started


# --------------------------------------------------------------------------- per-host monitors


def psql(sql: str, database: str = "wank_saas") -> subprocess.CompletedProcess:
    return sh("runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-p", str(PG_PORT),
              "-d", database, "-c", sql)


def test_the_monitor_writes_telemetry_under_row_level_security(deployed):
    """The database host's monitor (no host of its own in sliceops_fleet.monitor_hosts) still writes
    every slice's rows, now by INSERT (COPY FROM is refused under RLS)."""
    assert psql("SELECT relrowsecurity FROM pg_class WHERE oid = 'gateway.telemetry'::regclass").stdout.strip() == "t"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = psql("SELECT count(DISTINCT slice_id) FROM gateway.telemetry WHERE \"timestamp\" > now() - interval '20 s'")
        if rows.stdout.strip() == "2":
            return
        time.sleep(1)
    pytest.fail(f"no fresh telemetry for both slices: {rows.stdout} {rows.stderr}")


def test_a_host_monitor_may_write_only_its_own_hosts_slices(deployed):
    """A monitor role mapped to host app9, which runs slice 1 only: its rows for slice 1 go
    in, a row for slice 2 (another host's) is refused by the database itself."""
    setup = psql(
        "DROP ROLE IF EXISTS sliceops_monitor_app9; CREATE ROLE sliceops_monitor_app9;"
        "GRANT USAGE ON SCHEMA gateway TO sliceops_monitor_app9;"
        "GRANT SELECT ON gateway.slices TO sliceops_monitor_app9;"
        "GRANT INSERT ON gateway.telemetry, gateway.server_telemetry TO sliceops_monitor_app9;"
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO sliceops_monitor_app9;"
        "INSERT INTO sliceops_fleet.monitor_hosts VALUES ('sliceops_monitor_app9', 'app9');"
        "UPDATE gateway.slices SET host = 'app9' WHERE id = 1;"
    )
    assert setup.returncode == 0, setup.stderr
    try:
        own = psql("SET ROLE sliceops_monitor_app9; "
                   "INSERT INTO gateway.telemetry (slice_id, \"timestamp\", wa_state) VALUES (1, now(), 'OPENING');"
                   "INSERT INTO gateway.server_telemetry (host, \"timestamp\") VALUES ('app9', now());"
                   "SELECT count(*) FROM gateway.slices;")
        assert own.returncode == 0 and own.stdout.strip() == "1", own.stderr  # sees its own host's slice only
        other = psql("SET ROLE sliceops_monitor_app9; "
                     "INSERT INTO gateway.telemetry (slice_id, \"timestamp\", wa_state) VALUES (2, now(), 'OPENING')")
        assert other.returncode != 0
        assert 'violates row-level security policy "own_host" for table "telemetry"' in other.stderr, other.stderr
        label = psql("SET ROLE sliceops_monitor_app9; "
                     "INSERT INTO gateway.server_telemetry (host, \"timestamp\") VALUES ('app1', now())")
        assert 'row-level security policy "own_host" for table "server_telemetry"' in label.stderr, label.stderr
    finally:
        psql("DELETE FROM sliceops_fleet.monitor_hosts WHERE role = 'sliceops_monitor_app9';"
             "UPDATE gateway.slices SET host = (SELECT host FROM gateway.slices WHERE id = 2) WHERE id = 1;"
             "DELETE FROM gateway.telemetry WHERE wa_state = 'OPENING'; DELETE FROM gateway.server_telemetry WHERE host = 'app9';"
             "REVOKE ALL ON ALL TABLES IN SCHEMA gateway FROM sliceops_monitor_app9;"
             "REVOKE ALL ON ALL SEQUENCES IN SCHEMA gateway FROM sliceops_monitor_app9;"
             "REVOKE ALL ON SCHEMA gateway FROM sliceops_monitor_app9; DROP ROLE sliceops_monitor_app9;")
