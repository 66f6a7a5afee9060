"""Bad input through the real entry points: every broken inventory is refused before
anything changes on this machine (issue 5).

Each file of the bad-inventory table (tests/unit/data/bad.yaml; the known loader bugs
marked xfail there are left to the unit tier) goes through both ways a user deploys:
`sliceops deploy --inventory <bad>` and the plain `pyinfra -y inventory/hosts.py
deploy.py` with SLICEOPS_INVENTORY=<bad>. Each must exit 2, print the problem naming the
value, never reach pyinfra's connect stage, and leave the host as it found it: a snapshot
of what a deploy changes (containers and networks, the cluster, its databases, roles and
slice rows, the files under /etc/sliceops and the cluster's configuration) is equal before
and after.

Every bad file deploys instance `main` (the default), so the snapshot covers main's
resources only: other instances, which integration tests create and remove (possibly at
the same time, when several suites run on one machine), are not part of it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sliceops.errors import InventoryError
from sliceops.inventory import load
from sliceops.paths import ROOT

pytestmark = pytest.mark.integration

DATA = ROOT / "tests" / "unit" / "data"
TABLE = yaml.safe_load((DATA / "bad.yaml").read_text())
BIN = Path(sys.executable).parent  # the venv the suite runs in: .venv/bin under make
PG_VERSION, PG_CLUSTER = 15, "main"
INSTANCE = "main"
ETC_SLICEOPS = Path("/etc/sliceops")
PG_ETC = Path(f"/etc/postgresql/{PG_VERSION}/{PG_CLUSTER}")
REFUSED = 2  # sliceops' exit status for a refused inventory; inventory/hosts.py exits with it too


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _answers(*cmd: str) -> bool:
    try:
        return shutil.which(cmd[0]) is not None and _run(*cmd).returncode == 0
    except subprocess.TimeoutExpired:
        return False


DOCKER_UP = _answers("docker", "info", "--format", "{{.ServerVersion}}")
# pg_ctlcluster status: 0 running, 3 stopped, 4 no such cluster.
PG_UP = _answers("pg_ctlcluster", str(PG_VERSION), PG_CLUSTER, "status")

if not (DOCKER_UP or PG_UP):
    pytest.skip(
        f"neither PostgreSQL {PG_VERSION}/{PG_CLUSTER} nor a Docker engine is up: nothing a refused deploy "
        "could have changed would be observable (run `make deploy` first)",
        allow_module_level=True,
    )


def _psql(database: str, sql: str) -> list[str]:
    proc = _run("runuser", "-u", "postgres", "--", "psql", "--cluster", f"{PG_VERSION}/{PG_CLUSTER}", "-XAtq",
                "-d", database, "-c", sql)
    # A database that does not exist (yet) is part of the state too.
    return proc.stdout.splitlines() if proc.returncode == 0 else [f"<psql failed: {proc.stderr.strip()}>"]


def _listing(root: Path, skip_dirs: tuple[str, ...] = ()) -> list[tuple]:
    """Every path under root with its mode, size and mtime: what a deploy's writes touch."""
    if not root.exists():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in skip_dirs]
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            out.append((str(path.relative_to(root)), oct(st.st_mode), st.st_size, st.st_mtime_ns))
    return sorted(out)


def _other_instances() -> tuple[str, ...]:
    if not ETC_SLICEOPS.is_dir():
        return ()
    return tuple(p.name for p in ETC_SLICEOPS.iterdir() if p.is_dir() and p.name != INSTANCE)


def _main_only(lines: list[str], pattern: str) -> list[str]:
    return sorted(line for line in lines if re.match(pattern, line))


