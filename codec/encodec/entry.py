"""The console commands' entry points, light to import: the signal handlers go in before torch loads.

Loading torch takes seconds; a Ctrl-C or SIGTERM in that time would otherwise print a traceback from deep inside
an import, be lost, or abort the process from torch's C++. ``codec.signals.run_command`` remembers it instead and
stops the command with one line and 128 + the signal's number once its modules have loaded.
"""

from __future__ import annotations

import sys

from codec.signals import run_command


def main() -> int:
    """``encodec``."""
    return run_command("encodec", "codec.encodec.cli", "unfinished outputs were removed")


def tokenize() -> int:
    """``encodec-tokenize``."""
    return run_command("encodec-tokenize", "codec.encodec.tokenize",
                       "files coded so far are kept; run it again to go on")


if __name__ == "__main__":
    sys.exit(main())
