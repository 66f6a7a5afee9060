"""Option parsing for the subcommands that parse their own options (status, logs): a user's
mistake is one line on stderr and exit status 2, like every other sliceops error."""

from __future__ import annotations

import argparse
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse, minus the usage block it prints before an error (`-h` still shows it)."""

    def error(self, message: str):
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(2)
