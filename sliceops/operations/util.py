"""Shared pieces of sliceops' operations."""

from __future__ import annotations

import functools
import io
from pyinfra.api import FileUploadCommand, StringCommand

from sliceops import plan
from sliceops.errors import SliceopsError
from sliceops.shell import command, echo, quote


def refusal(message: str) -> StringCommand:
    """A command that fails with one line: pyinfra reports the operation as failed and stops
    the host there, without the traceback an exception in an operation would print."""
    plan.refused(message)
    return StringCommand(f"{echo('sliceops: ' + message)} >&2; exit 1")


def refuses(func):
    """Turn a SliceopsError raised while planning into a clean, failed operation."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            yield from func(*args, **kwargs)
        except SliceopsError as exc:
            yield refusal(str(exc))

    return wrapper


# Most paths or names one command line carries: a fleet's worth of them is split into several
# commands, so no line grows with the slice count (an argument list is capped by the kernel).
CHUNK = 100


def chunked(items: list, size: int = CHUNK) -> list[list]:
    """`items` in runs of at most `size`, in order."""
    return [items[i:i + size] for i in range(0, len(items), size)]


# The largest script that travels on the command's standard input (one command, no file): far
# below what dash reads into memory without strain, and below a pipe's 64 KiB, so pyinfra's
# write of it never waits on the shell.
STDIN_SCRIPT_MAX = 48 * 1024


def as_script(directory: str, label: str, text: str):
    """Yield the command(s) that run `text` as a shell script on the target; the exit status
    is the script's.

    A fleet's worth of statements (200 slices' migrations or `docker run`s) outgrows the
    128 KiB a single `sh -c` argument may hold, and a script may carry SCRAM verifiers
    (roles) that no process's argument may show. So the script never is an argument:

    - up to STDIN_SCRIPT_MAX, it is `sh`'s standard input, one command: wrapped in one
      `{ ...; }` group, which the shell reads whole before running any of it, so a command
      inside that reads its standard input finds it at its end, never the script's rest;
    - beyond that (a fleet's first converge), it travels as a file, runs, and is removed,
      three commands. It waits in a folder only root may enter: `directory` (the share
      folder, readable by all for the migrations) is no place for it even briefly.
    """
    body = text.rstrip("\n") or ":"
    if len(body.encode()) <= STDIN_SCRIPT_MAX:
        yield ScriptCommand(text, f"{{\n{body}\n}}\n")
        return
    folder = f"{directory}/.scripts"
    path = f"{folder}/{label}.sh"
    yield StringCommand(command("install", "-d", "-m", "0700", folder))
    yield FileUploadCommand(io.BytesIO(text.encode()), path)
    yield StringCommand(f"sh {quote(path)}; rc=$?; rm -f {quote(path)}; exit $rc")


class ScriptCommand(StringCommand):
    """`sh` running the script it is given on its standard input (see as_script)."""

    def __init__(self, script: str, stdin: str):
        super().__init__("sh", _stdin=stdin)
        self.script = script  # as the caller wrote it; `stdin` wraps it


def script_text(cmd) -> str | None:
    """The script a command of as_script's runs, or None for its other commands (tests, dry
    runs: what would run, whichever way it travels)."""
    if isinstance(cmd, ScriptCommand):
        return cmd.script
    if isinstance(cmd, FileUploadCommand):
        return cmd.src.getvalue().decode()
    return None


class Changes:
    """Whether any of these operations changes the host, as a condition (`_if=`, a restart's
    `restart_if=`): `did_change()` once they ran, their planned change during a dry run
    (`sliceops plan`), where nothing ran and pyinfra's own `any_changed` cannot answer.
    Keyword labels say what changed ("configuration"), for the plan's sentences."""

    def __init__(self, *ops, **labelled):
        self.ops = {**{f"step {i + 1}": op for i, op in enumerate(ops)}, **labelled}

    @staticmethod
    def _changes(op) -> bool:
        return op.did_change() if op.is_complete() else bool(op.will_change)

    def which(self) -> list[str]:
        return [label for label, op in self.ops.items() if self._changes(op)]

    def explain(self) -> None:
        """The plan names the change these operations make through the operation they trigger."""
        for op in self.ops.values():
            op.sliceops_explained = True

    def __call__(self) -> bool:
        return bool(self.which())


def changed(*ops, **labelled) -> Changes:
    return Changes(*ops, **labelled)
