"""Host-level operations pyinfra's own do not cover the way this tool needs."""

from __future__ import annotations

import hashlib

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File
from pyinfra.operations import files

from sliceops import factcache
from sliceops.bundle import digest
from sliceops.facts.host import FileState, RecordedDigest, SystemUser
from sliceops.shell import command, quote, words


# The subject of the installed packages: only an install changes them (see `packages`), so
# the list read once serves every package step of a deploy, however many other steps change
# the host (an add read `dpkg -l` four times, 0.05 s each).
PACKAGES = "debian packages"


@operation(is_idempotent=True)
def packages(names: list[str]):
    """Install missing Debian packages; refresh the index only when something is missing."""
    installed = factcache.get(DebPackages, reads={PACKAGES}, owned=True)
    missing = [n for n in names if n not in installed]
    if not missing:
        host.noop(f"{', '.join(names)} installed")
        return
    # The packages, and whatever their scripts did (a cluster made, a service started).
    factcache.touches(factcache.EVERYTHING, PACKAGES)
    yield (
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
        f"apt-get install -y -qq --no-install-recommends {words(missing)}"
    )


def config_file_command(dest: str, user: str, group: str, mode: str) -> str:
    """Shell replacing `dest` by its standard input, owned user:group with `mode`, never
    half-written (a file beside it, then renamed); it reads its input to the end whatever
    fails, so the writer of a large input never finds the pipe closed."""
    folder = dest.rsplit("/", 1)[0] or "/"
    t = quote(dest + ".sliceops-new")
    return (
        f"{{ {command('mkdir', '-p', folder)} && (umask 077 && cat >{t}); }} "
        f"|| {{ cat >/dev/null; rm -f {t}; exit 1; }}; "
        f"{command('chown', f'{user}:{group}')} {t} && {command('chmod', mode)} {t} && mv -f {t} {quote(dest)} "
        f"|| {{ rm -f {t}; exit 1; }}"
    )


@operation(is_idempotent=True)
def config_file(dest: str, content: str, user: str, group: str, mode: str):
    """`dest` holds `content`, owned user:group with `mode`: one read, and one command when
    anything differs, the content on its standard input (never an argument). pyinfra's
    files.put reads twice and writes in four commands (a configuration that lists the
    slices changes with every added slice: issue 15)."""
    if content and not content.endswith("\n"):
        raise ValueError(f"{dest}: a configuration file's content must end with a newline")
    have = host.get_fact(FileState, path=dest)
    want = {"user": user, "group": group, "mode": oct(int(mode, 8))[2:], "sha1": hashlib.sha1(content.encode()).hexdigest()}
    if have == want:
        host.noop(f"{dest} is up to date")
        return
    yield StringCommand(config_file_command(dest, user, group, mode), _stdin=content)


@operation(is_idempotent=True)
def system_user(user: str, group: str, home: str, shell: str, not_in: tuple[str, ...] = ()):
    """A system user (its group already made) with this primary group, home (never created)
    and shell, member of none of `not_in`: one read of that user alone, then only the commands
    that differ (pyinfra's server.user reads every user of the host, twice with this task's
    own check, on every deploy)."""
    have = host.get_fact(SystemUser, user=user)
    if have is None:
        yield command("useradd", "--system", "--gid", group, "--home-dir", home, "--shell", shell, "--no-create-home", user)
        return
    changes = []
    for flag, key, want in (("--gid", "group", group), ("--home", "home", home), ("--shell", "shell", shell)):
        if have[key] != want:
            changes += [flag, want]
    if changes:
        yield command("usermod", *changes, user)
    for other in not_in:
        if other in have["groups"]:
            yield command("gpasswd", "-d", user, other) + " >/dev/null"
    if not changes and not set(not_in) & set(have["groups"]):
        host.noop(f"{user} exists (group {group}, home {home}, shell {shell})")


@operation(is_idempotent=True)
def stamped(stamp_path: str, digest: str, commands: list[str], what: str):
    """Run `commands` unless `stamp_path` already records `digest`; record it only after they
    all succeeded, so an interrupted step is redone by the next deploy."""
    if host.get_fact(RecordedDigest, path=stamp_path) == digest:
        host.noop(f"{what} is up to date ({digest[:12]})")
        return
    yield " && ".join(["set -e", *commands, f"echo {quote(digest)} > {quote(stamp_path)}"])


def keygen_command(path: str, comment: str) -> str:
    """A new ed25519 key pair at `path` (root only: umask 077, its folder 0700), no passphrase."""
    folder = path.rsplit("/", 1)[0]
    return (f"umask 077 && mkdir -p {quote(folder)} && chmod 700 {quote(folder)} && "
            f"ssh-keygen -q -t ed25519 -N '' -C {quote(comment)} -f {quote(path)}")


@operation(is_idempotent=True)
def ssh_identity(path: str, comment: str):
    """An SSH key pair made on the target, once: the private key never leaves it."""
    if host.get_fact(File, path=path):
        host.noop(f"{path} exists (its public key: {path}.pub)")
        return
    yield keygen_command(path, comment)


def unpack_commands(tar: str, dest: str, d: str) -> list[str]:
    """Shell steps making `dest` show the content of `tar` (digest `d`): see `ship_tree`."""
    q = quote
    version = f"{dest}.v-{d[:16]}"
    parent, base = dest.rsplit("/", 1)
    # `{q(dest)}.v-*`: the quoted path, then the shell's own glob, which matches only there.
    return [
        f"if [ ! -d {q(version)} ]; then t=$(mktemp -d {q(dest + '.tmp.XXXXXX')}) && tar -xf {q(tar)} -C \"$t\" "
        f"&& echo {q(d)} > \"$t/.sliceops-source\" && chmod 755 \"$t\" "
        f"&& {{ mv -T \"$t\" {q(version)} 2>/dev/null || rm -rf \"$t\"; }}; fi",
        # A tree shipped by an older sliceops is a plain folder: it gives way to the link once.
        f"if [ -d {q(dest)} ] && [ ! -L {q(dest)} ]; then rm -rf {q(dest)}; fi",
        f"ln -sfn {q(version.rsplit('/', 1)[-1])} {q(dest)}.link.$$ && mv -T {q(dest)}.link.$$ {q(dest)}",
        f"for old in {q(dest)}.v-*; do [ \"$old\" = {q(version)} ] || rm -rf \"$old\"; done",
        # Temp folders of a deploy killed mid-unpack; an hour old cannot be in use.
        # (Another deploy's folders may vanish under find: not an error.)
        f"{{ find {q(parent)} -maxdepth 1 -name {q(base + '.tmp.*')} -mmin +60 -exec rm -rf {{}} + 2>/dev/null || true; }}",
    ]


def ship_tree(source_tar: str, dest: str, what: str) -> None:
    """Put a reproducible tarball on the target and make `dest` show its content when its
    digest changed: one checksum for the whole folder, redone if a deploy died halfway.

    `dest` is a symlink to `dest.v-<digest>`, a folder that is complete before it gets its
    name (unpacked into a temp folder, then renamed) and never changes after: swapping the
    link is atomic, so a deploy reading the files (psql's \\i, docker build) never sees a
    half-unpacked or vanished tree, even when a second deploy ships at the same moment."""
    files.put(name=f"Ship {what} to {dest}.tar", src=source_tar, dest=f"{dest}.tar", mode="644")
    d = digest(source_tar)
    stamped(
        name=f"Unpack {what} into {dest}",
        stamp_path=f"{dest}/.sliceops-source",
        digest=d,
        what=what,
        commands=unpack_commands(f"{dest}.tar", dest, d),
    )
