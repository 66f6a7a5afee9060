"""Shared pieces of sliceops' operations."""

from __future__ import annotations

import functools
import shlex

from pyinfra.api import StringCommand

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
