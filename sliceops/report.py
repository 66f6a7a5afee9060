"""Print what the deploy did where, in plain sentences, at pyinfra's default verbosity.

pyinfra shows command output only with -vvv; sliceops' own commands echo one line per
fact worth knowing (a migration applied, a backup written, an orphan left alone), and this
callback relays those lines once the operation has finished on every host. Progress lines
of the long steps are shown as they arrive (sliceops/progress.py).
"""

from __future__ import annotations

import atexit

import click
from pyinfra.api.state import BaseStateCallback

from sliceops import factcache, progress

# Lines our commands print for the operator; anything else stays at -vvv.
_PREFIXES = ("applied ", "skipped ", "created ", "sliceops:", "backup ", "destroyed ", "orphan ")


class Reporter(BaseStateCallback):
    @staticmethod
    def operation_end(state, op_hash):
        for host in state.inventory:
            try:
                meta = state.get_op_data_for_host(host, op_hash).operation_meta
                lines = meta.stdout_lines + meta.stderr_lines if meta.is_complete() else []
            except (KeyError, AttributeError):
                continue
            touched = factcache.declared(host.name, op_hash)
            if lines or (meta.is_complete() and meta.did_change()):
                factcache.host_changed(touched)  # what it said it touches, or everything
            for line in lines:
                if line.startswith(_PREFIXES):
                    click.echo(f"    {host.print_prefix}{line}", err=True)


def unfinished(state) -> str | None:
    """The last line of a fleet deploy some hosts did not finish (pyinfra went on with the
    others and exits 1), naming them as the inventory does; None when every host finished or
    the inventory has one host (pyinfra's own error says it all)."""
    if len(state.inventory) < 2 or not state.failed_hosts:
        return None
    names = sorted(h.data.get("sliceops_host") or h.name for h in state.failed_hosts)
    return (f"sliceops: {len(names)} of {len(state.inventory)} hosts did not finish: {', '.join(names)} "
            "(unreachable, or an operation failed: see above); the others went on, and the next deploy "
            "finishes the work")


def _say_unfinished(state) -> None:
    line = unfinished(state)
    if line:
        click.echo(line, err=True)


def install(state) -> None:
    progress.install()  # "databases: 120/500 (wa_slice_120)" while the long steps run
    if not any(isinstance(h, Reporter) for h in state.callback_handlers):
        state.add_callback_handler(Reporter())
        # pyinfra exits (1 when a host failed) after the last operation; the line comes last.
        atexit.register(_say_unfinished, state)
