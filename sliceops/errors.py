"""The exceptions sliceops raises; the command line turns each into one clear line.

Plain exceptions, so that a command which only reads (`sliceops status`) never imports
pyinfra. Inside the deploy, `for_pyinfra()` hands them to pyinfra as its own OperationError,
which pyinfra prints as one line instead of a traceback.
"""

from __future__ import annotations

from contextlib import contextmanager


class SliceopsError(Exception):
    """Base of every error sliceops raises on purpose (the CLI and the deploy print these as one line)."""


class InventoryError(SliceopsError):
    """The inventory file is missing, malformed or invalid; carries every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class MigrationError(SliceopsError):
    """A migration file or ledger is inconsistent (changed checksum, gap, unknown file)."""


class LifecycleError(SliceopsError):
    """A slice lifecycle request is refused (for example destroying an assigned slice)."""


class RemoteStateError(SliceopsError):
    """A fact read from the target could not be understood."""


class QuotaError(SliceopsError):
    """A disk quota cannot be applied (a slice's data exceeds it, or the host has no room)."""


@contextmanager
def for_pyinfra():
    """Re-raise a SliceopsError as pyinfra's OperationError, keeping where it was raised:
    pyinfra prints its own errors as one line ("Operation error in FILE line N: ...") and
    anything else as a traceback."""
    from pyinfra.api.exceptions import OperationError

    try:
        yield
    except SliceopsError as exc:
        raise OperationError(str(exc)).with_traceback(exc.__traceback__) from exc
