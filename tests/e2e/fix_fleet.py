"""A fleet of three disposable Debian 12 hosts for multi-host end-to-end tests (issue 14).

The session fixture `fleet` boots three containers of the one `sliceops/systemd-host:bookworm`
image (images/systemd-host/build.sh), each with systemd as PID 1, on a Docker network of the
test's own (`sliceops-fleet-e2e`, 10.214.0.0/24) with a private address each, sshd on port 22
of that address, reached from this machine over SSH with a throwaway key:

    db    10.214.0.10   the database host (PostgreSQL, gateway, every slice database)
    app1  10.214.0.11   a slice host, its own Docker engine
    app2  10.214.0.12   a slice host, its own Docker engine

Unlike tests/e2e/fix_systemd_host.py (whose host shares this machine's network and engine),
every host has its own network namespace (its own addresses, routes and iptables) and each
slice host runs its own `dockerd` from Debian's docker.io, overlay2 on a tmpfs, as a systemd
unit; the slice containers it starts are not in this machine's engine, and their published
ports are on the slice host's loopback. What a host container needs for that (measured on
this machine's engine, cgroup v1, --privileged refused): SYS_ADMIN (systemd) and NET_ADMIN
(the inner engine's bridge and iptables, the deploy's firewall), seccomp and AppArmor
unconfined (the inner runc's mounts and keyring calls), `--cgroupns host` with /sys/fs/cgroup
mounted read-write (the inner engine makes its containers' cgroups), /var/lib/docker a tmpfs
(overlay2 cannot stack on the container's own overlay root).

What is shared, and so not like separate machines: the kernel and its one cgroup hierarchy
(an inner engine's containers get cgroups at the hierarchy's root, beside this machine's; a
slice's cgroup path is the same on either slice host, so a moved slice keeps its path), and
the CPUs and memory.

Before any deploy, each slice host gets docker.io installed (the same apt command the deploy
runs, which then finds it there) and the slice image loaded from this machine's engine
(`docker save | docker load`): the deploy builds the reference image only when it is missing,
which offline means a debootstrap per slice host, minutes each, and the image can reach an
engine only once that engine exists. A production host converged from nothing gets both from
the deploy; here the deploy's "Install the Docker engine" step finds it done.

Environment:
  SLICEOPS_KEEP_E2E_FLEET=1     keep the three containers, the network and the key after the run
  SLICEOPS_E2E_BOOT_TIMEOUT=S   seconds to wait for each boot and sshd (default 120)
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.e2e.fix_systemd_host import (
    IMAGE,
    SystemdHost,
    _boot_timeout,
    _docker,
    _docker_cp_files,
    _docker_exec,
    _ensure_image,
    _require_docker,
    _say,
    _wait_for_ssh,
    _wait_until_booted,
    _write_key_pair,
)

NETWORK = "sliceops-fleet-e2e"
SUBNET = "10.214.0.0/24"
SSH_PORT = 22
# name -> (private address, database host?, runs slices?)
LAYOUT = {
    "db": ("10.214.0.10", True, False),
    "app1": ("10.214.0.11", False, True),
    "app2": ("10.214.0.12", False, True),
}
CONTAINER_PREFIX = "sliceops-fleet-"
ROLE_LABEL = "org.sliceops.role=e2e-fleet-host"
SLICE_IMAGE = "sliceops/slice-backend:1"

# fix_systemd_host's systemd flags, then what an engine of the host's own needs (see above);
# no --network host and no borrowed socket.
DOCKER_RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN",
    "--cap-add", "NET_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--cgroupns", "host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
    "--tmpfs", "/var/lib/docker:exec",
    "--label", ROLE_LABEL,
]

# What the deploy's system.packages runs for a missing package (sliceops/operations/system.py).
INSTALL_ENGINE = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
                  "apt-get install -y -qq --no-install-recommends docker.io")


@dataclass
class FleetHost(SystemdHost):
    """One booted host of the fleet: SystemdHost's SSH helpers, on its private address."""

    name: str = ""
    database: bool = False
    slices: bool = False

    @property
    def ssh_target(self) -> str:
        return f"ssh://{self.user}@{self.address}"  # port 22: a production-like target

    def inventory_entry(self) -> dict[str, object]:
        """The host's entry under `hosts:` (FLEET.md)."""
        entry: dict[str, object] = {"target": self.ssh_target, "address": self.address}
        if self.database:
            entry["database"] = True
        return entry