def snapshot() -> dict:
    state: dict = {
        # /etc/sliceops/main and anything at the top level, other instances' folders aside.
        "files /etc/sliceops": _listing(ETC_SLICEOPS, skip_dirs=_other_instances()),
        f"files {PG_ETC}": _listing(PG_ETC),
    }
    if shutil.which("pg_lsclusters"):
        # Column widths follow the longest row, other instances' clusters included: normalise.
        clusters = [" ".join(line.split()) for line in _run("pg_lsclusters", "-h").stdout.splitlines()]
        state["cluster"] = _main_only(clusters, rf"{PG_VERSION} {PG_CLUSTER} ")
    if DOCKER_UP:
        containers = _run("docker", "ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines()
        state["containers"] = _main_only(containers, r"wa-slice-\d+ ")  # main's names have no prefix
        networks = _run("docker", "network", "ls", "--format", "{{.Name}}").stdout.splitlines()
        state["network"] = _main_only(networks, rf"sliceops-{INSTANCE}$")
    if PG_UP:
        state["databases"] = _psql("postgres", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database ORDER BY 1")
        state["roles"] = _psql("postgres", "SELECT rolname, rolcanlogin FROM pg_roles ORDER BY 1")
        state["gateway.slices"] = _psql("wank_saas", "SELECT id, port, status FROM gateway.slices ORDER BY id")
    return state


def _cases():
    for name, entry in TABLE.items():
        if "xfail" in entry:
            continue
        for runner in ("sliceops", "pyinfra"):
            yield pytest.param(name, entry, runner, id=f"{name.removesuffix('.yaml')}-{runner}")


def deploy(runner: str, inventory: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SLICEOPS_INVENTORY=str(inventory))
    if runner == "sliceops":
        cmd = [str(BIN / "sliceops"), "deploy", "--inventory", str(inventory)]
    else:
        cmd = [str(BIN / "pyinfra"), "-y", "inventory/hosts.py", "deploy.py"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_at_least_fifteen_kinds_of_bad_input_are_exercised():
    kinds = {entry["kind"] for entry in TABLE.values() if "xfail" not in entry}
    assert len(kinds) >= 15, sorted(kinds)


@pytest.mark.parametrize(("name", "entry", "runner"), list(_cases()))
def test_a_bad_inventory_is_refused_and_the_host_is_unchanged(tmp_path, name, entry, runner):
    path = DATA / "bad" / name if not entry.get("absent") else tmp_path / name
    assert path.exists() != bool(entry.get("absent"))
    # Guard: if the loader ever accepted this file, the command below would really deploy.
    try:
        load(path)
    except InventoryError:
        pass
    else:
        pytest.fail(f"{name} ({entry['kind']}) passes validation; not deploying it")

    before = snapshot()
    proc = deploy(runner, path)
    after = snapshot()

    output = proc.stdout + proc.stderr
    assert proc.returncode == REFUSED, output[-2000:]
    for line in entry["expect"]:
        assert line.replace("{file}", str(path)) in proc.stderr, proc.stderr
    assert "Traceback" not in output
    # pyinfra stopped while loading its inventory: it never connected to the target.
    assert "--> Connecting to hosts" not in output and "--> Beginning operation run" not in output, output[-2000:]
    changed = {key: (before[key], after.get(key)) for key in before if before[key] != after.get(key)}
    assert not changed, f"{runner} with {name} changed the host: {changed}"


# --------------------------------------------------------------------------- checks that need the host


def _bridge_networks() -> dict[str, str]:
    """{interface: address/prefix} of the sliceops bridges on this host (so-<instance>)."""
    out = _run("ip", "-o", "-4", "addr", "show").stdout.splitlines()
    return {w[1]: w[3] for w in (line.split() for line in out) if len(w) > 3 and w[1].startswith("so-")}


@pytest.mark.skipif(not DOCKER_UP, reason="needs the slice network of a converged instance")
def test_a_subnet_the_host_is_already_on_is_refused_after_reading_the_host_and_before_any_change(make_inventory):
    """docker.subnet overlapping one of the host's own networks (here another instance's
    slice bridge, present wherever `make deploy` ran) passes the file checks but is refused
    by the deploy's first step, once the host's addresses are read: nothing of the new
    instance exists afterwards."""
    bridges = _bridge_networks()
    if not bridges:
        pytest.skip("no sliceops bridge on this host (run `make deploy` first)")
    interface, cidr = sorted(bridges.items())[0]
    subnet = str(ipaddress.ip_interface(cidr).network)
    instance = "hrdnet1"
    path = make_inventory(instance, [{"id": 1}], postgres={"port": 5491}, docker={"subnet": subnet},
                          slice_defaults={"port_base": 7491})
    load(path)  # the file alone is fine
    before = snapshot()
    proc = deploy("sliceops", path)
    after = snapshot()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert f"docker.subnet: '{subnet}' overlaps {cidr} on {interface}, an address of the target host" in output
    assert "Traceback" not in output
    assert before == after
    assert not Path(f"/etc/sliceops/{instance}").exists()
    assert _run("docker", "network", "inspect", f"sliceops-{instance}").returncode != 0
    assert "does not exist" in _run("pg_ctlcluster", "15", instance, "status").stderr  # no such cluster
