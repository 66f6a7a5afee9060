"""Run the deploy as a pyinfra dry run and write the changes it would make, as JSON, to the
file named on the command line (`sliceops plan` renders them).

    python -m sliceops.dryrun OUT.json inventory/hosts.py deploy.py

pyinfra's change check (`pyinfra --dry` without `-y`) reads every fact and runs every
operation's planning code up to its first command; nothing is executed on the target.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    out, hosts, deploy = argv
    import pyinfra_cli.cli
    from pyinfra.context import ctx_state
    from pyinfra_cli.main import main as pyinfra_main

    from sliceops import plan

    # Without -y pyinfra asks whether to go on when a host of a fleet cannot be reached, and
    # reads the answer from a stdin the plan does not have: the plan goes on with the others,
    # as the deploy (-y) does, and fails naming the host (sliceops.report.unfinished).
    pyinfra_cli.cli._set_fail_prompts = lambda state, config: None
    sys.argv = ["pyinfra", "--dry", hosts, deploy]
    try:
        pyinfra_main()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    state = ctx_state.get()
    if status != 0 or state is None or state.failed_hosts:
        return status or 1
    Path(out).write_text(plan.dump(plan.collect(state)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
