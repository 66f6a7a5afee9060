"""`python -m sliceops_monitor` is the `sliceops-monitor` command."""

import sys

from .cli import main

sys.exit(main())
