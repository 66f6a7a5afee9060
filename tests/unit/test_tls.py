"""PostgreSQL's TLS: the certificate's names, when it is (re)issued, the facts' parsers, and
the tenant URL the roles step writes and compares (verify-full)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from sliceops.facts.postgres import PgFleet, env_urls_command
from sliceops.facts.tls import PgTls, TlsState
from sliceops.inventory import load
from sliceops.operations import tls
from sliceops.operations.postgres.roles import roles_to_converge, tenant_url


def inventory(tmp_path: Path, **extra):
    data = {"target": "@local", "instance": "blue", "docker": {"subnet": "172.30.9.0/24"},
            "slices": [{"id": 1}, {"id": 2}], **extra}
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    return load(path)


def test_the_certificate_names_every_address_postgres_listens_on(tmp_path):
    inv = inventory(tmp_path, postgres={"listen_addresses": ["10.0.0.10"]})
    assert tls.certificate_sans(inv) == ["IP:10.0.0.10", "IP:127.0.0.1", "IP:172.30.9.1"]


def test_a_certificate_is_issued_only_when_needed():
    sans = ["IP:127.0.0.1", "IP:172.30.9.1"]
    good = TlsState(ca_key=True, ca_pem="PEM", server=True, sans=sans, signed=True, fresh=True)
    assert tls.certificate_plan(good, sans) == (False, False)
    assert tls.certificate_plan(TlsState(), sans) == (True, True)
    assert tls.certificate_plan(TlsState(**{**good.__dict__, "sans": sans[:1]}), sans) == (False, True)
    assert tls.certificate_plan(TlsState(**{**good.__dict__, "signed": False}), sans) == (False, True)
    assert tls.certificate_plan(TlsState(**{**good.__dict__, "fresh": False}), sans) == (False, True)
    # A lost CA key: a new CA (and so a new certificate); the old CA cannot sign any more.
    assert tls.certificate_plan(TlsState(**{**good.__dict__, "ca_key": False}), sans) == (True, True)


def test_the_tls_fact_reads_openssls_words():
    state = PgTls.parse([
        "CAKEY", "CA_BEGIN", "-----BEGIN CERTIFICATE-----", "MIIB", "-----END CERTIFICATE-----", "", "CA_END",
        "SERVER", "SANS IP Address:172.30.9.1, IP Address:127.0.0.1", "SIGNED", "FRESH",
    ])
    assert state.ca_key and state.server and state.signed and state.fresh
    assert state.ca_pem == "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert state.sans == ["IP:127.0.0.1", "IP:172.30.9.1"]
    assert PgTls.parse([]) == TlsState()


def test_the_tenant_url_asks_for_verify_full(tmp_path):
    inv = inventory(tmp_path)
    assert tenant_url(inv, inv.slice(2), "pw") == (
        "postgresql://wa_slice_2:pw@172.30.9.1:5432/wa_slice_2?sslmode=verify-full")


def test_a_credentials_file_with_another_url_is_rewritten(tmp_path):
    """The fact reads each .env's URL with the password masked, on a real file here."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "wa_slice_1.env").write_text("DATABASE_URL=postgresql://wa_slice_1:Abc123@172.30.9.1:5432/wa_slice_1\n")
    inv = inventory(tmp_path)
    (secrets / "wa_slice_2.env").write_text("DATABASE_URL=" + tenant_url(inv, inv.slice(2), "Xyz789") + "\n")
    out = subprocess.run(["sh", "-c", env_urls_command(str(secrets))], capture_output=True, text=True).stdout
    assert "Abc123" not in out and "Xyz789" not in out
    fleet = PgFleet.parse(["SECRETS x", *out.splitlines()])
    assert fleet.env_urls == {
        "wa_slice_1.env": "postgresql://wa_slice_1:***@172.30.9.1:5432/wa_slice_1",
        "wa_slice_2.env": "postgresql://wa_slice_2:***@172.30.9.1:5432/wa_slice_2?sslmode=verify-full",
    }
    fleet.roles = {r: {"login": True, "password": True, "connlimit": 5}
                   for r in ("wank_gateway", "wa_slice", "wa_slice_1", "wa_slice_2")}
    fleet.secrets = [f"{r}.password" for r in fleet.roles] + ["wa_slice_1.env", "wa_slice_2.env"]
    # Slice 1's file predates TLS: rewritten (its password kept); slice 2's is current.
    assert roles_to_converge(inv, fleet) == ["wa_slice_1"]


def test_every_credentials_file_of_a_fleet_is_read_masked_in_one_pass(tmp_path):
    """300 files: each URL read with its password masked (the first DATABASE_URL line only),
    a file without one read as an empty URL; one awk, not a sed and a head per file."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for i in range(1, 301):
        (secrets / f"wa_slice_{i}.env").write_text(
            f"PGSSLROOTCERT=/x\nDATABASE_URL=postgresql://wa_slice_{i}:Pw{i}x@10.0.0.1:5432/wa_slice_{i}\n"
            "DATABASE_URL=postgresql://other:Second@h/x\n")
    (secrets / "wa_slice_301.env").write_text("PGSSLROOTCERT=/x\n")
    command = env_urls_command(str(secrets))
    assert command.count("awk") == 1 and "sed" not in command and "for " not in command
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout
    assert "Pw1x" not in out and "Second" not in out
    urls = PgFleet.parse(["SECRETS x", *out.splitlines()]).env_urls
    assert len(urls) == 301 and urls["wa_slice_301.env"] == ""
    assert urls["wa_slice_250.env"] == "postgresql://wa_slice_250:***@10.0.0.1:5432/wa_slice_250"
