"""Copies off the host (`backups.copy_to`): every verified backup is sent with rsync over SSH
to <path>/<instance>/<slice-N|gateway>/<folder>/ and the copies there are pruned by the same
policy as the local ones.

Only rsync and ssh are needed on the other end (no shell commands run there): a folder is
sent in two passes, its files first and its manifest last, so a folder there with a manifest
is whole; the remote listing is `rsync --list-only`; pruning is an rsync of an empty folder
with `--delete`, filtered to exactly the folders the policy drops (excluded ones are never
deleted). The host key is checked strictly against the known-hosts file the deploy writes
(never accept-new); the key is the agent's own, root-only.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sliceops_backup import store

TIMEOUT = 3600  # one rsync: a large slice over a slow link, but never hanging forever
# `rsync --list-only` lines: "drwx------  4,096 2026/12/01 03:00:02 20261201T030002Z/manifest.json"
LISTED = re.compile(r"^\S+\s+[\d,.]+\s+\S+\s+\S+\s+(.+)$")


class CopyError(Exception):
    """rsync or ssh failed; the message is its last line of stderr."""


@dataclass(frozen=True)
class Remote:
    """Where copies go, and how the agent reaches it."""

    user: str
    host: str
    port: int
    path: str  # <copy_to's path>/<instance>
    identity: str
    known_hosts: str

    @classmethod
    def from_config(cls, data: dict | None) -> "Remote | None":
        if not data:
            return None
        return cls(data["user"], data["host"], int(data["port"]), data["path"], data["identity"], data["known_hosts"])

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{self.path}"

    def ssh(self) -> str:
        """rsync's -e: strict host key checking against the deploy's file only, our key only."""
        return shlex.join([
            "ssh", "-p", str(self.port), "-i", self.identity, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=30",
            "-o", "LogLevel=ERROR",
        ])

    def spec(self, owner: str, folder: str = "") -> str:
        """rsync's remote argument (rsync >= 3.2.4 passes it to the other end unsplit)."""
        where = f"{self.path}/{owner}/" + (f"{folder}/" if folder else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{where}"

    def rsync(self, *args: str) -> subprocess.CompletedProcess:
        cmd = ["rsync", "-e", self.ssh(), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CopyError(f"rsync to {self.host} took longer than {TIMEOUT}s") from None
        except OSError as exc:
            raise CopyError(f"cannot run rsync: {exc.strerror}") from None
        return proc


def remote_folders(remote: Remote, owner: str) -> set[str]:
    """Names of the whole backup folders (those with a manifest) in one owner's folder there."""
    proc = remote.rsync("--list-only", "-r", "--include=/*/", "--include=/*/" + store.MANIFEST, "--exclude=*",
                        remote.spec(owner))
    if proc.returncode == 23 and "No such file or directory" in proc.stderr:
        return set()  # nothing sent there yet
    if proc.returncode != 0:
        raise CopyError(_last(proc.stderr) or f"rsync --list-only exited {proc.returncode}")
    names = set()
    for line in proc.stdout.splitlines():
        m = LISTED.match(line)
        if m and m[1].endswith("/" + store.MANIFEST) and m[1].count("/") == 1:
            names.add(m[1].split("/", 1)[0])
    return names


def send(remote: Remote, owner: str, folder: Path) -> None:
    """One backup folder: its files, then its manifest (the folder counts there once that is in)."""
    for extra in (["--exclude=/" + store.MANIFEST], ["--include=/" + store.MANIFEST, "--exclude=*"]):
        proc = remote.rsync("-a", "--mkpath", "--partial-dir=.rsync-partial", *extra, f"{folder}/",
                            remote.spec(owner, folder.name))
        if proc.returncode != 0:
            raise CopyError(_last(proc.stderr) or f"rsync exited {proc.returncode}")


def delete(remote: Remote, owner: str, names: list[str]) -> None:
    """Remove exactly these folders there: an empty source, --delete, every other name excluded."""
    if not names:
        return
    filters = [f"--include=/{n}/***" for n in names] + ["--exclude=*"]
    with tempfile.TemporaryDirectory(prefix="sliceops-empty-") as empty:
        proc = remote.rsync("-r", "--delete", *filters, f"{empty}/", remote.spec(owner))
    if proc.returncode != 0:
        raise CopyError(_last(proc.stderr) or f"rsync --delete exited {proc.returncode}")


def sync(remote: Remote, root: Path, slice_id: int | None, keep_daily: int, keep_weekly: int) -> dict:
    """Send the owner's verified backups that the policy keeps and are not there yet; then
    prune there by the policy over everything there and here. Returns what was done."""
    owner = store.owner_folder(root, slice_id).name
    local = {b.path.name: b for b in store.listing(root, slice_id) if b.verified}
    there = remote_folders(remote, owner)
    everything = [store.Backup(Path(n), m) for n in sorted(there | set(local))
                  if (m := local[n].manifest if n in local else store.manifest_from_name(n)) is not None]
    dropped = {b.path.name for b in store.to_prune(everything, keep_daily, keep_weekly)}
    sent = []
    for name in sorted(set(local) - there - dropped):
        send(remote, owner, local[name].path)
        sent.append(name)
    gone = sorted(dropped & there)
    delete(remote, owner, gone)
    return {"sent": sent, "pruned": gone, "there": len((there | set(sent)) - set(gone))}


def _last(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else ""
