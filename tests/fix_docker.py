"""Real Docker containers for integration tests and benches, loaded as a pytest plugin.

No registry is reachable, so the only image is `sliceops/tiny:1`, imported once
from a tar of Debian's static busybox (`apt-get install busybox-static`). The
engine is checked once; an unusable engine ends the run with a single message.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pytest

TINY_IMAGE = "sliceops/tiny:1"
BUSYBOX_ENV = "SLICEOPS_BUSYBOX"
DEFAULT_BUSYBOX = "/bin/busybox"
TEST_LABEL = "sliceops.test"
# One run's containers share this value, so a crashed run's leftovers can be
# told apart from a concurrent run's live containers.
RUN_ID = uuid.uuid4().hex[:10]


class DockerTestError(Exception):
    """The Docker engine or the tiny test image is not usable."""


def _busybox_path() -> str:
    path = os.environ.get(BUSYBOX_ENV, DEFAULT_BUSYBOX)
    if not os.path.isfile(path):
        raise DockerTestError(
            f"no static busybox at {path} (apt-get install -y busybox-static, or set {BUSYBOX_ENV})"
        )
    # A dynamically linked busybox would import fine and then fail to start in
    # an image with no libc; `file` is not always installed, so check the ELF
    # program headers for an interpreter (PT_INTERP = 3) ourselves.
    if _has_elf_interpreter(path):
        raise DockerTestError(f"{path} is dynamically linked; install busybox-static")
    return path


def _has_elf_interpreter(path: str) -> bool:
    import struct

    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 2: 64-bit
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == 3 for i in range(phnum))


def tiny_image_tar(busybox: str) -> bytes:
    """A root filesystem with /bin/busybox and a symlink per applet, as tar bytes."""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("www", 0o755), ("etc", 0o755),
                           ("proc", 0o555), ("sys", 0o555), ("dev", 0o755)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
        # httpd and ps want these to resolve users.
        for name, text in (("etc/passwd", "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def docker_client():
    """A docker SDK client whose engine answered `docker info`, or DockerTestError."""
    try:
        import docker
    except ImportError as exc:
        raise DockerTestError("the docker SDK is not installed in this venv (pip install docker)") from exc
    try:
        client = docker.from_env(timeout=60)
        client.info()
    except Exception as exc:  # the SDK raises several unrelated types here
        raise DockerTestError(f"Docker engine not usable ({exc})") from exc
    return client


def ensure_tiny_image(client) -> str:
    """Import sliceops/tiny:1 unless it is already there; returns its name."""
    import docker.errors

    try:
        client.images.get(TINY_IMAGE)
        return TINY_IMAGE
    except docker.errors.ImageNotFound:
        pass
    repo, tag = TINY_IMAGE.split(":")
    data = tiny_image_tar(_busybox_path())
    client.api.import_image_from_data(data, repository=repo, tag=tag, changes=['CMD ["/bin/sh"]'])
    client.images.get(TINY_IMAGE)
    return TINY_IMAGE


def health_command(body: str, port: int = 8080, busy: bool = False) -> list[str]:
    """A container command serving `body` at /health with busybox httpd (and spinning a core if busy)."""
    # printf %s keeps the JSON verbatim; httpd -f stays in the foreground as PID 1's child.
    script = f"printf '%s' '{body}' > /www/health && "
    if busy:
        script += "(while :; do :; done) & "
    script += f"exec httpd -f -p {port} -h /www"
    return ["/bin/sh", "-c", script]


@dataclass
class ContainerSet:
    """Containers started for one test; all carry the run's label and go away at teardown."""

    client: object
    started: list = field(default_factory=list)
    cgroups: set = field(default_factory=set)

    def run(self, name: str, command: list[str] | None = None, *, ports: dict | None = None,
            labels: dict | None = None, network_mode: str | None = None, **kwargs):
        all_labels = {TEST_LABEL: RUN_ID, **(labels or {})}
        if kwargs.get("cgroup_parent"):
            self.cgroups.add(kwargs["cgroup_parent"].strip("/"))
        container = self.client.containers.run(
            TINY_IMAGE, command or ["sleep", "3600"], name=name, detach=True,
            labels=all_labels, ports=ports, network_mode=network_mode, **kwargs,
        )
        self.started.append(container)
        return container

    def run_many(self, count: int, name: Callable[[int], str], command: Callable[[int], list[str]] | None = None,
                 **kwargs) -> list:
        return [self.run(name(i), command(i) if command else None, **kwargs) for i in range(count)]

    def remove_all(self) -> None:
        import docker.errors

        for container in self.started:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)
        self.started.clear()
        for cgroup in self.cgroups:
            remove_cgroup(cgroup)
        self.cgroups.clear()


def remove_cgroup(path: str, root: str = "/sys/fs/cgroup") -> None:
    """rmdir a --cgroup-parent the engine left behind (cgroupfs keeps it), deepest first, in
    every hierarchy; directories still in use or shared with others stay."""
    parts = path.split("/")
    hierarchies = [root] if os.path.exists(f"{root}/cgroup.controllers") else [
        os.path.join(root, d) for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    for hierarchy in hierarchies:
        for depth in range(len(parts), 0, -1):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(hierarchy, *parts[:depth]))


def remove_run_leftovers(client) -> None:
    """Force-remove every container this run labelled (a safety net after the fixtures)."""
    import docker.errors

    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, step: float = 0.1, what: str = "condition"):
    """Poll predicate until it returns something truthy; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


@pytest.fixture(scope="session")
def docker_engine():
    """The docker SDK client; ends the run with one message if the engine or image is unusable."""
    if shutil.which("docker") is None and not os.path.exists("/var/run/docker.sock"):
        pytest.exit("integration tests need a Docker engine: no docker CLI and no /var/run/docker.sock", returncode=3)
    try:
        client = docker_client()
        ensure_tiny_image(client)
    except DockerTestError as exc:
        pytest.exit(f"integration tests need a Docker engine and {TINY_IMAGE}: {exc}", returncode=3)
    try:
        yield client
    finally:
        remove_run_leftovers(client)
        client.close()


@pytest.fixture
def containers(docker_engine) -> Iterator[ContainerSet]:
    """Start labelled tiny containers with `.run(...)` / `.run_many(...)`; removed after the test."""
    cs = ContainerSet(docker_engine)
    try:
        yield cs
    finally:
        cs.remove_all()
