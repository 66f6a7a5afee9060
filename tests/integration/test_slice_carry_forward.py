"""A host converged with today's first slice schema (0001-0012), holding rows in every table,
reaches seed 004's schema with the next deploy, and every row is still there in the new shape."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from tests.fix_deploy import ROOT, run_deploy
from tests.integration import _seed004
from tests.integration._first_shape import FIRST_SHAPE, carried_forward_differences, fill_first_shape

pytestmark = pytest.mark.integration

INSTANCE = "itcarry"
PG_PORT = 5461
SECTIONS = dict(
    postgres={"port": PG_PORT},
    docker={"subnet": "172.30.61.0/24"},
    slice_defaults={"port_base": 6611},
)


def _tenant(db: str) -> psycopg.Connection:
    password = Path(f"/etc/sliceops/{INSTANCE}/secrets/{db}.password").read_text().strip()
    return psycopg.connect(host="127.0.0.1", port=PG_PORT, dbname=db, user=db, password=password, connect_timeout=5)


def test_a_converged_first_shape_host_is_carried_forward(make_inventory, tmp_path):
    first_shape = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", first_shape)
    later = sorted(p for p in (first_shape / "slice").glob("[0-9]*.sql") if p.name[:4] > FIRST_SHAPE)
    assert later, "no migration after the first shape"
    for path in later:
        path.unlink()
    inventory = make_inventory(INSTANCE, [{"id": 1}], **SECTIONS)

    old = run_deploy(inventory, env={"SLICEOPS_SQL_DIR": str(first_shape)})
    assert old.returncode == 0, old.output[-3000:]
    with _tenant("wa_slice_1") as conn:
        before = fill_first_shape(conn)

    new = run_deploy(inventory)
    assert new.returncode == 0, new.output[-3000:]
    for path in later:
        assert f"applied {path.name} to wa_slice_1" in new.output
    with _tenant("wa_slice_1") as conn:
        assert carried_forward_differences(conn, before) == []
        assert _seed004.differences(conn) == []
