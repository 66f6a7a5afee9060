"""The exceptions sliceops raises; the command line turns each into one clear line."""

from __future__ import annotations

from pyinfra.api.exceptions import OperationError


class SliceopsError(OperationError):
    """Base of every error sliceops raises on purpose (pyinfra prints these as one line)."""


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