@dataclass
class Fleet:
    """The three hosts, the key that opens them all and the known_hosts that names them all."""

    hosts: dict[str, FleetHost]
    key_path: Path
    known_hosts_path: Path
    workdir: Path
    network: str = NETWORK
    subnet: str = SUBNET
    setup_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def database_host(self) -> FleetHost:
        return next(h for h in self.hosts.values() if h.database)

    @property
    def slice_hosts(self) -> list[FleetHost]:
        return [h for h in self.hosts.values() if h.slices]

    def inventory(self, slices: list[dict], **top: object) -> dict[str, object]:
        """A multi-host inventory (FLEET.md) for these hosts: `slices` entries carry `host`;
        `top` adds or overrides top-level keys (instance, postgres, docker, slice_defaults ...)."""
        data: dict[str, object] = {
            "instance": "fleet",
            "ssh_key": str(self.key_path),
            "ssh_known_hosts": str(self.known_hosts_path),
            "hosts": {name: h.inventory_entry() for name, h in self.hosts.items()},
        }
        data.update(top)
        data["slices"] = slices
        return data

    def write_inventory(self, path: Path, slices: list[dict], **top: object) -> Path:
        path.write_text(yaml.safe_dump(self.inventory(slices, **top), sort_keys=False))
        return path


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """Three freshly booted hosts for the whole session, removed with their network at the end."""
    keep = os.environ.get("SLICEOPS_KEEP_E2E_FLEET") == "1"
    fleet = boot_fleet(keep=keep)

    yield fleet

    if keep:
        _say(f"fleet kept (SLICEOPS_KEEP_E2E_FLEET=1): ssh -F {fleet.workdir / 'ssh_config'} app1")
        return
    remove_fleet(fleet)


def boot_fleet(keep: bool = False) -> Fleet:
    """Boot the three hosts (removing a fleet an interrupted run left), install each slice
    host's engine and load the slice image into it. Used by the fixture above and by
    bench/fleet_converge.py (a fresh fleet per from-scratch converge). On failure the hosts
    are removed unless `keep`."""
    _require_docker()
    started = time.monotonic()
    built_in = _ensure_image()
    workdir = Path(tempfile.mkdtemp(prefix="sliceops-e2e-fleet-"))
    key_path, known_hosts_path = workdir / "id_ed25519", workdir / "known_hosts"
    hosts = {
        name: FleetHost(
            container=CONTAINER_PREFIX + name, port=SSH_PORT, address=address, key_path=key_path,
            known_hosts_path=known_hosts_path, ssh_config_path=workdir / "ssh_config", ssh_alias=name,
            name=name, database=database, slices=slices,
        )
        for name, (address, database, slices) in LAYOUT.items()
    }
    fleet = Fleet(hosts=hosts, key_path=key_path, known_hosts_path=known_hosts_path, workdir=workdir)
    try:
        _remove(fleet)  # a fleet left by an interrupted run
        public_key = _write_key_pair(key_path)
        _docker("network", "create", "--driver", "bridge", "--subnet", SUBNET, "--label", ROLE_LABEL, NETWORK)
        for h in hosts.values():
            _docker("create", "--name", h.container, "--hostname", h.name, "--network", NETWORK,
                    "--ip", h.address, *DOCKER_RUN_FLAGS, IMAGE)
            _docker_cp_files(h.container, {
                "root/.ssh/authorized_keys": (public_key, 0o600),
                "etc/ssh/sshd_config.d/10-listen.conf": (f"ListenAddress {h.address}\nPort {SSH_PORT}\n", 0o644),
            })
            _docker("start", h.container)
        for h in hosts.values():
            _wait_until_booted(h, _boot_timeout())
        _write_ssh_client_files(fleet)
        for h in hosts.values():
            _wait_for_ssh(h, _boot_timeout())
        fleet.setup_seconds["image"] = built_in
        fleet.setup_seconds["boot"] = time.monotonic() - started - built_in
        mark = time.monotonic()
        _provision_engines(fleet)
        fleet.setup_seconds["engines"] = time.monotonic() - mark
    except BaseException:
        if not keep:
            _remove(fleet)
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    _say("fleet: " + ", ".join(f"{h.name} {h.address}" for h in hosts.values()) + "; "
         + ", ".join(f"{k} {v:.1f}s" for k, v in fleet.setup_seconds.items()))
    return fleet


def remove_fleet(fleet: Fleet) -> None:
    """Close testinfra's connections, remove the hosts, their network and the key's folder."""
    for h in fleet.hosts.values():
        if "testinfra_host" in h.__dict__:
            h.testinfra_host.backend.client.close()
    _remove(fleet)
    shutil.rmtree(fleet.workdir, ignore_errors=True)


