"""pyinfra inventory built from the YAML slice inventory (SLICEOPS_INVENTORY, default slices.yaml).

Validation runs here, before pyinfra connects to anything: a bad file stops the run with
one line per problem and every host untouched. One pyinfra host per inventory host, in two
groups deploy.py reads: `database` (PostgreSQL, the gateway, every slice's database) and
`slice_hosts` (the Docker engine and the containers); a `target:` file's one host is in both.
"""

import os
import sys
from pathlib import Path

from sliceops.errors import InventoryError
from sliceops.hostkeys import HostKeyError, check_copy_host
from sliceops.inventory import load
from sliceops.target import pyinfra_groups

_path = os.environ.get("SLICEOPS_INVENTORY", str(Path(__file__).parent / "slices.yaml"))
try:
    _inventory = load(_path)
    check_copy_host(_inventory)  # the agent's copies check the same recorded key
except InventoryError as exc:
    print("\n".join(exc.problems), file=sys.stderr)
    sys.exit(2)
except HostKeyError as exc:
    print(f"sliceops: {exc}", file=sys.stderr)
    sys.exit(2)

_groups = pyinfra_groups(_inventory)
hosts = _groups["hosts"]
database = _groups["database"]
slice_hosts = _groups["slice_hosts"]
