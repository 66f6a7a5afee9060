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
