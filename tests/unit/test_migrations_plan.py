"""Migration planning: which numbered files exist, and what a database's ledger still needs.

Pure: a temporary sql tree and ledgers as dicts; no database.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from sliceops.errors import MigrationError
from sliceops.migrations import Migration, discover, pending
from sliceops.paths import ROOT

REAL_SQL = ROOT / "sql"


def tree(root: Path, kind: str, files: dict[str, str]) -> Path:
    """Write {filename: body} under root/kind and return root."""
    (root / kind).mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (root / kind / name).write_text(body)
    return root


def sha(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


THREE = {
    "0001_core.sql": "CREATE TABLE a (id int);\n",
    "0002_more.sql": "CREATE TABLE b (id int);\n",
    "0003_index.sql": "CREATE INDEX ON b (id);\n",
}


@pytest.fixture
def three(tmp_path) -> tuple[Migration, ...]:
    return discover("slice", tree(tmp_path, "slice", THREE))


def ledger(migrations, upto: int) -> dict[str, str]:
    """The ledger of a database that applied the first `upto` migrations unchanged."""
    return {m.version: m.checksum for m in migrations[:upto]}


# --------------------------------------------------------------------------- discover


def test_discover_returns_the_files_in_version_order_with_their_sha256(tmp_path):
    root = tree(tmp_path, "gateway", {"0002_b.sql": "B", "0010_c.sql": "C", "0001_a.sql": "A"})
    found = discover("gateway", root)
    assert [(m.kind, m.version, m.name, m.filename) for m in found] == [
        ("gateway", "0001", "a", "0001_a.sql"),
        ("gateway", "0002", "b", "0002_b.sql"),
        ("gateway", "0010", "c", "0010_c.sql"),
    ]
    assert [m.checksum for m in found] == [sha("A"), sha("B"), sha("C")]


def test_files_that_are_not_sql_are_ignored(tmp_path):
    root = tree(tmp_path, "slice", {"0001_a.sql": "A", "README.md": "notes", "0002_b.sql.orig": "x", "0003_c.txt": "x"})
    assert [m.filename for m in discover("slice", root)] == ["0001_a.sql"]


@pytest.mark.parametrize(
    "bad_name",
    [
        "1_short.sql",  # the version is four digits
        "00001_five_digits.sql",
        "0001-dash.sql",
        "0001_CamelCase.sql",
        "0001_with space.sql",
        "0001_.sql",
        "init.sql",
    ],
)
def test_a_misnamed_sql_file_is_an_error_naming_it(tmp_path, bad_name):
    root = tree(tmp_path, "slice", {"0001_ok.sql": "A", bad_name: "B"})
    with pytest.raises(MigrationError) as caught:
        discover("slice", root)
    assert str(caught.value) == f"{root / 'slice' / bad_name}: migration files are named NNNN_lowercase_name.sql"


def test_two_files_with_one_version_is_an_error_naming_both(tmp_path):
    root = tree(tmp_path, "slice", {"0001_a.sql": "A", "0002_first.sql": "B", "0002_second.sql": "C"})
    with pytest.raises(MigrationError) as caught:
        discover("slice", root)
    assert str(caught.value) == f"{root / 'slice' / '0002_second.sql'}: version 0002 is also 0002_first.sql"


def test_an_empty_tree_has_no_migrations(tmp_path):
    (tmp_path / "slice").mkdir()
    assert discover("slice", tmp_path) == ()


# --------------------------------------------------------------------------- pending


def test_a_fresh_database_needs_every_file(three):
    assert pending("wa_slice_1", three, {}) == list(three)


@pytest.mark.parametrize(("applied", "left"), [(1, ["0002", "0003"]), (2, ["0003"]), (3, [])])
def test_an_applied_prefix_leaves_the_rest_in_order(three, applied, left):
    assert [m.version for m in pending("wa_slice_1", three, ledger(three, applied))] == left


def test_a_changed_applied_file_is_an_error_naming_file_and_database(tmp_path, three):
    applied = ledger(three, 2)
    changed = discover("slice", tree(tmp_path / "edited", "slice", {**THREE, "0002_more.sql": "CREATE TABLE b (id bigint);\n"}))
    with pytest.raises(MigrationError) as caught:
        pending("wa_slice_7", changed, applied)
    message = str(caught.value)
    assert message.startswith("wa_slice_7: 0002_more.sql changed after it was applied")
    assert f"ledger sha256 {applied['0002'][:12]}" in message
    assert f"file {changed[1].checksum[:12]}" in message


def test_an_applied_version_without_its_file_is_an_error(three):
    applied = {**ledger(three, 3), "0004": "f" * 64}
    with pytest.raises(MigrationError) as caught:
        pending("wank_saas", three, applied)
    assert str(caught.value) == "wank_saas: applied migration 0004 has no file in sql/ any more"


def test_a_new_file_numbered_below_an_applied_one_is_an_error(three):
    # 0001 and 0003 applied; 0002 appeared afterwards (a merge from another branch).
    applied = {"0001": three[0].checksum, "0003": three[2].checksum}
    with pytest.raises(MigrationError) as caught:
        pending("wa_slice_2", three, applied)
    assert str(caught.value) == "wa_slice_2: 0002_more.sql numbered below the applied 0003; renumber it after it"


def test_a_ledger_in_any_order_is_read_the_same(three):
    applied = dict(reversed(list(ledger(three, 2).items())))
    assert [m.version for m in pending("wa_slice_1", three, applied)] == ["0003"]


# --------------------------------------------------------------------------- the shipped trees


@pytest.mark.parametrize("kind", ["gateway", "slice"])
def test_the_shipped_tree_discovers_cleanly_and_is_contiguous_from_0001(kind):
    found = discover(kind, REAL_SQL)
    assert found, f"sql/{kind} has no migrations"
    assert [m.version for m in found] == [f"{n:04d}" for n in range(1, len(found) + 1)]
    assert all(m.kind == kind for m in found)
    on_disk = sorted(p.name for p in (REAL_SQL / kind).glob("*.sql"))
    assert [m.filename for m in found] == on_disk


@pytest.mark.parametrize("kind", ["gateway", "slice"])
def test_no_shipped_migration_manages_its_own_transaction(kind):
    """The runner wraps all pending files of a database in one transaction (DESIGN.md):
    a COMMIT inside a file would end it early and break atomicity."""
    for m in discover(kind, REAL_SQL):
        text = (REAL_SQL / kind / m.filename).read_text()
        text = re.sub(r"\$(\w*)\$.*?\$\1\$", "''", text, flags=re.S)  # function bodies
        text = re.sub(r"--[^\n]*", "", text)
        statements = [s.strip().upper() for s in text.split(";")]
        assert not [s for s in statements if re.match(r"(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|END)\b", s)], m.filename
