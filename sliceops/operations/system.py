"""Host-level operations pyinfra's own do not cover the way this tool needs."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import files

from sliceops import factcache
from sliceops.bundle import digest


@operation(is_idempotent=True)
def packages(names: list[str]):
    """Install missing Debian packages; refresh the index only when something is missing."""
    installed = factcache.get(DebPackages)
    missing = [n for n in names if n not in installed]
    if not missing:
        host.noop(f"{', '.join(names)} installed")
        return
    yield (
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
        f"apt-get install -y -qq --no-install-recommends {' '.join(missing)}"
    )


class Stamp(FactBase):
    """The content of a stamp file (a digest recorded after a step completed), or None."""

    def command(self, path: str) -> str:
        return f"cat {path} 2>/dev/null || true"

    def process(self, output):
        return output[0].strip() if output else None

    def default(self):
        return None


@operation(is_idempotent=True)
def stamped(stamp_path: str, digest: str, commands: list[str], what: str):
    """Run `commands` unless `stamp_path` already records `digest`; record it only after they
    all succeeded, so an interrupted step is redone by the next deploy."""
    if host.get_fact(Stamp, path=stamp_path) == digest:
        host.noop(f"{what} is up to date ({digest[:12]})")
        return
    yield " && ".join(["set -e", *commands, f"echo {digest} > {stamp_path}"])


def ship_tree(source_tar: str, dest: str, what: str) -> None:
    """Put a reproducible tarball on the target and unpack it into `dest` when its digest
    changed: one checksum for the whole folder, redone if a deploy died halfway."""
    files.put(name=f"Ship {what} to {dest}.tar", src=source_tar, dest=f"{dest}.tar", mode="644")
    stamped(
        name=f"Unpack {what} into {dest}",
        stamp_path=f"{dest}/.sliceops-source",
        digest=digest(source_tar),
        what=what,
        commands=[f"rm -rf {dest}", f"mkdir -p {dest}", f"tar -xf {dest}.tar -C {dest}"],
    )
