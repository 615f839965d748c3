"""The ``encodec-bench`` entry point, light to import: the signal handlers go in before torch loads
(``codec.signals.run_command``)."""

from __future__ import annotations

import sys

from codec.signals import run_command


def main() -> int:
    return run_command("encodec-bench", "encodec_eval.cli",
                       "the rows finished so far are kept in rows.jsonl; --resume goes on")


if __name__ == "__main__":
    sys.exit(main())
