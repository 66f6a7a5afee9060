"""Issue 14: a tenant's credentials are made on the slice host whose container reads them;
the database host receives only the verifier computed there. And the slice host's firewall
lets its slices out to exactly the database host's PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import replace
import subprocess
from pathlib import Path

import pytest
import yaml

from sliceops.facts.postgres import Fleet
from sliceops.facts.tenant_credentials import StoredVerifiers, TenantCredentials
from sliceops.inventory import load
from sliceops.operations import firewall, tenants
from sliceops.operations.postgres import roles as pg

DATA = Path(__file__).parent / "data"
V1 = "SCRAM-SHA-256$4096:c2FsdA==$Y2xpZW50:c2VydmVy"


@pytest.fixture
def inv():
    return load(DATA / "good" / "fleet.yaml")


def test_each_slice_s_credentials_are_made_where_it_runs(inv):
    assert [inv.credentials_host(s) for s in inv.slices] == ["app1", "app2", "app1", "db1"]
    assert set(tenants.here_tenants(inv, "app1")) == {"wa_slice_1", "wa_slice_3"}
    assert tenants.here_tenants(inv, "db1") == {}  # the database host's roles step makes its own
    assert pg.remote_tenants(inv) == {"wa_slice_1": "app1", "wa_slice_2": "app2", "wa_slice_3": "app1"}


def test_a_target_file_makes_every_credential_on_its_one_host(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"target": "@local", "slices": [{"id": 1}, {"id": 2}]}))
    one = load(path)
    assert pg.remote_tenants(one) == {}
    assert one.remote_database_address(one.database_host.name) is None


def _run(text: str, tmp_path: Path, bin_dir: Path | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "script.sh"
    path.write_text(text.replace("/etc/sliceops", str(tmp_path / "etc")))
    env_path = f"{bin_dir}:/usr/bin:/bin" if bin_dir else "/usr/bin:/bin"
    return subprocess.run(["dash", str(path)], capture_output=True, text=True, timeout=60, env={"PATH": env_path})


def test_the_slice_host_makes_root_only_credentials_and_shows_only_verifiers(inv, tmp_path):
    mine = inv.for_host("app1")
    here = tenants.here_tenants(mine, "app1")
    empty = TenantCredentials().default()
    assert tenants.credentials_to_make(mine, here, empty) == ["wa_slice_1", "wa_slice_3"]
    out = _run(tenants.credentials_command(mine, ["wa_slice_1", "wa_slice_3"]), tmp_path)
    assert out.returncode == 0 and out.stdout == "", out.stderr  # the program's verifiers are dropped
    secrets = tmp_path / "etc" / "main" / "secrets"
    assert sorted(p.name for p in secrets.iterdir()) == [
        "wa_slice_1.env", "wa_slice_1.password", "wa_slice_3.env", "wa_slice_3.password"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in secrets.iterdir()) and secrets.stat().st_mode & 0o777 == 0o700
    password = (secrets / "wa_slice_1.password").read_text().strip()
    assert (secrets / "wa_slice_1.env").read_text() == (
        f"DATABASE_URL=postgresql://wa_slice_1:{password}@10.0.0.10:5432/wa_slice_1?sslmode=verify-full\n")

    # What the database host's roles step reads from here: a stable verifier per password, no password.
    fact = TenantCredentials().command(secrets_dir=str(secrets), prefix="wa_slice_")
    read = lambda: subprocess.run(["sh", "-c", fact], capture_output=True, text=True).stdout  # noqa: E731
    first = read()
    assert password not in first and first == read()
    have = TenantCredentials().process(first.splitlines())
    assert sorted(have["verifiers"]) == ["wa_slice_1", "wa_slice_3"]
    assert have["verifiers"]["wa_slice_1"].startswith("SCRAM-SHA-256$4096:")
    assert have["env_urls"]["wa_slice_1.env"] == pg.tenant_url(mine, mine.slice(1), "***")
    assert tenants.credentials_to_make(mine, here, have) == []
    # A second run keeps the passwords.
    assert _run(tenants.credentials_command(mine, ["wa_slice_1"]), tmp_path).returncode == 0
    assert (secrets / "wa_slice_1.password").read_text().strip() == password
    # A credentials file naming another database address is rewritten.
    moved = dict(have, env_urls={**have["env_urls"], "wa_slice_3.env": "postgresql://wa_slice_3:***@10.9.9.9:5432/x"})
    assert tenants.credentials_to_make(mine, here, moved) == ["wa_slice_3"]


def test_the_database_host_sets_remote_roles_from_their_verifiers_and_writes_no_password(inv, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fed = tmp_path / "psql.stdin"
    (bin_dir / "runuser").write_text(f"#!/bin/sh\ncat >{fed}\n")
    (bin_dir / "runuser").chmod(0o755)
    local = ["wank_gateway", "wa_slice", "wa_slice_4"]
    text = pg.roles_command(inv, local, with_monitor=False, remote=[("wa_slice_1", V1), ("wa_slice_2", None)])
    out = _run(text, tmp_path, bin_dir)
    assert out.returncode == 0, out.stderr
    secrets = tmp_path / "etc" / "main" / "secrets"
    assert sorted(p.name for p in secrets.iterdir()) == [
        "wa_slice.password", "wa_slice_4.env", "wa_slice_4.password", "wank_gateway.password"]
    sql = fed.read_text()
    assert f"\\set rpw0 '{V1}'" in sql.splitlines()
    assert """ALTER ROLE "wa_slice_1" WITH LOGIN CONNECTION LIMIT 5 PASSWORD :'rpw0';""" in sql
    assert """ALTER ROLE "wa_slice_2" WITH LOGIN CONNECTION LIMIT 5;""" in sql  # its host has not answered
    assert 'CREATE ROLE "wa_slice_2" LOGIN;' in sql
    assert len(re.findall(r"^\\set pw\d ", sql, re.M)) == 3
    assert V1 not in text.split("printf")[0]  # only the printf builtin carries it


def test_a_bad_verifier_never_reaches_psql(inv):
    with pytest.raises(ValueError):
        pg.roles_command(inv, [], with_monitor=False, remote=[("wa_slice_1", "x'; DROP ROLE postgres; --")])


def _state(**roles) -> Fleet:
    return Fleet(roles={r: {"login": True, "password": True, "connlimit": 5} for r in roles})


def test_which_remote_roles_change(inv):
    everyone = _state(wa_slice_1=1, wa_slice_2=1, wa_slice_3=1)
    computed = {"wa_slice_1": V1, "wa_slice_2": V1 + "x", "wa_slice_3": V1}
    stored = {"wa_slice_1": V1, "wa_slice_2": V1, "wa_slice_3": V1}
    # A verifier that differs from the stored one is set; the same one is left alone.
    assert pg.remote_to_converge(inv, everyone, computed, stored, True) == [("wa_slice_2", V1 + "x")]
    # A host that did not answer: its existing roles wait; a missing role is still created.
    assert pg.remote_to_converge(inv, _state(wa_slice_1=1, wa_slice_3=1), {}, stored, True) == [("wa_slice_2", None)]
    # Before execution a verifier not yet made counts as a change (the slice host makes it first).
    assert pg.remote_to_converge(inv, everyone, {"wa_slice_1": V1, "wa_slice_3": V1}, stored, False) == [
        ("wa_slice_2", None)]


def test_the_database_host_s_reading_of_stored_verifiers():
    assert StoredVerifiers().process([f"ROLE wa_slice_1 {V1}", "ROLE wa_slice_2 -", "noise"]) == {"wa_slice_1": V1}
    assert "wa\\\\_slice\\\\_%" in StoredVerifiers().command(port=5432, prefix="wa_slice_")


def test_a_remote_slice_host_lets_its_slices_reach_the_database_host_and_no_other_private_address(inv):
    assert inv.remote_database_address("app1") == "10.0.0.10"
    assert inv.remote_database_address("db1") is None
    for egress in ("allow", "deny"):
        mine = inv.for_host("app1")
        mine = replace(mine, docker=replace(mine.docker, egress=egress))
        forward = firewall.chain_rules(mine, [], "10.0.0.10")["SLICEOPS-FW-main"]
        allow = "-A SLICEOPS-FW-main -d 10.0.0.10/32 -p tcp -m tcp --dport 5432 -j RETURN"
        assert forward.index(allow) == 1  # after the answers, before any drop
        assert sum(" -j RETURN" in line and "10.0.0.10" in line for line in forward) == 1
        assert "-A SLICEOPS-FW-main -d 10.0.0.0/8 -j DROP" in forward or forward[-1] == "-A SLICEOPS-FW-main -j DROP"
        assert allow in firewall.apply_script(mine, [], "10.0.0.10")
    # The database host itself (or one host): no exception.
    assert not any("10.0.0.10" in line for line in firewall.desired(inv.for_host("db1"), []))
