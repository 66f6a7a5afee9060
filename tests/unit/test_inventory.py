"""The inventory contract: the default file, port computation, and every refusal.

Broken inventories are data: tests/unit/data/bad/*.yaml, with the exact report each must
produce in tests/unit/data/bad.yaml (a known loader bug is marked xfail there).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sliceops.errors import InventoryError
from sliceops.inventory import ACTIVE, DEFAULT_INVENTORY, DESTROYING, SUSPENDED, load, schema, slice_port

DATA = Path(__file__).parent / "data"
BAD = DATA / "bad"
TABLE = yaml.safe_load((DATA / "bad.yaml").read_text())

# "<file>:<line>: <key path>: <message>": the shape of every problem located in the file.
LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<path>\(top level\)|[A-Za-z_][\w.\[\]]*): (?P<msg>.+)$")


def _cases(*, with_xfail: bool = True):
    for name, entry in TABLE.items():
        marks = []
        if "xfail" in entry:
            if not with_xfail:
                continue
            marks.append(pytest.mark.xfail(strict=True, reason=entry["xfail"]))
        yield pytest.param(name, entry, id=name.removesuffix(".yaml"), marks=marks)


def _problems(path: Path) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        load(path)
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "slices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def inventory_of(tmp_path: Path, slices: list[dict], **sections) -> Path:
    return write(tmp_path, yaml.safe_dump({"target": "@local", **sections, "slices": slices}, sort_keys=False))


# --------------------------------------------------------------------------- the default file


def test_the_default_inventory_has_three_slices_on_5001_5003_5005():
    inv = load(DEFAULT_INVENTORY)
    assert inv.target == "@local"
    assert inv.instance == "main"
    assert [(s.id, s.port, s.status) for s in inv.slices] == [(1, 5001, ACTIVE), (2, 5003, ACTIVE), (3, 5005, ACTIVE)]
    assert [s.database for s in inv.slices] == ["wa_slice_1", "wa_slice_2", "wa_slice_3"]


@pytest.mark.parametrize("section", ["postgres", "gateway", "slice_defaults", "docker", "monitor"])
def test_an_omitted_section_takes_every_default_the_schema_documents(section):
    inv = load(DEFAULT_INVENTORY)
    documented = {k: v["default"] for k, v in schema()["properties"][section]["properties"].items() if "default" in v}
    assert documented, f"the schema documents no default for {section}"
    model = getattr(inv, section)
    got = {k: getattr(model, k) for k in documented}
    assert got == {k: tuple(v) if isinstance(v, list) else v for k, v in documented.items()}


def test_the_defaults_are_the_ones_the_issue_promises():
    inv = load(DEFAULT_INVENTORY)
    assert (inv.postgres.version, inv.postgres.port, inv.postgres.listen_addresses) == (15, 5432, ())
    assert (inv.gateway.database, inv.gateway.role) == ("wank_saas", "wank_gateway")
    assert inv.slice_defaults.role == "wa_slice"
    assert (inv.slice_defaults.port_base, inv.slice_defaults.port_step) == (5001, 2)
    assert (inv.monitor.interval, inv.monitor.retention_days, inv.monitor.prune_interval) == (60, 7, 3600)
    assert inv.docker.subnet == "172.30.0.0/24" and inv.docker.gateway_address == "172.30.0.1"


def test_every_section_overridden_is_read_into_the_model():
    inv = load(DATA / "good" / "every_section.yaml")
    assert inv.target == "ssh://deploy@db1.example.net:2222"
    assert inv.instance == "staging2" and inv.container_name(7) == "staging2-wa-slice-7"
    assert (inv.postgres.version, inv.postgres.port, inv.postgres.listen_addresses) == (16, 5433, ("10.0.0.5",))
    assert (inv.postgres.max_connections, inv.postgres.shared_buffers_mb, inv.postgres.work_mem_mb) == (300, 2048, None)
    assert (inv.gateway.database, inv.slice_defaults.role) == ("crm_gateway", "crm_slice")
    assert inv.slice_defaults.spares == 2  # default 0 (tests/unit/test_spares.py)
    assert (inv.docker.managed, inv.docker.gateway_address) == (False, "10.77.0.1")
    assert (inv.monitor.interval, inv.monitor.health_timeout) == (30, 1.5)
    # Sorted by id; per-slice limits override slice_defaults, the rest inherit them.
    assert [(s.id, s.port, s.status, s.force, s.memory, s.cpus, s.pids) for s in inv.slices] == [
        (1, 9000, ACTIVE, False, "1g", 1.0, 512),
        (2, 7011, DESTROYING, True, "512m", 1.0, 512),
        (4, 7031, SUSPENDED, False, "512m", 1.0, 512),
        (7, 7061, ACTIVE, False, "512m", 1.0, 512),
    ]
    assert [s.id for s in inv.kept_slices()] == [1, 4, 7]


# --------------------------------------------------------------------------- ports


@pytest.mark.parametrize(("slice_id", "port"), [(1, 5001), (2, 5003), (3, 5005), (10, 5019), (200, 5399), (30000, 64999)])
def test_a_slice_port_is_5001_plus_2_per_id_after_the_first(slice_id, port):
    assert slice_port(slice_id, 5001, 2) == port


def test_the_loaded_ports_follow_the_formula_for_200_slices(tmp_path):
    inv = load(inventory_of(tmp_path, [{"id": i} for i in range(1, 201)]))
    assert [s.port for s in inv.slices] == [5001 + 2 * (i - 1) for i in range(1, 201)]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param([1, 2, 3], [1, 3], id="remove-the-middle-one"),
        pytest.param([1, 2, 3], [2, 3], id="remove-the-first-one"),
        pytest.param([1, 2, 3], [1, 2, 3, 4], id="add-one-at-the-end"),
        pytest.param([1, 3], [1, 2, 3], id="fill-a-gap"),
        pytest.param([2, 5, 9], [9, 5, 2, 40], id="reorder-and-add"),
    ],
)
def test_adding_or_removing_a_slice_never_moves_another(tmp_path, before, after):
    ports_before = {s.id: s.port for s in load(inventory_of(tmp_path, [{"id": i} for i in before])).slices}
    ports_after = {s.id: s.port for s in load(inventory_of(tmp_path, [{"id": i} for i in after])).slices}
    kept = set(before) & set(after)
    assert kept, "the case must keep at least one slice"
    assert {i: ports_after[i] for i in kept} == {i: ports_before[i] for i in kept}


def test_an_explicit_port_overrides_only_its_own_slice(tmp_path):
    inv = load(inventory_of(tmp_path, [{"id": 1}, {"id": 2, "port": 6002}, {"id": 3}]))
    assert [(s.id, s.port) for s in inv.slices] == [(1, 5001), (2, 6002), (3, 5005)]


def test_port_base_and_step_come_from_slice_defaults(tmp_path):
    inv = load(inventory_of(tmp_path, [{"id": 1}, {"id": 4}], slice_defaults={"port_base": 8000, "port_step": 5}))
    assert [(s.id, s.port) for s in inv.slices] == [(1, 8000), (4, 8015)]


def test_a_slice_may_take_the_port_another_slice_would_have_computed_if_that_one_is_absent(tmp_path):
    # Slice 2 is not in the inventory, so 5003 is free for slice 1's override.
    inv = load(inventory_of(tmp_path, [{"id": 1, "port": 5003}, {"id": 3}]))
    assert [(s.id, s.port) for s in inv.slices] == [(1, 5003), (3, 5005)]


# --------------------------------------------------------------------------- every refusal


def test_the_table_and_the_bad_files_match():
    on_disk = {p.name for p in BAD.iterdir()}
    listed = {name for name, entry in TABLE.items() if not entry.get("absent")}
    absent = {name for name, entry in TABLE.items() if entry.get("absent")}
    assert on_disk == listed
    assert not on_disk & absent


@pytest.mark.parametrize(("name", "entry"), list(_cases()))
def test_a_bad_inventory_is_refused_with_exactly_these_problems(name, entry):
    path = BAD / name
    assert path.exists() != bool(entry.get("absent"))
    expected = [line.replace("{file}", str(path)) for line in entry["expect"]]
    assert _problems(path) == expected


@pytest.mark.parametrize(("name", "entry"), list(_cases(with_xfail=False)))
def test_every_problem_is_one_line_naming_the_file_first(name, entry):
    path = BAD / name
    for problem in _problems(path):
        assert "\n" not in problem
        assert problem.startswith(f"{path}:")
        assert "Traceback" not in problem


@pytest.mark.parametrize(
    ("name", "entry"),
    [p for p in _cases(with_xfail=False) if not p.values[0].startswith(("malformed", "tab_", "empty", "comments", "missing."))],
)
def test_a_located_problem_cites_the_line_that_holds_its_key(name, entry):
    """The line number is the one the user must edit: it holds the last key of the path
    (or the list item's dash), so an editor jump lands on the mistake."""
    path = BAD / name
    lines = path.read_text().splitlines()
    for problem in _problems(path):
        m = LOCATED.match(problem)
        assert m, f"not '<file>:<line>: <key path>: <message>': {problem!r}"
        assert m["file"] == str(path)
        if m["path"] == "(top level)":
            continue
        line = lines[int(m["line"]) - 1]
        last_key = re.findall(r"[A-Za-z_]\w*", m["path"])[-1]
        holds_key = re.search(rf"\b{last_key}\b", line) is not None
        if m["path"].endswith("]"):
            # A list item: its dash, or the key of a flow list on one line.
            assert holds_key or line.lstrip().startswith("-"), (problem, line)
        else:
            assert holds_key, (problem, line)


def test_several_problems_are_all_reported_together_sorted_by_line():
    path = BAD / "many_problems.yaml"
    problems = _problems(path)
    lines = [int(LOCATED.match(p)["line"]) for p in problems]
    assert len(problems) == 7
    assert lines == sorted(lines) == [2, 3, 5, 7, 8, 10, 11]
    # One of each: schema pattern, enum, range, duplicate, cross-entry port, unknown key.
    for needle in ["'ftp://x'", "'BAD'", "0 is out of range", "'gone'", "2 is a duplicate", "port 5432", "'extra'"]:
        assert sum(needle in p for p in problems) == 1, needle


def test_a_missing_file_names_the_path_as_given(tmp_path):
    path = tmp_path / "nowhere" / "slices.yaml"
    assert _problems(path) == [f"{path}: file not found"]


def test_an_unreadable_path_is_a_problem_not_a_crash(tmp_path):
    # A directory where the file should be: read_text raises IsADirectoryError (an OSError).
    assert _problems(tmp_path) == [f"{tmp_path}: cannot read: Is a directory"]


def test_the_valid_value_next_to_a_refused_one_is_not_reported(tmp_path):
    path = write(tmp_path, 'target: "@local"\nslices:\n  - id: 1\n  - id: 0\n  - id: 3\n')
    assert _problems(path) == [f"{path}:4: slices[1].id: 0 is out of range (must be >= 1)"]


def test_force_with_status_destroying_is_accepted(tmp_path):
    inv = load(inventory_of(tmp_path, [{"id": 1, "status": "destroying", "force": True}]))
    assert inv.slices[0].force is True and inv.kept_slices() == ()


def test_yaml_forms_of_the_same_integer_are_accepted(tmp_path):
    # Flow style, explicit !!int tag: still the integer 7.
    path = write(tmp_path, '{target: "@local", slices: [{id: !!int "7"}]}\n')
    assert [(s.id, s.port) for s in load(path).slices] == [(7, 5013)]


# --------------------------------------------------------------------------- YAML the loader cannot build


def test_yaml_merge_keys_load_as_pyyaml_reads_them():
    path = DATA / "unbuildable" / "merge_key.yaml"
    inv = load(path)
    assert [(s.id, s.memory, s.cpus) for s in inv.slices] == [(1, "1g", 2.0), (2, "1g", 2.0)]


def test_an_unknown_yaml_tag_is_a_problem_on_its_line():
    path = DATA / "unbuildable" / "local_tag.yaml"
    problems = _problems(path)
    assert len(problems) == 1 and problems[0].startswith(f"{path}:4: slices[0].id: ")


# --------------------------------------------------------------------------- slice_defaults.migrations


def _with_migrations(tmp_path: Path, value: str) -> Path:
    return inventory_of(tmp_path, [{"id": 1}], slice_defaults={"migrations": value})


def test_a_migrations_folder_is_resolved_from_the_inventory_files_folder(tmp_path):
    folder = tmp_path / "own-sql"
    folder.mkdir()
    (folder / "0001_init.sql").write_text("CREATE TABLE t (id int);\n")
    (folder / "README.md").write_text("notes are not migrations\n")
    inv = load(_with_migrations(tmp_path, "own-sql"))
    assert inv.slice_defaults.migrations == str(folder.resolve())
    assert inv.sql_dir("slice") == f"{inv.share_dir}/slice-migrations"
    assert inv.sql_dir("gateway") == f"{inv.share_dir}/sql/gateway"


def test_without_the_key_the_built_in_slice_migrations_are_used(tmp_path):
    inv = load(inventory_of(tmp_path, [{"id": 1}]))
    assert inv.slice_defaults.migrations is None
    assert inv.sql_dir("slice") == f"{inv.share_dir}/sql/slice"


@pytest.mark.parametrize(
    "files, problem",
    [
        (None, "{folder} does not exist"),
        ({}, "{folder} holds no NNNN_name.sql migration"),
        ({"notes.txt": "x"}, "{folder} holds no NNNN_name.sql migration"),
        ({"0001_init.sql": "A", "2_next.sql": "B"}, "{folder}/2_next.sql: migration files are named NNNN_lowercase_name.sql"),
        ({"0001_init.sql": "A", "0001_again.sql": "B"}, "{folder}/0001_init.sql: version 0001 is also 0001_again.sql"),
    ],
    ids=["missing", "empty", "no-sql-file", "misnamed", "duplicate-version"],
)
def test_a_migrations_folder_that_cannot_be_used_is_one_line_naming_file_key_and_value(tmp_path, files, problem):
    folder = tmp_path / "own-sql"
    if files is not None:
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    path = _with_migrations(tmp_path, "own-sql")
    line = path.read_text().splitlines().index("  migrations: own-sql") + 1
    assert _problems(path) == [f"{path}:{line}: slice_defaults.migrations: 'own-sql': " + problem.format(folder=folder)]


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    (tmp_path / "own-sql").write_text("not a folder")
    path = _with_migrations(tmp_path, "own-sql")
    line = path.read_text().splitlines().index("  migrations: own-sql") + 1
    assert _problems(path) == [f"{path}:{line}: slice_defaults.migrations: 'own-sql': {tmp_path / 'own-sql'} is not a folder"]


# --------------------------------------------------------------------------- hardening rules


@pytest.mark.parametrize("value", ["0", "0.0", "00.0.0.0", "000.000.000.000", "0x0", "0.0.0.0", "::", "::0",
                                   "0:0:0:0:0:0:0:0", "::ffff:0.0.0.0", "::ffff:0:0"])
def test_every_spelling_of_every_interface_is_refused(value):
    from sliceops.checks import listen_problem

    assert "every interface" in listen_problem(value)


@pytest.mark.parametrize("value", ["10.0.0.5", "::1", "fd00::5", "192.168.1.20"])
def test_a_plain_address_is_accepted(value):
    from sliceops.checks import listen_problem

    assert listen_problem(value) is None


def test_aliases_and_merge_keys_of_a_normal_file_still_load(tmp_path):
    path = write(tmp_path, (
        'target: "@local"\n'
        "slices:\n"
        "  - &one {id: 1, memory: 512m, cpus: 1}\n"
        "  - {<<: *one, id: 2}\n"
        "  - {<<: *one, id: 3, memory: 1g}\n"
    ))
    inv = load(path)
    assert [(s.id, s.memory, s.cpus) for s in inv.slices] == [(1, "512m", 1.0), (2, "512m", 1.0), (3, "1g", 1.0)]


def test_every_derived_name_comes_from_the_one_place():
    from sliceops import names

    inv = load(DEFAULT_INVENTORY)
    assert [s.database for s in inv.slices] == [names.slice_name(s.id) for s in inv.slices]
    assert [s.login_role for s in inv.slices] == [names.slice_name(s.id) for s in inv.slices]
    assert (inv.template_database, inv.monitor_role, inv.monitor_user) == (
        names.TEMPLATE_DB, names.MONITOR_ROLE, names.MONITOR_USER)
    assert inv.monitor_service == f"{names.MONITOR_USER}-main"


HOST = [("lo", "127.0.0.1/8"), ("eth0", "192.0.2.2/24"), ("eth0", "fd00::2/64"), ("so-main", "172.30.0.1/24"),
        ("so-other", "10.9.0.1/24")]


@pytest.mark.parametrize(("subnet", "bridge", "clash"), [
    ("192.0.2.0/24", "so-x", "192.0.2.2/24 on eth0"),      # the host's own network
    ("192.0.0.0/16", "so-x", "192.0.2.2/24 on eth0"),      # a wider one holding it
    ("10.9.0.128/25", "so-x", "10.9.0.1/24 on so-other"),  # another instance's slice network
    ("172.30.0.0/24", "so-x", "172.30.0.1/24 on so-main"),
])
def test_a_subnet_the_host_is_on_is_refused_naming_the_address(subnet, bridge, clash):
    from sliceops.checks import host_subnet_problem

    assert clash in host_subnet_problem(subnet, bridge, HOST)


@pytest.mark.parametrize(("subnet", "bridge"), [("172.30.0.0/24", "so-main"), ("10.50.0.0/24", "so-x")])
def test_the_instances_own_bridge_or_a_free_subnet_passes(subnet, bridge):
    from sliceops.checks import host_subnet_problem

    assert host_subnet_problem(subnet, bridge, HOST) is None


def test_host_addresses_are_read_from_ip_or_the_kernels_local_routes():
    from sliceops.facts.host import HostAddresses

    assert HostAddresses.parse(["lo 127.0.0.1/8", "eth0@if5 10.0.0.2/24", "? 192.0.2.2/32", "junk"]) == [
        ("lo", "127.0.0.1/8"), ("eth0", "10.0.0.2/24"), ("?", "192.0.2.2/32")]


# --------------------------------------------------------------------------- fleet-size limits (issue 15)


@pytest.mark.parametrize(("subnet", "holds"), [("172.30.0.0/24", 253), ("172.30.0.0/22", 1021),
                                               ("10.0.0.0/16", 65533), ("172.30.0.16/28", 13)])
def test_a_subnet_holds_its_addresses_less_network_broadcast_and_gateway(subnet, holds):
    from sliceops.names import subnet_capacity

    assert subnet_capacity(subnet) == holds


def test_a_slice_count_the_subnet_cannot_hold_is_one_line_naming_both(tmp_path):
    path = inventory_of(tmp_path, [{"id": i} for i in range(1, 255)])
    assert _problems(path) == [
        f"{path}:1: docker.subnet: '172.30.0.0/24' holds 253 slice containers (its addresses less the network, "
        "broadcast and gateway addresses) but the inventory keeps 254 slices: choose a larger subnet (a /23 holds 509)"
    ]


def test_the_subnet_holds_exactly_its_capacity_and_destroyed_slices_free_their_address(tmp_path):
    load(inventory_of(tmp_path, [{"id": i} for i in range(1, 254)]))
    load(inventory_of(tmp_path, [{"id": i} for i in range(1, 254)] + [{"id": 254, "status": "destroying"}]))
    # A suspended slice keeps its place: it may come back in service.
    assert len(_problems(inventory_of(tmp_path, [{"id": i} for i in range(1, 254)] + [{"id": 254, "status": "suspended"}]))) == 1


def test_500_slices_fit_a_22_and_the_refusal_names_the_subnet_key_line(tmp_path):
    load(inventory_of(tmp_path, [{"id": i} for i in range(1, 501)], docker={"subnet": "172.30.4.0/22"}))
    path = inventory_of(tmp_path, [{"id": i} for i in range(1, 15)], docker={"subnet": "172.30.0.16/28"})
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3: docker.subnet: '172.30.0.16/28' holds 13 slice containers")
    assert problem.endswith("keeps 14 slices: choose a larger subnet (a /27 holds 29)")


def test_ports_past_65535_from_base_and_step_are_refused_per_slice(tmp_path):
    path = inventory_of(tmp_path, [{"id": 1}, {"id": 2}], slice_defaults={"port_base": 65535, "port_step": 2})
    assert _problems(path) == [f"{path}:7: slices[1].id: port 65537 of slice 2 is out of range 1024-65535"]


def test_memory_limits_over_the_hosts_ram_are_a_warning_naming_both():
    from sliceops.checks import memory_overcommit

    gib = 1024 ** 3
    assert memory_overcommit([256 * 1024 ** 2] * 96, 24 * gib) is None  # exactly 24 GiB: fits
    warning = memory_overcommit([256 * 1024 ** 2] * 500, 24 * gib)
    assert warning.startswith("the memory limits of the 500 in-service slices add up to 125.0 GiB, more than "
                              "the host's 24.0 GiB of RAM")
    assert memory_overcommit([gib], None) is None


def test_in_a_fleet_each_host_has_its_own_slice_network(tmp_path):
    """The subnet is each host's: 400 slices over two hosts fit a /24 each; 254 on one do not."""
    hosts = {"db1": {"target": "ssh://root@10.0.0.10", "address": "10.0.0.10", "database": True},
             "app1": {"target": "ssh://root@10.0.0.11", "address": "10.0.0.11"}}

    def fleet(split):
        data = {"instance": "main", "hosts": hosts,
                "slices": [{"id": i, "host": "app1" if i <= split else "db1"} for i in range(1, 401)]}
        return write(tmp_path, yaml.safe_dump(data, sort_keys=False))

    load(fleet(200))
    (problem,) = _problems(fleet(254))
    assert "holds 253 slice containers" in problem and "but host 'app1' keeps 254 slices" in problem


# --------------------------------------------------------------------------- the monitor's beat (issue 15)


def test_a_health_timeout_not_shorter_than_the_interval_is_refused_naming_both(tmp_path):
    path = inventory_of(tmp_path, [{"id": 1}], monitor={"interval": 5, "health_timeout": 5})
    assert _problems(path) == [
        f"{path}:4: monitor.health_timeout: 5 is not shorter than monitor.interval 5: each cycle checks every "
        "slice's /health within its interval; choose a shorter health_timeout or a longer interval"
    ]


def test_an_interval_at_or_below_the_default_health_timeout_names_the_interval_the_file_gave(tmp_path):
    path = inventory_of(tmp_path, [{"id": 1}], monitor={"interval": 2})
    assert _problems(path) == [
        f"{path}:3: monitor.interval: 2 is not longer than monitor.health_timeout 2: each cycle checks every "
        "slice's /health within its interval; choose a longer interval or a shorter health_timeout"
    ]


@pytest.mark.parametrize(("interval", "timeout"), [(2, 1.9), (60, 2), (3, 2.5)])
def test_a_health_timeout_shorter_than_the_interval_is_accepted(tmp_path, interval, timeout):
    inv = load(inventory_of(tmp_path, [{"id": 1}], monitor={"interval": interval, "health_timeout": timeout}))
    assert (inv.monitor.interval, inv.monitor.health_timeout) == (interval, timeout)
