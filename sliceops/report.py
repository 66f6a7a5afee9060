"""Print what the deploy did where, in plain sentences, at pyinfra's default verbosity.

pyinfra shows command output only with -vvv; sliceops' own commands echo one line per
fact worth knowing (a migration applied, a backup written, an orphan left alone), and this
callback relays those lines once the operation has finished on every host.
"""

from __future__ import annotations

import click
from pyinfra.api.state import BaseStateCallback

from sliceops import factcache

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
            if lines or (meta.is_complete() and meta.did_change()):
                factcache.host_changed()
            for line in lines:
                if line.startswith(_PREFIXES):
                    click.echo(f"    {host.print_prefix}{line}", err=True)


def install(state) -> None:
    if not any(isinstance(h, Reporter) for h in state.callback_handlers):
        state.add_callback_handler(Reporter())