def _write_ssh_client_files(fleet: Fleet) -> None:
    """One known_hosts naming every host by its address (port 22: no [address]:port form), read
    out of band from the keys each generated at boot, and an ssh_config with one alias per host."""
    lines, config = [], []
    for h in fleet.hosts.values():
        keys = _docker_exec(h.container, "cat /etc/ssh/ssh_host_*_key.pub", check=True).stdout.splitlines()
        lines += [f"{h.address} {' '.join(k.split()[:2])}\n" for k in keys if k.strip()]
        config.append(
            f"Host {h.name}\n    HostName {h.address}\n    Port {SSH_PORT}\n    User {h.user}\n"
            f"    IdentityFile {fleet.key_path}\n    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {fleet.known_hosts_path}\n    StrictHostKeyChecking yes\n"
        )
    fleet.known_hosts_path.write_text("".join(lines))
    (fleet.workdir / "ssh_config").write_text("".join(config))


def _provision_engines(fleet: Fleet) -> None:
    """docker.io on every slice host, and the slice image in each engine (see the docstring)."""
    _require_current_slice_image()
    with concurrent.futures.ThreadPoolExecutor(len(fleet.slice_hosts)) as pool:
        for future in [pool.submit(_provision_engine, h) for h in fleet.slice_hosts]:
            future.result()


def _provision_engine(h: FleetHost) -> None:
    install = h.run(INSTALL_ENGINE, timeout=900)
    if install.returncode != 0:
        pytest.fail(f"{h.name}: installing docker.io failed:\n{(install.stdout + install.stderr)[-3000:]}",
                    pytrace=False)
    deadline = time.monotonic() + 60
    while h.run("docker info --format '{{.ID}}'", timeout=30).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"{h.name}: its Docker engine does not answer 60 s after installing docker.io:\n"
                        + h.run("systemctl status --no-pager docker; journalctl -u docker -n 30 --no-pager").stdout,
                        pytrace=False)
        time.sleep(1)
    save = subprocess.Popen(["docker", "save", SLICE_IMAGE], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "exec", "-i", h.container, "docker", "load", "--quiet"],
                          stdin=save.stdout, capture_output=True, text=True, timeout=300)
    save.stdout.close()
    if save.wait(timeout=60) != 0 or load.returncode != 0:
        pytest.fail(f"{h.name}: docker save {SLICE_IMAGE} | docker load failed: {load.stderr.strip()}", pytrace=False)


def _require_current_slice_image() -> None:
    """The reference slice image, built from this checkout's images/slice-backend, must be in
    this machine's engine (`make deploy` builds it): the deploy on the slice hosts then finds
    it current and builds nothing."""
    from sliceops.operations.docker import RECIPE_LABEL, recipe_digest

    have = _docker("image", "inspect", "--format", f'{{{{ index .Config.Labels "{RECIPE_LABEL}" }}}}', SLICE_IMAGE,
                   check=False)
    if have.returncode != 0:
        pytest.exit(f"the fleet's slice hosts need {SLICE_IMAGE} from this machine's engine: it is not there "
                    "(make deploy builds it)")
    if have.stdout.decode().strip() != recipe_digest():
        pytest.exit(f"{SLICE_IMAGE} in this machine's engine was built from another images/slice-backend than "
                    "this checkout's (make deploy rebuilds it)")


def _remove(fleet: Fleet) -> None:
    """Remove the hosts and the network. The inner engines' containers go first, by their own
    engines: their cgroups live in this machine's hierarchy (--cgroupns host) and only the engine
    that made them removes them; whatever is left (a host killed mid-run) is removed by path."""
    leftovers: list[str] = []
    for h in fleet.hosts.values():
        if _docker("inspect", h.container, check=False).returncode != 0:
            continue
        ids = _docker_exec(h.container, "docker ps -aq --no-trunc 2>/dev/null", timeout=60).stdout.split()
        leftovers += [f"docker/{i}" for i in ids]
        if ids:
            _docker_exec(h.container, ["docker", "rm", "--force", *ids], timeout=120)
        _docker("rm", "--force", h.container, check=False, timeout=120)
    _docker("network", "rm", NETWORK, check=False)
    _remove_cgroups(leftovers)


def _remove_cgroups(relative: list[str]) -> None:
    """rmdir (only an empty cgroup can go) each path below every v1 hierarchy, and the fleet
    instances' own `sliceops.slice/sliceops-fleet*.slice` subtrees, deepest first."""
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        return
    for hierarchy in root.iterdir():
        trees = [hierarchy / r for r in relative] + list(hierarchy.glob("sliceops.slice/sliceops-fleet*.slice"))
        for tree in trees:
            if not tree.is_dir():
                continue
            for folder, _, _ in os.walk(tree, topdown=False):
                try:
                    os.rmdir(folder)
                except OSError:
                    pass
