"""The monitor's exceptions: driver errors are wrapped in these (`raise ... from exc`)
so the loop and the command line deal with one small hierarchy."""

from __future__ import annotations


class MonitorError(Exception):
    """Base class of every error the monitor raises on purpose."""


class ConfigError(MonitorError):
    """The configuration file is missing, unreadable or invalid."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = list(problems)
        super().__init__(f"{path}: " + "; ".join(self.problems))


class DatabaseError(MonitorError):
    """A statement failed while the connection stayed usable."""


class RowsRejected(DatabaseError):
    """PostgreSQL refused the rows themselves (a constraint or a value): retrying cannot help."""


class DatabaseUnavailable(DatabaseError):
    """PostgreSQL could not be reached, or the connection was lost."""


class RetryFailed(MonitorError):
    """An operation kept failing until the retry deadline passed."""
