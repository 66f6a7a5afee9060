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


def as_script(directory: str, label: str, text: str):
    """Yield the commands that run `text` as a script file on the target.

    A fleet's worth of statements (200 slices' migrations or `docker run`s) outgrows the
    128 KiB a single `sh -c` argument may hold, so large work travels as a file, runs, and
    is removed; its exit status is the script's. It waits in a folder only root may enter:
    a script may carry SCRAM verifiers (roles) or a tenant's file names, and `directory` (the
    share folder, readable by all for the migrations) is no place for them even briefly.
    """
    folder = f"{directory}/.scripts"
    path = f"{folder}/{label}.sh"
    yield StringCommand(command("install", "-d", "-m", "0700", folder))
    yield FileUploadCommand(io.BytesIO(text.encode()), path)
    yield StringCommand(f"sh {quote(path)}; rc=$?; rm -f {quote(path)}; exit $rc")


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
