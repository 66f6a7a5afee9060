"""The fact cache reads a fleet fact again only after an operation touched what the caller reads."""

from __future__ import annotations

from collections import Counter

import pytest

from sliceops import factcache
from sliceops.facts.postgres import DATABASES, ROLES, ROWS, PgFleet
from sliceops.facts.volume import VOLUME


class CountingHost:
    """pyinfra's host, counting each fact it is asked for (each a command on the target)."""

    name = "test"
    current_op_hash = "op"

    def __init__(self):
        self.reads: Counter = Counter()

    def get_fact(self, cls, **kwargs):
        self.reads[cls.__name__] += 1
        return f"{cls.__name__} read {self.reads[cls.__name__]}"


@pytest.fixture
def fake(monkeypatch):
    host = CountingHost()
    monkeypatch.setattr(factcache, "host", host)
    monkeypatch.setattr(factcache, "_cache", {})
    monkeypatch.setattr(factcache, "_declared", {})
    monkeypatch.setattr(factcache, "_changes", Counter())
    return host


def operation_changed(*subjects):
    """What the deploy's callback does after a changing operation that said what it touches
    (no subjects given: said nothing)."""
    if subjects:
        factcache.touches(*subjects)
    factcache.host_changed(factcache.declared("test", "op"))


def test_a_fact_is_read_once_while_nothing_changes(fake):
    assert factcache.get(PgFleet, reads={DATABASES}, port=5432) == "PgFleet read 1"
    assert factcache.get(PgFleet, reads={ROWS}, port=5432) == "PgFleet read 1"
    assert factcache.get(PgFleet, port=5432) == "PgFleet read 1"
    assert fake.reads["PgFleet"] == 1


def test_a_change_to_another_part_keeps_the_read(fake):
    factcache.get(PgFleet, reads={ROLES}, port=5432)
    operation_changed(ROLES)  # the roles step made a role
    assert factcache.get(PgFleet, reads={DATABASES}, port=5432) == "PgFleet read 1"  # the databases step
    operation_changed(VOLUME)  # the volume grew
    assert factcache.get(PgFleet, reads={ROWS}, port=5432) == "PgFleet read 1"
    assert fake.reads["PgFleet"] == 1


def test_a_change_to_the_part_read_reads_again(fake):
    factcache.get(PgFleet, reads={DATABASES}, port=5432)
    operation_changed(DATABASES)  # a database was created
    assert factcache.get(PgFleet, reads={DATABASES}, port=5432) == "PgFleet read 2"
    assert factcache.get(PgFleet, reads={DATABASES, ROWS}, port=5432) == "PgFleet read 2"
    assert fake.reads["PgFleet"] == 2


def test_a_change_that_said_nothing_reads_every_fact_again(fake):
    factcache.get(PgFleet, reads={ROWS}, port=5432)
    operation_changed()  # e.g. pyinfra's own files.template: anything may have changed
    assert factcache.get(PgFleet, reads={ROWS}, port=5432) == "PgFleet read 2"


def test_a_caller_naming_no_part_reads_again_after_any_change(fake):
    factcache.get(PgFleet, port=5432)
    operation_changed(VOLUME)
    assert factcache.get(PgFleet, port=5432) == "PgFleet read 2"


def test_an_operation_that_changed_nothing_invalidates_nothing(fake):
    factcache.get(PgFleet, reads={ROLES}, port=5432)
    factcache.touches(ROLES)  # it said what it would touch, then ran no command
    assert factcache.declared("test", "op") == {ROLES}  # the callback takes the declaration ...
    assert factcache.get(PgFleet, reads={ROLES}, port=5432) == "PgFleet read 1"  # ... and no change


def test_other_arguments_are_another_fact(fake):
    factcache.get(PgFleet, reads={ROLES}, port=5432)
    assert factcache.get(PgFleet, reads={ROLES}, port=5433) == "PgFleet read 2"


def test_a_caller_reading_no_subject_reads_again_only_after_an_undeclared_change(fake):
    """The volume's boot check reads what no declared step touches: the volume step growing
    the volume keeps its read; pyinfra's own files.template (the boot script) does not."""
    factcache.get(PgFleet, reads=frozenset(), port=5432)
    operation_changed(VOLUME)
    assert factcache.get(PgFleet, reads=frozenset(), port=5432) == "PgFleet read 1"
    operation_changed()
    assert factcache.get(PgFleet, reads=frozenset(), port=5432) == "PgFleet read 2"


def test_a_fact_only_sliceops_writes_is_read_again_only_after_its_writer_changed_it(fake):
    """The TLS folder: the certificate step says it touches it; pyinfra's own operations (a
    configuration file written) never write there, so they keep the read."""
    from sliceops.facts.tls import PgTls
    from sliceops.operations.tls import TLS

    assert factcache.get(PgTls, reads={TLS}, owned=True, tls_dir="/t") == "PgTls read 1"
    operation_changed()  # e.g. files.put of the backup agent's configuration
    operation_changed(ROLES)
    assert factcache.get(PgTls, reads={TLS}, owned=True, tls_dir="/t") == "PgTls read 1"
    operation_changed(TLS)  # a certificate issued
    assert factcache.get(PgTls, reads={TLS}, owned=True, tls_dir="/t") == "PgTls read 2"
    operation_changed()
    assert factcache.get(PgTls, reads={TLS}, tls_dir="/t") == "PgTls read 3"  # not owned: any change



def test_the_installed_packages_are_read_again_only_after_an_install(fake, monkeypatch):
    """Each package step reads the list through the cache (an add changes several steps
    before the last package step); an install makes every fact, the list included, stale."""
    from sliceops.operations import system

    monkeypatch.setattr(system, "host", type("H", (), {"noop": staticmethod(lambda text: None)})())
    read = fake.get_fact
    fake.get_fact = lambda cls, **kw: {"python3": ["3.11"]} if cls.__name__ == "DebPackages" and read(cls) else read(cls)
    packages = system.packages._inner if hasattr(system.packages, "_inner") else system.packages.__wrapped__
    assert factcache.get(PgFleet, reads={ROWS}, port=5432) == "PgFleet read 1"
    assert list(packages(["python3"])) == [] and fake.reads["DebPackages"] == 1
    operation_changed()  # a volume grown, a configuration written: said nothing
    operation_changed(ROLES)
    assert list(packages(["python3"])) == [] and fake.reads["DebPackages"] == 1
    assert factcache.get(PgFleet, reads={ROWS}, port=5432) == "PgFleet read 2"  # (the undeclared change)
    commands = list(packages(["python3", "cron"]))  # cron is missing: installed
    assert len(commands) == 1 and "apt-get install" in str(commands[0])
    factcache.host_changed(factcache.declared("test", "op"))
    assert list(packages(["python3"])) == [] and fake.reads["DebPackages"] == 2
    assert factcache.get(PgFleet, reads={ROWS}, port=5432) == "PgFleet read 3"  # its scripts may have done anything


def test_a_steady_fact_is_read_once_per_deploy_whatever_changes(fake):
    from sliceops.facts.host import InitSystem

    assert factcache.steady(InitSystem) == "InitSystem read 1"
    operation_changed()
    operation_changed(ROLES)
    assert factcache.steady(InitSystem) == "InitSystem read 1"
    assert factcache.get(InitSystem) == "InitSystem read 2"  # the plain read: after any change
