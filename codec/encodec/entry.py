"""The ``encodec`` console command: the signal handlers go in before torch loads.

Loading torch takes seconds; a Ctrl-C or SIGTERM in that time would otherwise print a traceback from deep inside
an import. Nothing has been written yet then, so the command stops with one line and 128 + the signal's number.
"""

from __future__ import annotations

import sys

from codec.signals import Interrupted, report_stop, restore_handlers, stop_on_signals


def main() -> int:
    previous = stop_on_signals()
    try:
        from codec.encodec.cli import main as run
    except Interrupted as exc:
        return report_stop("encodec", exc, "it was still starting, nothing was written")
    finally:
        restore_handlers(previous)
    return run()


if __name__ == "__main__":
    sys.exit(main())
