"""Shared pieces of sliceops' operations."""

from __future__ import annotations

import functools
import io
import shlex

from pyinfra.api import FileUploadCommand, StringCommand

from sliceops.errors import SliceopsError


def refusal(message: str) -> StringCommand:
    """A command that fails with one line: pyinfra reports the operation as failed and stops
    the host there, without the traceback an exception in an operation would print."""
    return StringCommand(f"echo {shlex.quote('sliceops: ' + message)} >&2; exit 1")


def refuses(func):
    """Turn a SliceopsError raised while planning into a clean, failed operation."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            yield from func(*args, **kwargs)
        except SliceopsError as exc:
            yield refusal(str(exc))

    return wrapper


def as_script(directory: str, label: str, text: str):
    """Yield the commands that run `text` as a script file on the target.

    A fleet's worth of statements (200 slices' migrations or `docker run`s) outgrows the
    128 KiB a single `sh -c` argument may hold, so large work travels as a file, runs, and
    is removed; its exit status is the script's.
    """
    path = f"{directory}/.{label}.sh"
    yield StringCommand(f"mkdir -p {directory}")
    yield FileUploadCommand(io.BytesIO(text.encode()), path)
    yield StringCommand(f"sh {path}; rc=$?; rm -f {path}; exit $rc")
