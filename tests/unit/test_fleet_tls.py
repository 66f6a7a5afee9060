"""Issue 14 across hosts: which addresses PostgreSQL listens on and certifies, pg_hba.conf's
per-host lines, each slice's URL to the database host, and each slice host's monitor
configuration (its own role, verify-full, no prune)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from sliceops.inventory import load
from sliceops.operations import tls
from sliceops.operations.postgres.roles import tenant_url
from sliceops.tasks.monitor import config
from sliceops.tuning import listen_addresses, remote_slice_hosts

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "tests" / "unit" / "data" / "good" / "fleet.yaml"


def test_postgres_listens_on_and_certifies_the_database_hosts_address():
    inv = load(FLEET)
    assert "10.0.0.10" in listen_addresses(inv)
    assert "IP:10.0.0.10" in tls.certificate_sans(inv)


def test_each_slice_reaches_the_database_host_with_verify_full():
    inv = load(FLEET)
    assert tenant_url(inv, inv.slice(1), "***") == "postgresql://wa_slice_1:***@10.0.0.10:5432/wa_slice_1?sslmode=verify-full"
    # Slice 4 runs on the database host itself: over its bridge, still verify-full.
    assert tenant_url(inv, inv.slice(4), "***").startswith("postgresql://wa_slice_4:***@172.30.0.1:5432/")


def test_pg_hba_admits_each_hosts_slices_and_monitor_from_its_address_only():
    inv = load(FLEET)
    text = jinja2.Environment().from_string((ROOT / "templates/postgresql/pg_hba.conf.j2").read_text()).render(
        inv=inv, monitor_role="sliceops_monitor", remote=remote_slice_hosts(inv))
    lines = [line.split() for line in text.splitlines() if line.startswith("hostssl")]
    assert ["hostssl", "sameuser", "wa_slice_1,wa_slice_3", "10.0.0.11/32", "scram-sha-256"] in lines
    assert ["hostssl", "wank_saas", "sliceops_monitor_app1", "10.0.0.11/32", "scram-sha-256"] in lines
    assert ["hostssl", "sameuser", "wa_slice_2", "10.0.0.12/32", "scram-sha-256"] in lines
    assert not [line for line in text.splitlines() if line.startswith("host ") and "10.0.0." in line]


def test_a_slice_hosts_monitor_logs_in_as_its_own_role_over_tls_and_does_not_prune():
    inv = load(FLEET)
    app1 = config(inv, "app1")
    assert app1["database"] == {
        "host": "10.0.0.10", "port": 5432, "dbname": "wank_saas", "user": "sliceops_monitor_app1",
        "application_name": inv.monitor_service, "password_file": "/etc/sliceops/main/monitor.password",
        "sslmode": "verify-full", "sslrootcert": "/etc/sliceops/main/postgresql-ca.crt"}
    assert app1["prune"] is False and "database_sizes" not in app1  # the database host's monitor sizes them
    assert [s["id"] for s in app1["slices"]] == [1, 3]
    db1 = config(inv, "db1")
    assert db1["database"]["host"] == "/var/run/postgresql" and "prune" not in db1
    assert db1["database_sizes"] is True
    assert [s["id"] for s in db1["slices"]] == [4]
