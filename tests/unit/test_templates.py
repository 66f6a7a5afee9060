"""The PostgreSQL configuration templates, rendered exactly as the deploy renders them
(same variables as sliceops.tasks.postgres_server) with an undefined variable an error."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import jinja2
import pytest
import yaml

from sliceops.inventory import DEFAULT_INVENTORY, load
from sliceops.names import MONITOR_ROLE
from sliceops.paths import TEMPLATES
from sliceops.tuning import connection_budget, listen_addresses, pg_tuning, remote_slice_hosts

GIB = 1024**3
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)


def render(name: str, inv, ram_bytes: int = 8 * GIB) -> str:
    return ENV.get_template(f"postgresql/{name}").render(
        inv=inv,
        monitor_role=MONITOR_ROLE,
        tuning=pg_tuning(inv, ram_bytes),
        listen=listen_addresses(inv),
        ram_bytes=ram_bytes,
        remote=remote_slice_hosts(inv),
    )


def settings(conf: str) -> dict[str, str]:
    """postgresql.conf lines `name = value` -> {name: value without quotes}."""
    out = {}
    for line in conf.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, value = (part.strip() for part in line.split("=", 1))
            assert name not in out, f"{name} set twice"
            out[name] = value.strip("'")
    return out


def hba_rules(hba: str) -> list[list[str]]:
    return [line.split() for line in hba.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def default_inv():
    return load(DEFAULT_INVENTORY)


def _inventory(tmp_path: Path, n: int, **sections):
    path = tmp_path / f"{n}.yaml"
    path.write_text(yaml.safe_dump({"target": "@local", **sections, "slices": [{"id": i} for i in range(1, n + 1)]}))
    return load(path)


@pytest.fixture
def inv_200(tmp_path):
    return _inventory(tmp_path, 200)


@pytest.mark.parametrize("template", sorted(p.name for p in (TEMPLATES / "postgresql").glob("*.j2")))
@pytest.mark.parametrize("size", ["default", "200"])
def test_every_template_renders_with_only_the_variables_the_deploy_passes(template, size, default_inv, inv_200):
    text = render(template, default_inv if size == "default" else inv_200)
    assert text.strip()
    assert "{{" not in text and "{%" not in text


# --------------------------------------------------------------------------- sliceops.conf


@pytest.mark.parametrize("size", ["default", "200"])
def test_postgresql_listens_on_loopback_and_the_bridge_gateway_only(size, default_inv, inv_200):
    inv = default_inv if size == "default" else inv_200
    conf = settings(render("sliceops.conf.j2", inv))
    assert conf["listen_addresses"] == "127.0.0.1,172.30.0.1"
    assert conf["port"] == "5432"


def test_extra_listen_addresses_are_appended_never_replacing_loopback(tmp_path):
    inv = _inventory(tmp_path, 3, postgres={"listen_addresses": ["10.1.2.3"]}, docker={"subnet": "10.88.0.0/24"})
    conf = settings(render("sliceops.conf.j2", inv))
    assert conf["listen_addresses"] == "127.0.0.1,10.88.0.1,10.1.2.3"


@pytest.mark.parametrize(("version", "compression"), [(15, "lz4"), (17, "lz4"), (14, "on"), (13, "on")])
def test_wal_compression_is_what_the_server_version_understands(tmp_path, version, compression):
    inv = _inventory(tmp_path, 3, postgres={"version": version})
    conf = settings(render("sliceops.conf.j2", inv))
    assert conf["wal_compression"] == compression and conf["jit"] == "off"


@pytest.mark.parametrize("size", ["default", "200"])
def test_no_rendered_address_means_every_interface(size, default_inv, inv_200):
    inv = default_inv if size == "default" else inv_200
    for address in settings(render("sliceops.conf.j2", inv))["listen_addresses"].split(","):
        assert address != "*"
        assert not ipaddress.ip_address(address).is_unspecified, address


@pytest.mark.parametrize(("n", "expected"), [(3, 100), (16, 100), (17, 250), (46, 250), (47, 500), (200, 1250),
                                             (246, 1250), (247, 1500)])
def test_max_connections_grows_with_the_slices_in_steps(tmp_path, n, expected):
    inv = _inventory(tmp_path, n)
    assert connection_budget(n) == expected
    assert settings(render("sliceops.conf.j2", inv))["max_connections"] == str(expected)


def test_slices_being_destroyed_do_not_count_toward_max_connections(tmp_path):
    path = tmp_path / "s.yaml"
    slices = [{"id": i} for i in range(1, 31)] + [{"id": i, "status": "destroying"} for i in range(31, 61)]
    path.write_text(yaml.safe_dump({"target": "@local", "slices": slices}))
    # 30 slices kept: 20 + 5 x 30 = 170, rounded up to the step (60 would need 320: 500).
    assert settings(render("sliceops.conf.j2", load(path)))["max_connections"] == "250"


def test_adding_a_slice_changes_no_setting_that_restarts_postgresql_between_steps(tmp_path):
    """Only a crossed step of max_connections (a restart: every tenant disconnected) moves
    with the slice count; from 200 slices the next 46 adds leave the file as it is."""
    confs = {n: render("sliceops.conf.j2", _inventory(tmp_path, n)) for n in (200, 201, 246)}
    assert confs[200] == confs[201] == confs[246]
    assert confs[246] != render("sliceops.conf.j2", _inventory(tmp_path, 247))


@pytest.mark.parametrize(
    ("ram_gib", "size", "expected"),
    [
        # 25% / 50% / RAM / (4 * max_connections) / 5% capped at 1024.
        (24, "default", {"shared_buffers": "6144MB", "effective_cache_size": "12288MB", "work_mem": "61MB",
                         "maintenance_work_mem": "1024MB"}),
        (24, "200", {"shared_buffers": "6144MB", "effective_cache_size": "12288MB", "work_mem": "4MB",
                     "maintenance_work_mem": "1024MB"}),
        (64, "default", {"shared_buffers": "8192MB", "effective_cache_size": "32768MB", "work_mem": "64MB",
                         "maintenance_work_mem": "1024MB"}),
        (1, "default", {"shared_buffers": "256MB", "effective_cache_size": "512MB", "work_mem": "4MB",
                        "maintenance_work_mem": "64MB"}),
    ],
)
def test_memory_settings_derive_from_the_ram_passed_in(ram_gib, size, expected, default_inv, inv_200):
    conf = settings(render("sliceops.conf.j2", default_inv if size == "default" else inv_200, ram_gib * GIB))
    assert {k: conf[k] for k in expected} == expected
    assert f"host's {ram_gib * 1024} MiB of RAM" in render("sliceops.conf.j2", default_inv, ram_gib * GIB)


def test_inventory_values_override_the_derived_ones(tmp_path):
    inv = _inventory(tmp_path, 3, postgres={"port": 5440, "max_connections": 250, "shared_buffers_mb": 512, "work_mem_mb": 8})
    conf = settings(render("sliceops.conf.j2", inv, 24 * GIB))
    assert (conf["port"], conf["max_connections"], conf["shared_buffers"], conf["work_mem"]) == ("5440", "250", "512MB", "8MB")
    assert conf["effective_cache_size"] == "12288MB"  # not overridden: still derived
    assert pg_tuning(inv, 24 * GIB)["work_mem_mb"] == 8


def test_passwords_are_stored_as_scram(default_inv):
    assert settings(render("sliceops.conf.j2", default_inv))["password_encryption"] == "scram-sha-256"


# --------------------------------------------------------------------------- pg_hba.conf / pg_ident.conf


@pytest.mark.parametrize("size", ["default", "200"])
def test_pg_hba_trusts_nobody_and_opens_nothing_to_the_world(size, default_inv, inv_200):
    rules = hba_rules(render("pg_hba.conf.j2", default_inv if size == "default" else inv_200))
    assert rules, "no rules rendered"
    for rule in rules:
        method = rule[3] if rule[0] == "local" else rule[4]
        assert method in ("peer", "scram-sha-256"), rule
        assert "trust" not in rule and "password" not in rule and "md5" not in rule, rule
        if rule[0].startswith("host"):
            network = ipaddress.ip_network(rule[3], strict=False)
            assert network.prefixlen > 0, rule  # 0.0.0.0/0, ::/0
            assert network.is_loopback or network == ipaddress.ip_network("172.30.0.0/24"), rule


def test_pg_hba_lets_slice_roles_open_only_their_own_database_from_the_subnet(default_inv):
    rules = hba_rules(render("pg_hba.conf.j2", default_inv))
    from_subnet = [r for r in rules if r[0].startswith("host") and r[3] == "172.30.0.0/24"]
    # hostssl: a plain connection from the subnet finds no rule and is refused.
    assert from_subnet == [["hostssl", "sameuser", "all", "172.30.0.0/24", "scram-sha-256"]]


def test_pg_hba_follows_the_inventory_names(tmp_path):
    inv = _inventory(tmp_path, 2, gateway={"database": "gw", "role": "gwrole"}, docker={"subnet": "10.9.0.0/24"})
    rules = hba_rules(render("pg_hba.conf.j2", inv))
    assert ["host", "gw", "gwrole", "127.0.0.1/32", "scram-sha-256"] in rules
    assert ["hostssl", "sameuser", "all", "10.9.0.0/24", "scram-sha-256"] in rules
    assert ["local", "gw", MONITOR_ROLE, "peer", "map=sliceops"] in rules


def test_pg_hba_gives_the_postgres_superuser_the_local_socket_only(default_inv):
    rules = hba_rules(render("pg_hba.conf.j2", default_inv))
    assert [r for r in rules if "postgres" in r[1:3]] == [["local", "all", "postgres", "peer"]]


def test_pg_ident_maps_the_monitor_system_user_only(default_inv):
    rules = hba_rules(render("pg_ident.conf.j2", default_inv))
    assert rules == [["sliceops", "sliceops-monitor", MONITOR_ROLE]]


def test_every_rendered_file_names_its_source_and_instance(default_inv):
    for name in ("sliceops.conf.j2", "pg_hba.conf.j2", "pg_ident.conf.j2"):
        first = render(name, default_inv).splitlines()[0]
        assert re.fullmatch(rf"# Managed by sliceops \(instance main\) from templates/postgresql/{re.escape(name)}\.", first)
