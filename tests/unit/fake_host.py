"""A stand-in for pyinfra's `host` while an operation plans: facts by class name, noop lines kept.

Unit tests of operations patch a module's `host` with this to read the commands an operation
would yield, without a pyinfra state or a connection.
"""

from __future__ import annotations


class FakeHost:
    print_prefix = "[test] "

    def __init__(self, facts: dict, name: str = "test", data: dict | None = None):
        self.name = name
        self.facts = facts
        self.data = data or {}
        self.noops: list[str] = []

    def get_fact(self, cls, **kwargs):
        return self.facts[cls.__name__]

    def noop(self, text: str) -> None:
        self.noops.append(text)
