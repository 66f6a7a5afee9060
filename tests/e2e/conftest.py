"""End-to-end tests: production-like hosts converged and verified over SSH.

Fixtures come from fix_systemd_host.py (one host) and fix_fleet.py (three). They are
imported rather than listed in `pytest_plugins`: pytest accepts `pytest_plugins` only in
the top-level conftest, and a plain `pytest` from the repository root would stop collecting.
"""

from tests.e2e.fix_fleet import fleet  # noqa: F401  (pytest finds fixtures by name)
from tests.e2e.fix_systemd_host import systemd_host  # noqa: F401
