"""This machine converged from the default inventory: a second deploy changes nothing."""

from __future__ import annotations

import time

import pytest

from tests.fix_deploy import ROOT, run_deploy

pytestmark = pytest.mark.host

DEFAULT = ROOT / "inventory" / "slices.yaml"


@pytest.fixture(scope="module")
def first():
    # `make test` deploys before this runs; on its own this is the first converge.
    result = run_deploy(DEFAULT)
    assert result.returncode == 0, result.output[-4000:]
    return result


def test_a_second_deploy_reports_no_changes(first):
    started = time.monotonic()
    again = run_deploy(DEFAULT)
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.output[-4000:]
    assert again.totals["changed"] == 0, f"changed on a no-op deploy: {again.changed_ops}"
    assert again.totals["errors"] == 0
    print(f"no-op deploy of {DEFAULT.name}: {elapsed:.2f}s, {again.totals['ops']} operations")
